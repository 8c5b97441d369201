"""`thrifty eval router --data FILE --config FILE`: replay labelled outcomes through the router.

Registers `router` under the `eval` group that `eval_cache.eval_subparsers` owns (`add_parser(sub)`
like every command module; `add_eval_router(eval_sub)` when the caller already holds the `eval`
group's table).

The data is JSON Lines {"prompt": str, "outcomes": {"<model>": {"score": float, "cost_usd":
float|null}}, "cohort": str|null}; an outcome may add the recorded "answer" (and "finish_reason")
so the escalation checks can run (the cascade). The config is a gateway config with a `routing:`
section (its `deployments` map deployment names to the outcomes' model names) or a routing
section alone. `--calibrate TRAIN` fits rules on TRAIN and reports them on --data (the test set).
`--policy POLICY` (from `thrifty train router`) adds the learned policy's curve, scored only on the
rows of --data it was not trained on, with APGR and CPT both by cost and by share of calls. A
cascade policy (with an answer stage) is replayed on the recorded answers, paying the cheap model
and its peer on every call and the strong one on escalation; its prompt-only model is reported
beside it (`learned (prompt only)`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from thrifty.errors import ThriftyError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from thrifty.cli.eval_cache import eval_subparsers

    add_eval_router(eval_subparsers(sub))


def add_eval_router(eval_sub: argparse._SubParsersAction) -> None:
    p = eval_sub.add_parser(
        "router", help="router: quality and cost against the strongest model, APGR, CPT, baselines",
        description="Replay labelled routing outcomes through the gateway's router (and its escalation "
                    "cascade where answers are recorded) and report average quality and cost relative to "
                    "always using the strongest model, the cost-quality curve, APGR and CPT(50%)/CPT(80%), "
                    "per-cohort slices, and the random and longer-prompt baselines on the same rows.")
    p.add_argument("--data", required=True, metavar="FILE",
                   help='JSON Lines of {"prompt", "outcomes": {model: {"score", "cost_usd"}}, "cohort"}')
    p.add_argument("--config", required=True, metavar="FILE",
                   help="gateway config with a routing: section, or a routing section alone")
    p.add_argument("--calibrate", metavar="TRAIN",
                   help="fit rules on these rows (same format) and report them on --data")
    p.add_argument("--target", type=float, default=0.95,
                   help="calibration: quality to reach on train, as a share of the strong model's (default 0.95)")
    p.add_argument("--min-support", type=int, default=20,
                   help="calibration: fewest training rows behind a fitted rule (default 20)")
    p.add_argument("--save", metavar="FILE", help="write the calibrated routing section as YAML")
    p.add_argument("--policy", metavar="POLICY",
                   help="a learned policy (thrifty train router): its curve on the rows of --data it was not "
                        "trained on (those are left out of the whole report), APGR/CPT by cost and by share of calls")
    p.add_argument("--embed", action="store_true",
                   help="with --policy: also score its embedding model (embeds every row; slow on a small CPU)")
    p.add_argument("--strong", metavar="MODEL", help="the strong model (default: the best-scoring routed model)")
    p.add_argument("--weak", metavar="MODEL", help="the weak model (default: the cheapest of the weakest tier)")
    p.add_argument("--no-cascade", action="store_true", help="routing decisions only, no escalation checks")
    p.add_argument("--output-tokens", type=int, default=256,
                   help="output tokens assumed when pricing an outcome whose cost_usd is null (default 256)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from thrifty.routing.eval import evaluate, load_setup, read_rows

    if not 0.0 < args.target <= 1.5:
        raise ThriftyError(f"--target must be in (0, 1.5], got {args.target}")
    if args.min_support < 1:
        raise ThriftyError(f"--min-support must be at least 1, got {args.min_support}")
    if args.save and not args.calibrate:
        raise ThriftyError("--save needs --calibrate")
    if args.embed and not args.policy:
        raise ThriftyError("--embed needs --policy")
    setup = load_setup(args.config)
    test = read_rows(args.data)
    policy, excluded = None, 0
    strong, weak = args.strong, args.weak
    if args.policy:
        from thrifty.routing.learned import digest, load_policy

        policy = load_policy(args.policy)
        trained = policy.trained_digests()
        kept = [r for r in test if digest(r.prompt) not in trained]
        excluded, test = len(test) - len(kept), kept
        if not test:
            raise ThriftyError(f"every row of {args.data} was trained on by {args.policy}: nothing held out to score")
        strong, weak = strong or policy.strong_model, weak or policy.cheap_model
    train = read_rows(args.calibrate) if args.calibrate else None
    report = evaluate(test, setup, train_rows=train, strong=strong, weak=weak,
                      cascade=not args.no_cascade, target=args.target, output_tokens=args.output_tokens,
                      calibrate_options={"min_support": args.min_support})
    report["conventions"] = CONVENTIONS
    if policy is not None:
        report["methods"].update(_learned(policy, args.policy, test, setup, args, excluded))
    if args.save:
        save_config(args.config, report["calibrated_routing"], args.save)
        report["saved"] = args.save
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


CONVENTIONS = {
    "by_cost": "the x axis is cost: APGR over normalised cost u = (cost - weak) / (strong - weak); "
               "CPT(x%) as u and as % of the strong model's cost (methods' top-level apgr/cpt50/cpt80 are this)",
    "by_calls": "the x axis is the share of calls sent to the strong model (RouteLLM and the published "
                "routers): APGR over that share; CPT(x%) as the share of calls",
}


def _learned(policy: Any, path: str, rows: list[Any], setup: Any, args: argparse.Namespace,
             excluded: int) -> dict[str, Any]:
    """The policy's summaries (the served cheap-features model, and the embedding model with --embed)."""
    from thrifty.routing.eval import prepare
    from thrifty.routing.learned_train import evaluate_policy

    data = prepare(rows, setup, output_tokens=args.output_tokens)
    trained_on = {k: v for k, v in policy.trained_on.items() if k != "digests"}
    scored_on = {"rows": len(data.rows), "excluded_trained_rows": excluded, "data": args.data}

    def summary(embeddings: Any = None, cascade: bool | None = None) -> dict[str, Any]:
        m = evaluate_policy(policy, data.rows, data.features, data.costs, embeddings=embeddings, cascade=cascade)
        at = m["at_threshold"]
        # The main table's columns: the operating point at the policy's threshold, APGR/CPT by cost.
        top = {k: at[k] for k in ("quality", "cost_usd", "quality_vs_strong", "cost_vs_strong")}
        top.update({k: m["by_cost"][k] for k in ("apgr", "cpt50", "cpt80")})
        return {**top, "policy": path, "trained_on": trained_on, "scored_on": scored_on, **m}

    out = {"learned": summary()}
    if out["learned"]["model"] == "cascade":  # what the prompt alone would have done, for comparison
        out["learned (prompt only)"] = summary(cascade=False)
    elif policy.answer is not None:
        out["learned"]["note"] = ("the policy is a cascade, but these rows lack the recorded answers it reads: "
                                  "its prompt-only model is scored")
    if args.embed and policy.embedding is not None:
        from thrifty.cli.train_router import _embedder

        out["learned+embedding"] = summary(_embedder()([r.prompt for r in data.rows]), cascade=False)
    return out


