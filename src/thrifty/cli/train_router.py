"""`thrifty train router --data OUTCOMES --config FILE --out POLICY`: learn a routing policy.

`train` is a command group (`train router`, ...): `train_subparsers(sub)` registers it with its
own sub-command table on first use, as `eval_cache.eval_subparsers` does for `eval`.

The data is the `thrifty eval router` contract (JSON Lines {"prompt", "outcomes": {model:
{"score", "cost_usd"}}, "cohort"}). `--holdout 0.7` keeps 70% of the rows out of training (a
seeded hash of each prompt decides its side); the policy file lists a digest of every prompt it
was trained on, so `thrifty eval router --data SAME_FILE --policy POLICY` scores only the rest.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from thrifty.errors import ThriftyError

_TRAIN_SUB = "_thrifty_train_subparsers"


def train_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The `train` group's sub-command table, creating the group the first time."""
    parser = sub.choices.get("train")
    if parser is None:
        parser = sub.add_parser("train", help="learn a lever's policy from labelled data",
                                description="Learn a cost lever's policy from labelled data.")
        setattr(parser, _TRAIN_SUB, parser.add_subparsers(dest="train_command", metavar="WHAT", required=True))
    return getattr(parser, _TRAIN_SUB)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = train_subparsers(sub).add_parser(
        "router", help="router: learn which prompts the cheap tier answers as well as the strong one",
        description="Fit a learned routing policy on labelled outcomes: P(the cheap tier's model scores at "
                    "least what the strong tier's does) from the router's request features (and, with --embed, "
                    "the prompt's MiniLM embedding). When the rows recorded the cheap model's answers (and its "
                    "peer's), also an answer stage: the cascade the gateway then serves (every call to the cheap "
                    "tier, its answer and the peer's consistency sample scored, escalated below the threshold), "
                    "unless the prompt-only policy reaches the target for no more (then that is served; --peer "
                    "keeps the stage). "
                    "Writes a JSON policy with its threshold grid (expected "
                    "strong share, quality and cost at each threshold, out-of-fold on the training rows). Serve "
                    "it with a routing rule's `policy: FILE`; score it with `thrifty eval router --policy FILE`.")
    p.add_argument("--data", required=True, metavar="FILE",
                   help='JSON Lines of {"prompt", "outcomes": {model: {"score", "cost_usd"}}, "cohort"}')
    p.add_argument("--config", required=True, metavar="FILE",
                   help="gateway config with a routing: section, or a routing section alone")
    p.add_argument("--out", required=True, metavar="POLICY", help="where to write the policy (JSON)")
    p.add_argument("--holdout", type=float, default=0.0, metavar="SHARE",
                   help="share of --data kept out of training, for evaluation (default 0: train on all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the hold-out split and the folds (default 0)")
    p.add_argument("--embed", action="store_true",
                   help="also fit a model on the prompt's MiniLM embedding (slow on a small CPU); the gateway "
                        "uses it when the semantic cache embedded the call, else the cheap-features model")
    p.add_argument("--target", type=float, default=0.95,
                   help="the saved threshold: the cheapest reaching this share of the strong model's quality, "
                        "out-of-fold on train (default 0.95)")
    p.add_argument("--folds", type=int, default=5, help="folds for the out-of-fold grid (default 5)")
    p.add_argument("--strong", metavar="MODEL", help="the strong model (default: best-scoring above the cheap tier)")
    p.add_argument("--weak", metavar="MODEL", help="the cheap model (default: the cheapest of the weakest tier)")
    p.add_argument("--peer", metavar="MODEL",
                   help="the answer stage's peer: whose recorded answer the cheap one is compared with (default: "
                        "the model of the cheap tier's second deployment, the one the gateway samples)")
    p.add_argument("--no-answer-stage", action="store_true",
                   help="a prompt-only policy even when the rows recorded answers (no cascade)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from thrifty.routing.eval import load_setup, read_rows
    from thrifty.routing.learned_train import split_rows, train_policy

    if not 0.0 <= args.holdout < 1.0:
        raise ThriftyError(f"--holdout must be in [0, 1), got {args.holdout}")
    if not 0.0 < args.target <= 1.5:
        raise ThriftyError(f"--target must be in (0, 1.5], got {args.target}")
    if args.peer and args.no_answer_stage:
        raise ThriftyError("--peer needs the answer stage (drop --no-answer-stage)")
    if args.folds < 2:
        raise ThriftyError(f"--folds must be at least 2, got {args.folds}")
    setup = load_setup(args.config)
    rows = read_rows(args.data)
    train, held = split_rows(rows, args.holdout, args.seed) if args.holdout else (rows, [])
    if not train:
        raise ThriftyError(f"--holdout {args.holdout} left no training rows")
    embed = _embedder() if args.embed else None
    policy = train_policy(train, setup, embed=embed, target=args.target, folds=args.folds, seed=args.seed,
                          strong=args.strong, weak=args.weak,
                          answer_stage=False if args.no_answer_stage else (True if args.peer else None),
                          peer=args.peer,
                          trained_on={"data": args.data, "config": args.config, "holdout": args.holdout,
                                      "seed": args.seed, "held_out_rows": len(held)})
    policy.save(args.out)
    summary = _summary(policy, args.out)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _embedder() -> Any:
    """The semantic cache's embedder, batched, with a progress bar on a terminal."""
    from thrifty.cache.semantic.embedder import OnnxEmbedder, model_available

    missing = model_available()
    if missing:
        raise ThriftyError(f"--embed: the embedding model is not available: {missing}")
    embedder = OnnxEmbedder()

    def embed(texts: Sequence[str]) -> Any:
        import numpy as np

        live = sys.stderr.isatty()
        out, step = [], 64
        for start in range(0, len(texts), step):
            out.append(embedder.embed_batch(list(texts[start:start + step])))
            if live:
                done = min(start + step, len(texts))
                filled = 30 * done // len(texts)
                print(f"\rembedding [{'#' * filled}{'.' * (30 - filled)}] {done}/{len(texts)}", end="",
                      file=sys.stderr, flush=True)
        if live:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        return np.vstack(out) if out else np.zeros((0, 384))

    return embed


def _summary(policy: Any, path: str) -> dict[str, Any]:
    data = policy.to_json()
    trained = {k: v for k, v in policy.trained_on.items() if k != "digests"}
    out = {"out": path, "tiers": data["tiers"], "models": data["models"], "trained_on": trained,
           "cheap": {"threshold": policy.threshold, "l2": policy.cheap.l2, "grid": policy.grid}}
    if policy.embedding is not None:
        out["embedding"] = {"threshold": policy.embedding_threshold, "l2": policy.embedding.l2,
                            "grid": policy.embedding_grid}
    if policy.answer is not None:
        out["answer"] = {"threshold": policy.answer.threshold, "l2": policy.answer.model.l2,
                         "peer_model": policy.answer.peer_model, "grid": policy.answer.grid}
    return out


def format_summary(s: dict[str, Any]) -> str:
    t = s["trained_on"]
    lines = [f"policy         {s['out']}",
             (f"trained on     {t['rows']} rows of {t['data']}"
              + (f" ({t['held_out_rows']} held out: --holdout {t['holdout']}, --seed {t['seed']})"
                 if t.get("held_out_rows") else "")),
             (f"chooses        {s['tiers']['cheap']} ({s['models']['cheap']}) or {s['tiers']['strong']} "
              f"({s['models']['strong']}); the cheap one was as good on {100 * t['positive_share']:.1f}% of rows")]
    stage = t.get("answer_stage")
    if stage is not None and "skipped" in stage:
        lines += ["", f"answer stage   not trained: {stage['skipped']}"]
    for name in ("cheap", "embedding", "answer"):
        if name not in s:
            continue
        m = s[name]
        title = f"{name} model" if name != "answer" else (
            f"answer stage (the cascade: every call to {s['tiers']['cheap']}, "
            + (f"compared with {m['peer_model']}'s answer, both paid" if m["peer_model"] else "its answer alone")
            + "; served by the gateway)")
        lines += ["", f"{title}: threshold {m['threshold']:.4f} (L2 {m['l2']:g}); out-of-fold on train:",
                  f"  {'threshold':>9s} {'to strong':>9s} {'quality vs strong':>17s} {'cost vs strong':>14s}"]
        for g in m["grid"]:
            mark = "  <- saved" if g["threshold"] == m["threshold"] else ""
            lines.append(f"  {g['threshold']:9.4f} {100 * g['strong_share']:8.1f}% "
                         f"{_pct(g['quality_vs_strong']):>17s} {_pct(g['cost_vs_strong']):>14s}{mark}")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run it as: thrifty train router --data FILE --config FILE --out POLICY")
