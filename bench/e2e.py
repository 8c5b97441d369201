"""The end-to-end proof: a labelled SaaS-like mix, all-frontier and direct vs through Thrifty.

    python bench/e2e.py [--n 400] [--json] [--out bench/results/e2e.json] [--learned | --policy FILE]

A command line over `thrifty.cli.proof` (the same code `thrifty demo` runs in short form): both
runs are real processes over loopback HTTP, `thrifty emulate --config` replaying the recorded
per-model answers of the mix (`thrifty/cli/proof/mix.py` says what each cohort's quality means)
and `thrifty serve` with every lever on (`thrifty/cli/proof/run.py` says how baseline, Thrifty
and quality are measured).

`--json` prints {"baseline": {"usd", "quality"}, "thrifty": {"usd", "quality"}, "levers":
{lever: saved_usd}, "cohorts": {name: {"baseline_quality", "thrifty_quality", "baseline_usd",
"thrifty_usd"}}} plus the reconciliation and the target's verdict under other keys; the same
object is written to --out.

`--learned` trains a routing policy first (`thrifty train router`'s code, on
`mix.policy_training_rows`: RouterBench's train files, none of the mix's prompts) and serves
it on the `trivial` rule; `--policy FILE` serves a policy trained elsewhere; either writes to
bench/results/e2e_learned.json unless --out says otherwise. Progress goes to stderr when it is a
terminal. Needs the shared data (THRIFTY_DATA_DIR, default ../shared/data); without it, exits 2 with the reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from thrifty.cli.proof import mix  # noqa: E402
from thrifty.cli.proof.report import print_report  # noqa: E402
from thrifty.cli.proof.run import run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The end-to-end proof: a labelled SaaS-like mix sent all-frontier "
                                             "and direct, then through Thrifty with every lever on; cost, quality "
                                             "per cohort and each lever's saving.")
    ap.add_argument("--n", type=int, default=400, help="calls in the mix (default 400)")
    ap.add_argument("--seed", type=int, default=14, help="seed of the mix's draw (default 14)")
    ap.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    ap.add_argument("--json", action="store_true", help="print the report as one JSON object")
    ap.add_argument("--out", help="where the JSON report is written (default bench/results/e2e.json; "
                                  "with --learned or --policy, bench/results/e2e_learned.json)")
    ap.add_argument("--workdir", help="ledger, configs and logs (default: a new temporary folder)")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--learned", action="store_true",
                     help="train a learned routing policy on RouterBench's train files (none of the mix's prompts) "
                          "and serve it on the `trivial` rule")
    how.add_argument("--policy", metavar="FILE", help="serve this learned routing policy on the `trivial` rule")
    ap.add_argument("--policy-target", type=float, default=0.95, metavar="SHARE",
                    help="with --learned: the saved threshold reaches this share of the strong model's quality, "
                         "out of fold on the training rows (default 0.95, as `thrifty train router --target`)")
    args = ap.parse_args(argv)
    if args.n < 20:
        print("e2e: --n must be at least 20 (one call per cohort needs a few)", file=sys.stderr)
        return 2
    if args.concurrency < 1:
        print("e2e: --concurrency must be at least 1", file=sys.stderr)
        return 2
    if not 0.0 < args.policy_target <= 1.5:
        print(f"e2e: --policy-target must be in (0, 1.5], got {args.policy_target}", file=sys.stderr)
        return 2
    if args.policy and not Path(args.policy).is_file():
        print(f"e2e: --policy {args.policy}: no such file", file=sys.stderr)
        return 2
    reason = mix.missing_data(train_side=args.learned)
    if reason:
        print(f"e2e: {reason}", file=sys.stderr)
        return 2
    work = Path(args.workdir or tempfile.mkdtemp(prefix="thrifty-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    log = (lambda s: None) if args.json else (lambda s: print(s, file=sys.stderr, flush=True))
    report = run(args.n, seed=args.seed, concurrency=args.concurrency, workdir=work,
                 live=sys.stderr.isatty(), log=log, policy=Path(args.policy).resolve() if args.policy else None,
                 learned=args.learned, policy_target=args.policy_target)
    out = Path(args.out or ROOT / "bench/results" / ("e2e_learned.json" if args.learned or args.policy
                                                     else "e2e.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)
        print(f"\nwritten to {out}")
    return 0 if not (report["failed"]["baseline"] or report["failed"]["thrifty"]) else 1


if __name__ == "__main__":
    sys.exit(main())