def save_config(original: str, routing: dict[str, Any], path: str) -> None:
    """The original config with its routing section replaced by the calibrated one."""
    import yaml

    with open(original, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    out = {**data, "routing": routing} if "routing" in data else routing
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("# routing calibrated by `thrifty eval router --calibrate`\n")
            yaml.safe_dump(out, fh, sort_keys=False)
    except OSError as exc:
        raise ThriftyError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _pct(x: float | None) -> str:
    return "   n/a" if x is None else f"{100 * x:5.1f}%"


def _cpt(c: dict[str, float] | None) -> str:
    return "   n/a" if c is None else f"{c['cost_pct_of_strong']:5.1f}%"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _metric_cells(m: dict[str, Any], share: bool = False) -> str:
    def c(x: dict[str, float] | None) -> str:
        if x is None:
            return "   n/a"
        return f"{100 * x['share_of_calls']:5.1f}%" if share else f"{100 * x['u']:5.1f}%"

    return f"APGR {_num(m['apgr'])}  CPT50 {c(m['cpt50'])}  CPT80 {c(m['cpt80'])}"


def format_learned(name: str, m: dict[str, Any]) -> list[str]:
    t, s, at = m["trained_on"], m["scored_on"], m["at_threshold"]
    lines = ["", f"{name}: policy {m['policy']} ({m['model']} model), {m['tiers']['cheap']} "
                 f"({m['cheap_model']}) or {m['tiers']['strong']} ({m['strong_model']})",
             f"  trained on {t.get('rows')} rows of {t.get('data')} (holdout {t.get('holdout')}, seed {t.get('seed')}); "
             f"scored on {s['rows']} other rows of {s['data']} ({s['excluded_trained_rows']} trained-on rows left out)",
             f"  at its threshold {m['threshold']:.4f}: {_pct(at['strong_share']).strip()} of calls to strong, "
             f"quality {_pct(at['quality_vs_strong']).strip()} of strong at {_pct(at['cost_vs_strong']).strip()} "
             "of its cost",
             *([f"  a cascade: every call pays {m['cheap_model']}"
                + (f" and the peer {m['peer_model']}" if m.get("peer_model") else "")
                + f", an escalated one {m['strong_model']} too"] if m["model"] == "cascade" else []),
             *([f"  note: {m['note']}"] if m.get("note") else []),
             f"  by cost  (x = normalised cost u):          {_metric_cells(m['by_cost'])}",
             f"  by calls (x = share of calls to strong):   {_metric_cells(m['by_calls'], share=True)}",
             f"  by cohort:  {'n':>5s}  by cost: APGR CPT50 CPT80     by calls: APGR CPT50 CPT80"]
    for c, v in m["cohorts"].items():
        lines.append(f"    {c:22s} {v['n']:5d}  {_metric_cells(v['by_cost'])}   "
                     f"{_metric_cells(v['by_calls'], share=True)}")
    if not m["by_cost"]["tradeoff"]:
        lines.append("  the strong model is not both better and dearer here: APGR and CPT are undefined")
    return lines


def format_report(r: dict[str, Any]) -> str:
    d, a = r["data"], r["anchors"]
    lines = [
        f"rows           {d['rows']}" + (f" ({d['dropped']} dropped: an outcome missing)" if d["dropped"] else "")
        + (f", {d['estimated_costs']} costs estimated from price cards" if d["estimated_costs"] else ""),
        "cohorts        " + ", ".join(f"{k} {v}" for k, v in d["cohorts"].items()),
        f"strong         {r['strong']}  quality {a['strong_quality']:.3f}, ${a['strong_cost_usd']:.6f}/request",
        f"weak           {r['weak']}  quality {a['weak_quality']:.3f}, ${a['weak_cost_usd']:.6f}/request",
    ]
    if not a["tradeoff"]:
        lines.append("               the strongest model is not dearer than the weak one: APGR and CPT are undefined")
    lines += ["", f"{'method':16s} {'quality':>8s} {'vs strong':>9s} {'cost vs strong':>14s} {'APGR':>6s} "
                  f"{'CPT50':>6s} {'CPT80':>6s}  beats random / longer-prompt   (APGR, CPT: by cost)"]
    for name, m in r["methods"].items():
        if "quality" in m:
            beats = m.get("beats")
            tail = f"  {_yes(beats['random'])} / {_yes(beats['longer_prompt'])}" if beats else ""
            lines.append(f"{name:16s} {m['quality']:8.3f} {_pct(m['quality_vs_strong']):>9s} "
                         f"{_pct(m['cost_vs_strong']):>14s} {_num(m.get('apgr')):>6s} {_cpt(m.get('cpt50')):>6s} "
                         f"{_cpt(m.get('cpt80')):>6s}{tail}")
        else:
            lines.append(f"{name:16s} {'curve':>8s} {'':9s} {'':14s} {_num(m.get('apgr')):>6s} "
                         f"{_cpt(m.get('cpt50')):>6s} {_cpt(m.get('cpt80')):>6s}")
    for name, m in r["methods"].items():
        if "cohorts" not in m or name.startswith("learned"):
            continue
        lines += ["", f"{name} by cohort:  n  quality (strong)  vs strong  cost vs strong  "
                      "beats random / longer-prompt"]
        for c, s in m["cohorts"].items():
            lines.append(f"  {c:22s} {s['n']:5d}  {s['quality']:.3f} ({s['strong_quality']:.3f})  "
                         f"{_pct(s['quality_vs_strong'])}  {_pct(s['cost_vs_strong']):>14s}  "
                         f"{_yes(s['beats_random'])} / {_yes(s['beats_longer_prompt'])}")
        if "tier_share" in m:
            lines.append("  tiers: " + ", ".join(f"{t} {_pct(v).strip()}" for t, v in m["tier_share"].items())
                         + f"; escalated {_pct(m['escalation_rate']).strip()}")
    if "calibrated" in r["methods"]:
        t = r["methods"]["calibrated"]["train"]
        lines += ["", f"calibration    on {t['rows']} training rows, target {100 * t['target_quality_vs_strong']:.0f}% "
                      f"of the strong model's quality: chosen quality {_pct(t['chosen']['quality_vs_strong']).strip()} "
                      f"at {_pct(t['chosen']['cost_vs_strong']).strip()} of its cost on train "
                      f"({t['members']} rule sets on the curve, {r['methods']['calibrated']['rules_fitted']} rules)"]
    learned = [name for name in r["methods"] if name.startswith("learned")]
    for name in learned:
        lines += format_learned(name, r["methods"][name])
    if learned:
        lines += ["", "by cost: APGR over normalised cost, CPT as u (% of the cost gap); by calls: over the share "
                      "of calls sent to the strong model, CPT as that share"]
    lines += ["", "models (always one):"]
    for m, p in r["models"].items():
        lines.append(f"  {m:40s} quality {p['quality']:.3f}  cost vs strong {_pct(p['cost_vs_strong'])}")
    if "saved" in r:
        lines.append(f"\nsaved          {r['saved']}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run it as: thrifty eval router --data FILE --config FILE")
