"""`thrifty export shadow --out FILE.jsonl`: shadow outcomes as routing outcomes, for `train router --data`.

Reads the `shadow_outcomes` table (routing/shadow.py, ledger/shadow.py) of the ledger named by
`--ledger` (a URL or file) or by `--config`'s `ledger.url`, and writes one eval-router row per
scored shadow call: `{"prompt", "outcomes": {primary: {"score": 1.0, "cost_usd"}, shadow:
{"score", "cost_usd"}}, "cohort", "id"}`. Unscored calls are counted, not written.
"""

from __future__ import annotations

import argparse
import sys
import time


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Adds `shadow` to the subcommands of `thrifty export`."""
    p = sub.add_parser(
        "shadow", help="shadowed calls (a cheaper tier's agreement) as routing outcomes for `train router`",
        description="Write the scored shadow calls of the ledger (routes with `shadow:` send a sample of their "
                    "calls to a cheaper tier and score the agreement) as routing outcomes, the JSON Lines that "
                    "`thrifty eval router --data` and `thrifty train router --data` read. The answer the client "
                    "got scores 1; the shadow tier's answer scores its agreement with it (0-1).")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--ledger", metavar="URL", help="the ledger: sqlite:///PATH, a file path or postgresql://...")
    where.add_argument("--config", metavar="FILE", help="a gateway config: its ledger.url is read")
    p.add_argument("--out", metavar="FILE.jsonl", required=True, help="where the outcomes go")
    p.add_argument("--tenant", help="only this tenant's calls")
    p.add_argument("--route", help="only this route's calls (its name in routes:)")
    p.add_argument("--since-hours", type=float, metavar="H", help="only calls of the last H hours")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from thrifty import jsonutil
    from thrifty.ledger import open_ledger
    from thrifty.ledger.shadow import outcome_rows, select_shadow

    url = args.ledger
    if url is None:
        from thrifty.config import load_config

        url = load_config(args.config).ledger.url
    since = None if args.since_hours is None else time.time() - args.since_hours * 3600.0
    ledger = open_ledger(url)
    ledger.start()  # applies the shadow table's migration to an older ledger
    try:
        found = select_shadow(ledger.driver, tenant=args.tenant, route=args.route, since=since)  # type: ignore[attr-defined]
    finally:
        ledger.close()
    rows = list(outcome_rows(found))
    try:
        with open(args.out, "wb") as f:
            for row in rows:
                f.write(jsonutil.dumps(row) + b"\n")
    except OSError as exc:
        print(f"thrifty: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    methods: dict[str, int] = {}
    for o in found:
        methods[o.method] = methods.get(o.method, 0) + 1
    report = {"out": args.out, "shadowed": len(found), "written": len(rows),
              "unscored": sum(1 for o in found if o.score is None), "by_method": methods,
              "mean_score": (sum(o.score for o in found if o.score is not None) / len(rows)) if rows else None}
    if args.json:
        print(jsonutil.dumps(report).decode())
        return 0
    mean = "n/a" if report["mean_score"] is None else f"{report['mean_score']:.3f}"
    print(f"{len(rows)} routing outcomes written to {args.out} ({len(found)} shadowed calls, "
          f"{report['unscored']} unscored; mean agreement {mean})")
    return 0
