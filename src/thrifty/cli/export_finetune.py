"""`thrifty export finetune SOURCE --tier T --config FILE --out FILE.jsonl`: a fine-tuning set from traffic."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Adds `finetune` to the subcommands of `thrifty export`."""
    p = sub.add_parser(
        "finetune", help="a tier's calls answered by a stronger model, as chat fine-tuning JSONL",
        description="Write the calls the config's routing rules put in --tier, but whose answer came from a "
                    "stronger model (a higher tier), as chat fine-tuning JSON Lines ({\"messages\": [...]} "
                    "with the answer as the last, assistant, message), with counts per request type and a "
                    "held-out split in FILE.holdout.jsonl (chosen by a hash of each call's id: the same on "
                    "every run). Only calls whose request and response bodies were stored are used.")
    p.add_argument("source", help="ledger URL or file (with ledger.store_bodies), or a wire-format request log")
    p.add_argument("--tier", required=True, help="the routing tier to train a model for, e.g. fast")
    p.add_argument("--config", metavar="FILE", required=True,
                   help="the Thrifty config whose routing tiers and rules define the tier")
    p.add_argument("--out", metavar="FILE.jsonl", required=True, help="where the training set goes")
    p.add_argument("--holdout", type=float, default=0.1, help="share held out for evaluation (default 0.1)")
    p.add_argument("--format", help="force the input format instead of detecting it")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from thrifty import jsonutil
    from thrifty.analysis.finetune import export_finetune
    from thrifty.cli.simulate import load_source
    from thrifty.config import load_config

    config = load_config(args.config)
    con, _ = load_source(args)
    if con is None:
        return 1
    try:
        report = export_finetune(con, config, args.tier, args.out, holdout=args.holdout)
    except (OSError, ValueError) as exc:
        print(f"thrifty: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(jsonutil.dumps(report.as_json()).decode())
        return 0
    print(f"{report.train} training and {report.holdout} held-out examples for tier {report.tier}: "
          f"{report.out}, {report.holdout_out}")
    for rtype, n in report.by_request_type.most_common():
        print(f"  {rtype}: {n}")
    for why, n in report.skipped.most_common():
        print(f"  left out, {why}: {n}")
    return 0
