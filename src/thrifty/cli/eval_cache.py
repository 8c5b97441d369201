"""`thrifty eval cache --pairs FILE`: how the semantic cache's decision does on labelled pairs.

`eval` is a command group (`eval cache`, `eval router`, ...). `add_parser(sub)` registers `eval`
with its own sub-command table on first use and `cache` under it; another module adds its own
sub-command to the same table with `eval_subparsers(sub).add_parser(...)`.

Pairs are JSON Lines {"a": str, "b": str, "label": 0|1}: 1 means an answer cached for `a` is a
correct answer to `b`, so `a` plays the cached text and `b` the query. The decision is the
gateway's own (`DecisionPolicy.accept`: calibrated threshold + verifier). Without `--calibrate`,
the operating point is fitted on all pairs and the reported precision / recall / false-hit rate
are out-of-fold (each pair decided by a threshold fitted on the other folds), never in-sample.
`--policy FILE` (a policy `--save` wrote) and `--default` (the shipped one) score a fixed policy
on the pairs without fitting anything: is it still within its target on this data?

Every report also gives the best a plain static cosine threshold of the same embedder can do on
the same pairs within the target (chosen in-sample, so it flatters the baseline): the recall the
policy must beat to be worth its machinery.

`--stream FILE` evaluates on traffic instead of pairs (thrifty.cache.semantic.stream): JSON Lines
{"text": str, "answer": str | null} arriving in random orders at an empty cache; `--calibrate`
is then a calibration stream (disjoint texts) on which the policy's threshold and the static
cosine's are chosen at the target false-hit rate (wrong answers served / answers served), and
both are reported on the `--stream` file. The policy is kNN voting over answer clusters
(thrifty.cache.semantic.vote); `--explore` and `--feedback` add online evidence. `--default`
scores the shipped default (the vote where answers repeat, the general cosine point elsewhere),
`--general` the nearest-neighbour default before it, and `--free-form` replays the stream as
free-form LLM traffic (answers stored without answer keys: every entry a cluster of one).

Embedding the texts is most of the run: it uses every core (`--threads`), embeds each distinct
text once, and shows a progress bar on stderr when that is a terminal.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from thrifty.errors import ThriftyError

_EVAL_SUB = "_thrifty_eval_subparsers"


def eval_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The `eval` group's sub-command table, creating the group the first time."""
    parser = sub.choices.get("eval")
    if parser is None:
        parser = sub.add_parser("eval", help="evaluate a lever on labelled data",
                                description="Evaluate a cost lever on labelled data before turning it on.")
        setattr(parser, _EVAL_SUB, parser.add_subparsers(dest="eval_command", metavar="WHAT", required=True))
    return getattr(parser, _EVAL_SUB)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = eval_subparsers(sub).add_parser(
        "cache", help="semantic cache: precision, hit rate and false hits on labelled pairs",
        description="Calibrate the semantic cache's decision on labelled pairs to a target false-hit "
                    "rate and report precision, recall (hit rate on positives), false-hit rate on "
                    "negatives, AUC, the operating point and lookup latency.")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--pairs", metavar="FILE",
                      help='JSON Lines of {"a": str, "b": str, "label": 0|1} (1: a\'s answer serves b)')
    data.add_argument("--stream", metavar="FILE",
                      help='JSON Lines of {"text": str, "answer": str|null}: traffic replayed through the cache '
                           '(null: an answer no other query shares); --calibrate is then a stream too')
    fixed = p.add_mutually_exclusive_group()
    fixed.add_argument("--calibrate", metavar="FILE",
                       help="fit the operating point on these pairs instead (then --pairs is a pure test set)")
    fixed.add_argument("--policy", metavar="FILE",
                       help="score this saved policy (from --save) as it is, without fitting")
    fixed.add_argument("--default", action="store_true",
                       help="score the shipped default policy as it is, without fitting")
    fixed.add_argument("--general", action="store_true",
                       help="score the default before the vote (nearest neighbour at the general "
                            "operating point) as it is, to compare with")
    p.add_argument("--target-false-hit", type=float, default=0.01, metavar="RATE",
                   help="false-hit rate on negatives to stay within (default 0.01)")
    p.add_argument("--confidence", type=float, default=0.9,
                   help="probability that the true false-hit rate meets the target (default 0.9); "
                        "0 bounds only its expectation")
    p.add_argument("--no-verifier", action="store_true", help="cosine threshold only, no number/negation guard")
    p.add_argument("--folds", type=int, default=5, help="folds for the out-of-fold report (default 5)")
    p.add_argument("--latency-samples", type=int, default=200, metavar="N",
                   help="lookups timed for latency (default 200; 0 skips)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="CPU threads for embedding the pairs (default: all cores; lookups stay on one)")
    p.add_argument("--orders", type=int, default=3, metavar="N",
                   help="--stream: random arrival orders per stream, pooled (default 3)")
    p.add_argument("--explore", type=float, default=0.0, metavar="P",
                   help="--stream: share of would-be hits sent upstream to check the cached answer (default 0)")
    p.add_argument("--feedback", type=float, default=0.0, metavar="F",
                   help="--stream: share of served hits a client reports on (default 0)")
    p.add_argument("--free-form", action="store_true",
                   help="--stream: store answers without answer keys, as free-form LLM answers that never "
                        "repeat byte for byte (every entry a cluster of one; hits still judged by the label)")
    p.add_argument("--save", metavar="FILE", help="write the calibrated decision policy as JSON")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def read_pairs(path: str) -> list[tuple[str, str, int]]:
    from thrifty.jsonutil import jsonl_lines

    pairs = []
    for where, row in jsonl_lines(path, "pairs"):
        if not isinstance(row, dict) or not isinstance(row.get("a"), str) or not isinstance(row.get("b"), str):
            raise ThriftyError(f'{where}: expected {{"a": str, "b": str, "label": 0|1}}')
        label = row.get("label")
        if isinstance(label, bool) or label not in (0, 1):
            raise ThriftyError(f"{where}: label must be 0 or 1, got {label!r}")
        pairs.append((row["a"], row["b"], int(label)))
    if not pairs:
        raise ThriftyError(f"{path}: no pairs")
    return pairs


def run(args: argparse.Namespace) -> int:
    from thrifty.errors import CalibrationError, EmbedderUnavailable

    if not 0.0 < args.target_false_hit < 1.0:
        raise ThriftyError(f"--target-false-hit must be between 0 and 1, got {args.target_false_hit}")
    if not 0.0 <= args.confidence < 1.0:
        raise ThriftyError(f"--confidence must be in [0, 1), got {args.confidence}")
    if args.folds < 2:
        raise ThriftyError(f"--folds must be at least 2, got {args.folds}")
    if args.threads < 1:
        raise ThriftyError(f"--threads must be at least 1, got {args.threads}")
    if args.save and (args.policy or args.default or args.general):
        raise ThriftyError("--save writes a fitted policy; --policy, --default and --general fit nothing")
    if args.free_form and not args.stream:
        raise ThriftyError("--free-form replays a --stream")
    if args.stream:
        return run_stream(args)
    test = read_pairs(args.pairs)
    train = read_pairs(args.calibrate) if args.calibrate else None
    fixed = None
    if args.policy:
        fixed = (load_policy(args.policy, verifier=not args.no_verifier), f"saved policy {args.policy}")
    elif args.default:
        from thrifty.cache.semantic import default_policy

        fixed = (default_policy(verifier=not args.no_verifier), "shipped default policy")
    elif args.general:
        from thrifty.cache.semantic.decision import general_policy

        fixed = (general_policy(verifier=not args.no_verifier), "general operating point (the default before the vote)")
    try:
        report = evaluate(test, train, target=args.target_false_hit, confidence=args.confidence or None,
                          verifier=not args.no_verifier, folds=args.folds, latency_samples=args.latency_samples,
                          save=args.save, fixed=fixed, threads=args.threads,
                          progress=_Progress() if sys.stderr.isatty() else None)
    except CalibrationError as exc:
        raise ThriftyError(f"cannot calibrate: {exc}") from exc
    except EmbedderUnavailable as exc:
        raise ThriftyError(str(exc)) from exc
    if args.json:
        print(json.dumps(_without_nan(report), indent=2))
    else:
        print(format_report(report))
    return 0


def load_policy(path: str, *, verifier: bool):
    """A policy `--save` wrote. It records whether the guard verifier was part of its calibration;
    a file without that note gets the guard unless --no-verifier."""
    from thrifty.cache.semantic import DecisionPolicy, GuardVerifier

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ThriftyError(f"cannot read policy file {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ThriftyError(f"{path}: not JSON: {exc.msg}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("default"), dict) \
            or not isinstance(data["default"].get("threshold"), (int, float)):
        raise ThriftyError(f'{path}: not a saved policy (expected {{"default": {{"threshold": ...}}, ...}})')
    guarded = data.get("verifier", "guard" if verifier else None) is not None
    try:
        return DecisionPolicy.from_dict(data, verifier=GuardVerifier() if guarded else None)
    except (TypeError, ValueError) as exc:
        raise ThriftyError(f"{path}: not a saved policy: {exc}") from exc


class _Progress:
    """`embedding [####....] 41% 1,234/3,000 (210/s)` on stderr, redrawn at most ~10 times a second."""

    def __init__(self, label: str = "embedding") -> None:
        self._label = label
        self._start = self._last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        filled = int(30 * done / total)
        rate = done / max(now - self._start, 1e-9)
        sys.stderr.write(f"\r{self._label} [{'#' * filled}{'.' * (30 - filled)}] {100 * done // total:3d}% "
                         f"{done:,}/{total:,} ({rate:,.0f}/s)")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _without_nan(value):
    """NaN (precision with no hits, recall with no positives) is not JSON: it becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    return value


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def evaluate(test, train, *, target: float, confidence: float | None, verifier: bool, folds: int,
             latency_samples: int, save: str | None, fixed=None, threads: int = 1, progress=None) -> dict:
    """The report; `fixed` is (policy, description) to score as it is instead of fitting one."""
    import numpy as np

    from thrifty.cache.semantic import DecisionPolicy, GuardVerifier, OnnxEmbedder, calibrate, metrics, roc_auc

    embedder = OnnxEmbedder(threads=threads)
    guard = GuardVerifier() if verifier else None
    if fixed is not None:
        guard = fixed[0].verifier
    texts = list(dict.fromkeys(t for pairs in (test, train or []) for a, b, _ in pairs for t in (a, b)))
    started = time.perf_counter()
    vectors = dict(zip(texts, embedder.embed_batch(texts, progress=progress)))
    embed_s = time.perf_counter() - started

    def scored(pairs):
        sims = np.array([float(vectors[a] @ vectors[b]) for a, b, _ in pairs])
        probe = DecisionPolicy(0.0, verifier=guard)
        return sims, np.array([probe.score(s, b, a) for (a, b, _), s in zip(pairs, sims)]), \
            np.array([y for _, _, y in pairs])

    def decide(op, pairs, sims):
        policy = DecisionPolicy(op, verifier=guard)  # the gateway's decision, pair by pair
        return [policy.accept("eval", float(s), b, a) for (a, b, _), s in zip(pairs, sims)]

    sims, dscores, labels = scored(test)
    if fixed is not None:
        policy, method = fixed
        # A pair is a namespace holding one entry: a vote policy's nearest-neighbour point decides.
        voting = policy.nearest is None
        op = policy.default if voting else policy.nearest
        accepted = [policy.accept("eval", float(s), b, a, voting=voting) for (a, b, _), s in zip(test, sims)]
        method += " as it is (nothing fitted)"
    elif train is not None:
        tr_sims, tr_scores, tr_labels = scored(train)
        op = calibrate(tr_scores, tr_labels, target_false_hit=target, confidence=confidence)
        accepted = decide(op, test, sims)
        method = "calibrated on --calibrate pairs, reported on --pairs"
    else:
        op = calibrate(dscores, labels, target_false_hit=target, confidence=confidence)
        accepted = [False] * len(test)
        fold_of = np.random.default_rng(0).permutation(len(test)) % folds
        for f in range(folds):
            inside = fold_of != f
            fold_op = calibrate(dscores[inside], labels[inside], target_false_hit=target, confidence=confidence)
            held = np.flatnonzero(~inside)
            for i, ok in zip(held, decide(fold_op, [test[i] for i in held], sims[held])):
                accepted[i] = ok
        method = f"{folds}-fold out-of-fold (operating point below fitted on all pairs)"
    m = metrics(accepted, labels)
    report = {
        "pairs": m.pairs, "positives": m.positives, "negatives": m.negatives, "method": method,
        "verifier": repr(guard) if guard else None,
        "precision": m.precision, "recall": m.recall, "false_hit_rate": m.false_hit_rate,
        "hits": m.hits, "false_hits": m.false_hits,
        "auc": roc_auc(sims, labels), "auc_with_verifier": roc_auc(dscores, labels) if guard else None,
        "operating_point": op.to_dict(),
        "static_cosine": static_cosine(sims, labels, target),
        "embedding": {"texts": len(texts), "seconds": embed_s, "per_second": len(texts) / max(embed_s, 1e-9),
                      "threads": threads},
    }
    if latency_samples > 0:
        # The gateway's embedder: one thread per lookup.
        lookup_embedder = embedder if threads == 1 else OnnxEmbedder(threads=1)
        report["lookup_latency_ms"] = _latency(test, vectors, op, guard, lookup_embedder, latency_samples)
    if save:
        saved = {**DecisionPolicy(op, verifier=guard).to_dict(), "verifier": repr(guard) if guard else None}
        Path(save).write_text(json.dumps(saved, indent=2) + "\n")
        report["saved"] = save
    return report


def static_cosine(sims, labels, target: float) -> dict:
    """The most recall any single cosine threshold gets on these pairs with false hits <= target.

    Chosen on the very pairs it is scored on (in-sample), so it is an upper bound for a static
    threshold: a calibrated policy that does not beat it adds nothing over a plain cosine cut.
    """
    import numpy as np

    sims, labels = np.asarray(sims, dtype=np.float64), np.asarray(labels, dtype=bool)
    negatives = np.sort(sims[~labels])[::-1]
    if not len(negatives) or not labels.any():
        return {"threshold": None, "recall": math.nan, "false_hit_rate": math.nan}
    allowed = int(math.floor(target * len(negatives)))  # negatives that may score above the cut
    threshold = float(negatives[allowed]) if allowed < len(negatives) else -1.0
    served = sims > threshold
    return {"threshold": threshold, "recall": float(served[labels].mean()),
            "false_hit_rate": float(served[~labels].mean())}


def _latency(pairs, vectors, op, guard, embedder, samples: int) -> dict:
    """Full lookups (embed + search + decide) of the `b` texts against a cache of the `a` texts."""
    import numpy as np

    from thrifty.cache.semantic import DecisionPolicy, SemanticCache

    cache = SemanticCache(DecisionPolicy(op, verifier=guard), embedder=embedder)
    for k, a in enumerate(dict.fromkeys(a for a, _, _ in pairs)):
        cache.add("eval", a, f"a{k}", b"", vector=vectors[a])
    queries = [b for _, b, _ in pairs][:samples]
    cache.lookup("eval", queries[0])
    times = []
    for q in queries:
        start = time.perf_counter()
        cache.lookup("eval", q)
        times.append((time.perf_counter() - start) * 1e3)
    return {"entries": len(cache), "lookups": len(times), "p50": float(np.percentile(times, 50)),
            "p99": float(np.percentile(times, 99))}


def format_report(r: dict) -> str:
    op = r["operating_point"]
    conf = op["confidence"]
    lines = [
        f"pairs          {r['pairs']} ({r['positives']} positive, {r['negatives']} negative)",
        f"evaluation     {r['method']}",
        f"verifier       {r['verifier'] or 'off'}",
        f"precision      {_num(r['precision'])}",
        f"recall         {_num(r['recall'])}  (hit rate on positives)",
        f"false-hit rate {_num(r['false_hit_rate'])}  ({r['false_hits']} of {r['negatives']} negatives served)",
        f"AUC            {_num(r['auc'])}  (cosine)" + (f", {_num(r['auc_with_verifier'])} with verifier"
                                                      if r.get("auc_with_verifier") is not None else ""),
        f"operating pt   serve when cosine > {op['threshold']:.4f}  (target false-hit "
        f"{op['target_false_hit']:g}, {'confidence ' + format(conf, 'g') if conf else 'in expectation'}, "
        f"fitted on {op['negatives']} negatives)",
    ]
    static = r.get("static_cosine")
    if static and static["threshold"] is not None:
        lines.append(f"static cosine  recall {_num(static['recall'])} at false-hit {_num(static['false_hit_rate'])}  "
                     f"(best single cosine cut, cosine > {static['threshold']:.4f}, chosen in-sample)")
    if "embedding" in r:
        emb = r["embedding"]
        lines.append(f"embedding      {emb['texts']} distinct texts in {emb['seconds']:.1f} s "
                     f"({emb['per_second']:.0f}/s, {emb['threads']} threads)")
    if "lookup_latency_ms" in r:
        lat = r["lookup_latency_ms"]
        lines.append(f"lookup         p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms "
                     f"(embed + search + decide, {lat['entries']} entries, {lat['lookups']} lookups)")
    if "saved" in r:
        lines.append(f"saved policy   {r['saved']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- --stream

def read_stream(path: str) -> tuple[list[str], list[str | None]]:
    from thrifty.jsonutil import jsonl_lines

    texts, answers = [], []
    for where, row in jsonl_lines(path, "stream"):
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) \
                or not (row.get("answer") is None or isinstance(row.get("answer"), str)):
            raise ThriftyError(f'{where}: expected {{"text": str, "answer": str|null}}')
        texts.append(row["text"])
        answers.append(row["answer"])
    if not texts:
        raise ThriftyError(f"{path}: no queries")
    return texts, answers


def run_stream(args: argparse.Namespace) -> int:
    from thrifty.cache.semantic import GuardVerifier, OnnxEmbedder, default_policy
    from thrifty.cache.semantic.stream import Stream, evaluate_stream
    from thrifty.errors import EmbedderUnavailable

    if args.orders < 1:
        raise ThriftyError(f"--orders must be at least 1, got {args.orders}")
    for name in ("explore", "feedback"):
        if not 0.0 <= getattr(args, name) < 1.0 + (name == "feedback"):
            raise ThriftyError(f"--{name} must be in [0, 1], got {getattr(args, name)}")
    if not (args.calibrate or args.policy or args.default or args.general):
        raise ThriftyError("--stream needs --calibrate STREAM (or --policy / --default / --general to score a "
                           "fixed policy)")
    test = read_stream(args.stream)
    calibration = read_stream(args.calibrate) if args.calibrate else None
    fixed = None
    if args.policy:
        fixed = load_policy(args.policy, verifier=not args.no_verifier)
    elif args.default:
        fixed = default_policy(verifier=not args.no_verifier)
    elif args.general:
        from thrifty.cache.semantic.decision import general_policy

        fixed = general_policy(verifier=not args.no_verifier)
    texts = list(dict.fromkeys(test[0] + (calibration[0] if calibration else [])))
    tty = sys.stderr.isatty()
    try:
        started = time.perf_counter()
        vectors = dict(zip(texts, OnnxEmbedder(threads=args.threads).embed_batch(
            texts, progress=_Progress() if tty else None)))
        embed_s = time.perf_counter() - started
    except EmbedderUnavailable as exc:
        raise ThriftyError(str(exc)) from exc

    def stream(data):
        import numpy as np

        return Stream(data[0], data[1], np.stack([vectors[t] for t in data[0]]))

    report = evaluate_stream(stream(test), stream(calibration) if calibration else None,
                             target=args.target_false_hit, orders=args.orders, confidence=args.confidence or None,
                             verifier=None if args.no_verifier else GuardVerifier(),
                             explore=args.explore, feedback=args.feedback, fixed=fixed,
                             progress=_Progress("streams  ") if tty else None, free_form=args.free_form)
    report["embedding"] = {"texts": len(texts), "seconds": embed_s, "per_second": len(texts) / max(embed_s, 1e-9)}
    fitted = report.pop("fitted", None)
    if args.save and fitted is not None:
        saved = {**fitted.to_dict(), "verifier": repr(fitted.verifier) if fitted.verifier else None}
        Path(args.save).write_text(json.dumps(saved, indent=2) + "\n")
        report["saved"] = args.save
    if args.json:
        print(json.dumps(_without_nan(report), indent=2))
    else:
        print(format_stream_report(report))
    return 0


def format_stream_report(r: dict) -> str:
    def row(name: str, x: dict) -> str:
        return (f"{name:<15} recall {_num(x['recall'])}  false-hit {_num(x['false_hit_rate'])} "
                f"({x['wrong']} wrong of {x['served']} served; {_num(x['false_hits_per_lookup'])} per lookup)"
                + (f", {x['explored']} explored" if x.get("explored") else ""))
    lines = [f"stream         {r['lookups']} lookups x {r['orders']} orders, target false-hit {r['target_false_hit']:g} "
             f"(wrong served / served, bound at confidence {r['confidence'] or 'none'} on --calibrate); "
             f"recall = right served / lookups whose answer was cached"
             + ("; free-form (no answer keys)" if r.get("free_form") else "")]
    policy = r["policy"]
    if "static_cosine" in r:
        st = r["static_cosine"]
        lines.append(row("static cosine", st) + f"  [cosine > {st['threshold']:.3f}, chosen on --calibrate]")
        best = r["static_cosine_best"]
        lines.append(row("best static", best) + f"  [cosine > {best['threshold']:.3f}, chosen in-sample on --stream]")
    where = f"score > {policy['threshold']:.3f}" if policy.get("vote") else f"cosine > {policy['threshold']:.4f}"
    if policy.get("nearest_threshold") is not None:
        where += f"; cosine > {policy['nearest_threshold']:.4f} where answers do not repeat"
    lines.append(row("policy", policy) + f"  [{policy['description']}, {where}]")
    if "recall_ratio" in r:
        lines.append(f"recall ratio   {_num(r['recall_ratio'], 2)} x the best static cosine")
    emb = r["embedding"]
    lines.append(f"embedding      {emb['texts']} distinct texts in {emb['seconds']:.1f} s ({emb['per_second']:.0f}/s)")
    if "saved" in r:
        lines.append(f"saved policy   {r['saved']}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run it as: thrifty eval cache --pairs FILE")
