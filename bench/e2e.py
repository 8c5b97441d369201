"""The end-to-end proof: a labelled SaaS-like mix, all-frontier and direct vs through Thrifty.

    python bench/e2e.py [--n 400] [--seed 14 | --seeds 14 1 2] [--json] [--out FILE]
                        [--learned | --rules-only | --policy FILE] [--policy-target SHARE]

A command line over `thrifty.cli.proof` (the same code `thrifty demo` runs in short form): both
runs are real processes over loopback HTTP, `thrifty emulate --config` replaying the recorded
per-model answers of the mix (`thrifty/cli/proof/mix.py` says what each cohort's quality means)
and `thrifty serve` with every lever on (`thrifty/cli/proof/run.py` says how baseline, Thrifty
and quality are measured).

`--json` prints {"baseline": {"usd", "quality"}, "thrifty": {"usd", "quality"}, "levers":
{lever: saved_usd}, "cohorts": {name: {"baseline_quality", "thrifty_quality", "baseline_usd",
"thrifty_usd"}}} plus the reconciliation and the target's verdict under other keys; the same
object is written to --out.

By default (`--learned`) a routing policy is trained first (`thrifty train router`'s code, on
`mix.policy_training_rows`: RouterBench's train files, none of the mix's prompts) and served on
the `learned` rule to the RouterBench cohorts' features; the rows record the cheap models'
answers, so it is a cascade (the fast tier answers, a learned answer stage over its answer and the
peer's decides whether to escalate). Its threshold is the one `--policy-target` saves out of fold
on the training rows: 0.99 of the strong model's quality by default, what the proof's own target
(at most 1 point lost, on cohorts scoring ~85-97 points on the frontier) asks of the training
rows. `--rules-only` serves the rules alone (writes bench/results/e2e_rules.json); `--policy FILE`
serves a policy trained elsewhere.

`--seeds A B C` runs one mix per seed (each its own draw of the same shares, each its own
gateway and ledger) and ends with a summary: each mix's saving, points lost and worst cohort,
how many mixes met the target, and every cohort's quality pooled over the mixes (more calls per
cohort than one mix has, so one call moves the figure less). The JSON is then {"runs": [report,
...], "summary": {...}}. A result that holds on one draw only is not a result. Progress goes to stderr when it is a
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

# The learned policy's target share of the strong model's quality (out of fold on its training
# rows): at most 1 point lost of the frontier's ~85-97 on the routed cohorts is 1 - 1/97 ~ 0.99.
POLICY_TARGET = 0.99


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The end-to-end proof: a labelled SaaS-like mix sent all-frontier "
                                             "and direct, then through Thrifty with every lever on; cost, quality "
                                             "per cohort and each lever's saving.")
    ap.add_argument("--n", type=int, default=400, help="calls in the mix (default 400)")
    draw = ap.add_mutually_exclusive_group()
    draw.add_argument("--seed", type=int, default=14, help="seed of the mix's draw (default 14)")
    draw.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                      help="one mix per seed, then a summary over the mixes (see the module doc)")
    ap.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    ap.add_argument("--json", action="store_true", help="print the report as one JSON object")
    ap.add_argument("--out", help="where the JSON report is written (default bench/results/e2e.json; "
                                  "with --rules-only, bench/results/e2e_rules.json; with --seeds, *_seeds.json)")
    ap.add_argument("--workdir", help="ledger, configs and logs (default: a new temporary folder)")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--learned", action="store_true",
                     help="the default: train a learned routing policy (a cascade) on RouterBench's train files "
                          "(none of the mix's prompts) and serve it to the RouterBench cohorts' features "
                          "(the `learned` rule)")
    how.add_argument("--rules-only", action="store_true", help="route by the rules alone (no learned policy)")
    how.add_argument("--policy", metavar="FILE", help="serve this learned routing policy on the `learned` rule")
    ap.add_argument("--policy-target", type=float, default=POLICY_TARGET, metavar="SHARE",
                    help="with --learned: the saved threshold reaches this share of the strong model's quality, "
                         f"out of fold on the training rows (default {POLICY_TARGET}: the proof's 1-point target)")
    args = ap.parse_args(argv)
    args.learned = not (args.rules_only or args.policy)
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
    seeds = args.seeds or [args.seed]
    reports = []
    for seed in seeds:
        folder = work / f"seed-{seed}" if args.seeds else work
        folder.mkdir(parents=True, exist_ok=True)
        report = run(args.n, seed=seed, concurrency=args.concurrency, workdir=folder,
                     live=sys.stderr.isatty(), log=log, policy=Path(args.policy).resolve() if args.policy else None,
                     learned=args.learned, policy_target=args.policy_target)
        reports.append(report)
        if not args.json:
            if args.seeds:
                print(f"\n=== mix seed {seed} ===")
            print_report(report)
    result = reports[0] if not args.seeds else {"runs": reports, "summary": summarise(seeds, reports)}
    name = ("e2e_rules" if args.rules_only else "e2e") + ("_seeds" if args.seeds else "")
    out = Path(args.out or ROOT / "bench/results" / f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        if args.seeds:
            print_summary(result["summary"])
        print(f"\nwritten to {out}")
    return 0 if not any(r["failed"]["baseline"] or r["failed"]["thrifty"] for r in reports) else 1


def summarise(seeds: list[int], reports: list[dict]) -> dict:
    """Each mix's verdict, and every cohort's quality and cost pooled over the mixes (call-weighted)."""
    mixes = [{"seed": seed, "saving": r["saving"], "quality_loss_points": r["quality_loss_points"],
              "worst_cohort": r["worst_cohort"], "met": r["target"]["met"]} for seed, r in zip(seeds, reports)]
    pooled: dict[str, dict] = {}
    for r in reports:
        for name, c in r["cohorts"].items():
            p = pooled.setdefault(name, {"calls": 0, "baseline_points": 0.0, "thrifty_points": 0.0,
                                         "baseline_usd": 0.0, "thrifty_usd": 0.0})
            p["calls"] += c["calls"]
            p["baseline_points"] += c["baseline_quality"] * c["calls"]
            p["thrifty_points"] += c["thrifty_quality"] * c["calls"]
            p["baseline_usd"] += c["baseline_usd"]
            p["thrifty_usd"] += c["thrifty_usd"]
    cohorts = {name: {"calls": p["calls"], "baseline_quality": p["baseline_points"] / p["calls"],
                      "thrifty_quality": p["thrifty_points"] / p["calls"],
                      "baseline_usd": p["baseline_usd"], "thrifty_usd": p["thrifty_usd"]}
               for name, p in pooled.items()}
    base = sum(r["baseline"]["usd"] for r in reports)
    thrifty = sum(r["thrifty"]["usd"] for r in reports)
    return {"mixes": mixes, "met": sum(m["met"] for m in mixes), "of": len(mixes),
            "pooled": {"saving": 1 - thrifty / base if base else 0.0, "cohorts": cohorts}}


def print_summary(s: dict) -> None:
    print(f"\n=== {s['of']} mixes: target met on {s['met']} ===")
    for m in s["mixes"]:
        w = m["worst_cohort"]
        print(f"  seed {m['seed']:>4}: saving {m['saving']:.1%}, {m['quality_loss_points']:+.2f} points lost, "
              f"worst cohort {w['name']} ({w['loss_points']:+.2f}){'' if m['met'] else '  NOT met'}")
    print(f"pooled over the mixes: saving {s['pooled']['saving']:.1%}")
    print(f"  {'cohort':<14}{'calls':>6}{'base q':>8}{'thrifty q':>10}{'lost':>7}")
    for name, c in s["pooled"]["cohorts"].items():
        print(f"  {name:<14}{c['calls']:>6}{c['baseline_quality']:>8.1f}{c['thrifty_quality']:>10.1f}"
              f"{c['baseline_quality'] - c['thrifty_quality']:>+7.2f}")

if __name__ == "__main__":
    sys.exit(main())
