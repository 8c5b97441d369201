"""The learned router: decision latency in the gateway's router, and its figures on held-out outcomes.

    python bench/learned_router.py [--embed] [--embed-cache DIR] [--seeds 0 1 2] [--compare] [--out FILE]

1. Latency: a `Router` whose catch-all rule serves a learned policy (`routing.rules[].policy`),
   timed per request on a mix of request shapes: the policy's decision alone (`Router.decide`),
   request features + decision (what the routing stage does per call), and the embedding model's
   decision given an embedding (one dot product over 409 numbers). Embedding a prompt with the
   semantic cache's MiniLM is timed too, to show why the gateway does not compute one to route:
   p50 / p99 / max in microseconds.
2. Quality: the shared RouterArena and RouterBench data (`$THRIFTY_DATA_DIR/routing`, converted by
   bench/routing_data.py into a temporary folder) with both files of each set pooled; for each
   seed, trained on 30% and scored on the other 70%, and the reverse (70% / 30%); APGR, CPT(50%)
   and CPT(80%) by cost and by share of calls, overall and per cohort, for the cheap-features
   model (what the gateway serves) and, with --embed, the embedding model.

3. `--compare` (RouterBench): other learners on the same protocol, the pooled rows split 30% train /
   70% report per seed, and RouterBench's own train files -> test files; every hyperparameter
   (L2, k) chosen by 5-fold CV inside the train part, never on the report part:
   - `cheap`: the served cheap-features logistic regression;
   - `type rate`: the training label rate per request type and choice count (what the gateway
     knows of a request's task without the client's tags);
   - `data set rate`: per data set, as a client's `x-thrifty-feature` tag would give it;
   - `emb logistic` / `emb kNN`: logistic regression over features + embedding (the policy's
     embedding model), and the mean label of the k nearest training prompts by cosine, over the
     embedding the gateway has (the semantic cache's MiniLM of the whole user turn: its first
     256 tokens);
   - diagnostics the router cannot serve within 1 ms: `question kNN` / `question logistic` over
     the MiniLM embedding of the last paragraph only (the question after the few-shot examples;
     the router would have to embed it), and `agreement`: a cascade that sends the cheap model's
     and a peer's (Yi-34B) recorded answers through an exact-letter comparison and escalates
     disagreements first (it pays the peer on every call, counted in the cost figures);
   - `cascade (served)`: the policy `thrifty train router` writes from the train part, its answer
     stage (the cheap answer and the peer's, routing/learned.py) replayed on the report part by
     `evaluate_policy` (cheap + peer paid on every call, gpt-4 on escalation), and `cascade (peer
     gpt-3.5)`: the same with bench/e2e.py's fast-tier peer, which costs more.
   Part 2 reports the served policy's cascade too (RouterArena: one model per tier, so its answer
   stage reads the cheap answer alone). Part 1 times the cascade's decision and its answer stage's
   score (on letter answers and a page of code).

Writes JSON (default bench/results/learned_router.json). Skips parts 2 and 3 with a message when
the data is absent.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from thrifty.routing import Router, RoutingConfig, features_from_body
from thrifty.routing.eval import load_setup, prepare, read_rows
from thrifty.routing.learned_train import digest, evaluate_policy, split_rows, train_policy
from thrifty.wire import OPENAI_CHAT

HERE = Path(__file__).resolve().parent

SHAPES = {
    "short chat": "What's a good name for a golden retriever puppy?",
    "multiple choice": ("Which gas do plants absorb?\nA) Oxygen\nB) Carbon dioxide\nC) Nitrogen\nD) Helium\n"
                        "Answer with the letter only."),
    "code": "Write a Python function that merges two sorted lists.\n```python\ndef merge(a, b):\n    pass\n```",
    "long RAG": "".join(f"<document index=\"{i}\">\n" + "Revenue grew in every region we track. " * 40
                        + "\n</document>\n" for i in range(12)) + "Summarize the trend.",
}


def percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_us": s[len(s) // 2] * 1e6, "p99_us": s[min(len(s) - 1, int(len(s) * 0.99))] * 1e6,
            "max_us": s[-1] * 1e6, "n": len(s)}


def latency(policy_path: str, rounds: int, embed: bool) -> dict:
    from thrifty.routing.learned import load_policy

    policy = load_policy(policy_path)
    # The prompt-only policy (the same file less its answer stage) is what `decide` times; the cascade
    # decides without a probability (every call to the cheap tier), its answer stage is timed below.
    prompt_only = Path(policy_path).with_name("prompt_only.json")
    prompt_only.write_text(json.dumps({**policy.to_json(), "answer": None}))

    def router_for(path: str) -> Router:
        return Router(RoutingConfig.model_validate({
            "tiers": {"fast": ["small", "small-b"], "strong": ["big"]}, "default_tier": "strong",
            "escalation": {"checks": ["empty"], "max_steps": 1},
            "rules": [{"name": "learned", "tier": "strong", "policy": path}]}))

    router, cascade = router_for(str(prompt_only)), router_for(policy_path)
    bodies = [{"model": "thrifty/auto", "messages": [{"role": "user", "content": p}]} for p in SHAPES.values()]
    feats = [features_from_body(b, OPENAI_CHAT) for b in bodies]
    out: dict = {}
    for name, fn in (
        ("decide", lambda i: router.decide(feats[i], "thrifty/auto")),
        ("features+decide", lambda i: router.decide(features_from_body(bodies[i], OPENAI_CHAT), "thrifty/auto")),
        ("cascade decide", lambda i: cascade.decide(feats[i], "thrifty/auto")),
    ):
        out[name] = _time(fn, len(bodies), rounds)
    if policy.embedding is not None:
        vec = [0.05] * 384
        out["decide with an embedding"] = _time(lambda i: router.decide(feats[i], "thrifty/auto", embedding=vec),
                                                len(bodies), rounds)
        # What the semantic cache hands over: a float32 unit vector.
        arr = np.full(384, 0.05, dtype=np.float32)
        out["decide with the cache's vector"] = _time(
            lambda i: router.decide(feats[i], "thrifty/auto", embedding=arr), len(bodies), rounds)
        out["features+decide with the cache's vector"] = _time(
            lambda i: router.decide(features_from_body(bodies[i], OPENAI_CHAT), "thrifty/auto", embedding=arr),
            len(bodies), rounds)
    stage = policy.answer
    if stage is not None:
        # The cascade's decision after the answers are in: the answer stage's score (features of both
        # answers + one dot product), on a letter answer and on a long code answer.
        answers = [("B", "B"), ("B) Carbon dioxide", "C"), (CODE_ANSWER, CODE_ANSWER.replace("merged", "out")),
                   ("I'm not sure, but probably A.", "D")]
        out["answer stage score"] = _time(
            lambda i: stage.score(feats[i % len(feats)], *answers[i % len(answers)]), len(answers), rounds)
    if embed:
        from thrifty.cache.semantic.embedder import OnnxEmbedder

        embedder = OnnxEmbedder()
        embedder.embed("warm up")
        prompts = list(SHAPES.values())
        out["embed a prompt (MiniLM, CPU)"] = _time(lambda i: embedder.embed(prompts[i]), len(prompts), 20)
    return out


CODE_ANSWER = ("Here is a function that merges two sorted lists:\n\n```python\ndef merge(a, b):\n"
               "    merged, i, j = [], 0, 0\n    while i < len(a) and j < len(b):\n"
               "        if a[i] <= b[j]:\n            merged.append(a[i]); i += 1\n        else:\n"
               "            merged.append(b[j]); j += 1\n    return merged + a[i:] + b[j:]\n```\n\n"
               "It runs in linear time, since every element is looked at once. ") * 4


def _time(fn, n: int, rounds: int) -> dict[str, float]:
    for i in range(min(n, 50)):
        fn(i % n)
    samples = []
    gc.disable()
    try:
        for r in range(rounds):
            i = r % n
            t0 = time.perf_counter()
            fn(i)
            samples.append(time.perf_counter() - t0)
    finally:
        gc.enable()
    return percentiles(samples)


class CachedEmbedder:
    """MiniLM embeddings, kept on disk by prompt digest (embedding thousands of prompts on a CPU is slow)."""

    def __init__(self, cache: Path | None) -> None:
        self.cache = cache
        self.vectors: dict[str, np.ndarray] = {}
        if cache is not None and cache.exists():
            with np.load(cache) as z:
                self.vectors = {k: z[k] for k in z.files}
        self._model = None

    def __call__(self, texts):
        missing = [t for t in dict.fromkeys(texts) if digest(t) not in self.vectors]
        if missing:
            from thrifty.cache.semantic.embedder import OnnxEmbedder

            self._model = self._model or OnnxEmbedder(threads=2)
            # Texts whose first 256 tokens agree have the same embedding (MiniLM reads no further):
            # RouterBench's few-shot prompts share theirs, so embed each token sequence once.
            model = self._model
            model.load()
            ids = [tuple(e.ids) for e in model._tokenizer.encode_batch(missing)]  # noqa: SLF001
            unique = sorted(set(ids), key=len)
            vectors: dict[tuple, np.ndarray] = {}
            for start in range(0, len(unique), 32):
                chunk = unique[start:start + 32]
                vectors.update(zip(chunk, model._infer([list(c) for c in chunk])))  # noqa: SLF001
                print(f"  embedded {min(start + 32, len(unique))}/{len(unique)} distinct token sequences",
                      file=sys.stderr)
            for t, key in zip(missing, ids):
                self.vectors[digest(t)] = vectors[key]
            if self.cache is not None:
                np.savez(self.cache, **self.vectors)
        return np.array([self.vectors[digest(t)] for t in texts])


def quality(data_dir: Path, seeds: list[int], embedder: CachedEmbedder | None) -> dict:
    sys.path.insert(0, str(HERE))  # bench/ is not a package: its converter is imported beside this file
    import routing_data

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if routing_data.main(["--out", tmp, "--data-dir", str(data_dir)]) != 0:
            return {"skipped": f"conversion failed for {data_dir}"}
        for name in ("routerarena", "routerbench"):
            setup = load_setup(f"{tmp}/{name}.yaml")
            rows = read_rows(f"{tmp}/{name}_train.jsonl") + read_rows(f"{tmp}/{name}_test.jsonl")
            runs = []
            for seed in seeds:
                for train_share in (0.3, 0.7):
                    train, held = split_rows(rows, 1 - train_share, seed)
                    policy = train_policy(train, setup, embed=embedder, seed=seed,
                                          trained_on={"data": f"{name} (both files pooled)", "seed": seed,
                                                      "holdout": 1 - train_share})
                    data = prepare(held, setup)
                    run = {"seed": seed, "train_share": train_share, "train_rows": policy.trained_on["rows"],
                           "test_rows": len(data.rows), "cheap_model": policy.cheap_model,
                           "strong_model": policy.strong_model,
                           "cheap": _slim(evaluate_policy(policy, data.rows, data.features, data.costs,
                                                          cascade=False))}
                    if policy.answer is not None:  # the served cascade, replayed on the recorded answers
                        run["peer_model"] = policy.answer.peer_model
                        run["cascade"] = _slim(evaluate_policy(policy, data.rows, data.features, data.costs,
                                                               cascade=True))
                    if embedder is not None:
                        vecs = embedder([r.prompt for r in data.rows])
                        run["embedding"] = _slim(evaluate_policy(policy, data.rows, data.features, data.costs,
                                                                 embeddings=vecs, cascade=False))
                    runs.append(run)
                    _print_run(name, run)
            out[name] = runs
    return out


# --- part 3: other learners, same protocol ------------------------------------------------------------

PEER = "zero-one-ai/Yi-34B-Chat"  # the cheap model's consistency peer in routerbench.yaml's fast tier
K_GRID = (10, 25, 50, 100)


def compare(data_dir: Path, seeds: list[int], embedder: CachedEmbedder) -> dict:
    import re

    from thrifty.routing.learned_train import _folds, cheap_vector, curve_metrics, fit_with_cv, labels, sweep
    from thrifty.routing.metrics import Anchors, Point, apgr, cpt

    sys.path.insert(0, str(HERE))
    import routing_data

    def last_paragraph(prompt: str) -> str:
        return prompt.rsplit("\n\n", 1)[-1]

    def build(rows, setup, weak=None, strong=None):
        d = prepare(rows, setup)
        D = {"rows": d.rows, "X": np.array([cheap_vector(f) for f in d.features]),
             "type": [(f.request_type, min(f.choices, 10)) for f in d.features],
             "cohort": [r.cohort for r in d.rows],
             "emb": embedder([r.prompt for r in d.rows]), "question": embedder([last_paragraph(r.prompt) for r in d.rows]),
             "costs": d.costs}
        return D

    def part(D, idx):
        return {k: v if k == "pair" else v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx]
                for k, v in D.items()}

    def arrays(D, weak, strong):
        sc = (np.array([r.outcomes[weak].score for r in D["rows"]]), np.array([r.outcomes[strong].score for r in D["rows"]]))
        co = (np.array([c[weak] for c in D["costs"]]), np.array([c[strong] for c in D["costs"]]))
        return sc, co

    def figures(D, p, weak, strong):
        sc, co = arrays(D, weak, strong)
        m = curve_metrics(sweep(p, sc, co), sc, co)
        return {"by_cost": {"apgr": m["by_cost"]["apgr"], "cpt50": (m["by_cost"]["cpt50"] or {}).get("u")},
                "by_calls": {"apgr": m["by_calls"]["apgr"],
                             "cpt50": (m["by_calls"]["cpt50"] or {}).get("share_of_calls")}}

    def rate(key):
        def fit(Tr, y, _seed):
            table: dict = {}
            for k, v in zip(Tr[key], y):
                table.setdefault(k, []).append(v)
            table = {k: float(np.mean(v)) for k, v in table.items()}
            prior = float(np.mean(y))
            return lambda Te: np.array([table.get(k, prior) for k in Te[key]])
        return fit

    def logistic(cols):
        def fit(Tr, y, seed):
            X = np.hstack([Tr[c] for c in cols])
            model, _ = fit_with_cv(X, y, _folds(len(y), 5, seed))
            return lambda Te: model.probabilities(np.hstack([Te[c] for c in cols]))
        return fit

    def knn_fixed(col, k):
        def fit(Tr, y, _seed):
            E = Tr[col]
            def predict(Te):
                sim = Te[col] @ E.T
                kk = min(k, len(E) - 1)
                nearest = np.argpartition(-sim, kk, axis=1)[:, :kk]
                return y[nearest].mean(axis=1)
            return predict
        return fit

    def knn(col):
        def fit(Tr, y, seed):  # k by 5-fold CV inside the train part: the best out-of-fold APGR (by calls)
            folds = _folds(len(y), 5, seed)
            best = None
            for k in K_GRID:
                p = np.zeros(len(y))
                for idx in folds:
                    rest = np.setdiff1d(np.arange(len(y)), idx)
                    p[idx] = knn_fixed(col, k)(part(Tr, rest), y[rest], seed)(part(Tr, idx))
                a = figures(Tr, p, *Tr["pair"])["by_calls"]["apgr"]
                if best is None or a > best[0]:
                    best = (a, k)
            return knn_fixed(col, best[1])(Tr, y, seed)
        return fit

    def letter(answer):
        m = re.search(r"\b([A-E])\b", answer or "")
        return m.group(1) if m else None

    def agreement(Te, Tr, y, seed, weak, strong):
        """The cascade's curve: cheap + peer on every call; disagreements escalate first (then by the
        embedding model's probability); MBPP has no letter to compare (code), so it is never 'agreed'."""
        sc, co = arrays(Te, weak, strong)
        agree = np.array([letter(r.outcomes[weak].answer) is not None
                          and letter(r.outcomes[weak].answer) == letter(r.outcomes[PEER].answer) for r in Te["rows"]],
                         dtype=float)
        p = logistic(["X", "emb"])(Tr, y, seed)(Te)
        peer = np.array([r.outcomes[PEER].cost for r in Te["rows"]])
        order = np.argsort(agree * 10 + p, kind="stable")
        n = len(order)
        cost, q = float((co[0] + peer).sum()), float(sc[0].sum())
        by_cost, by_calls = [Point(cost / n, q / n)], [Point(0.0, q / n)]
        for k, i in enumerate(order, 1):
            cost += co[1][i]
            q += sc[1][i] - sc[0][i]
            by_cost.append(Point(cost / n, q / n))
            by_calls.append(Point(k / n, q / n))
        wq, sq = float(sc[0].mean()), float(sc[1].mean())
        out = {}
        for way, pts, a in (("by_cost", by_cost, Anchors(float(co[0].mean()), wq, float(co[1].mean()), sq)),
                            ("by_calls", by_calls, Anchors(0.0, wq, 1.0, sq))):
            c = cpt(pts, a, 0.5)
            out[way] = {"apgr": apgr(pts, a), "cpt50": None if c is None else c["u"]}
        out["agree_share"] = float(agree.mean())
        return out

    learners = {"cheap": logistic(["X"]), "type rate": rate("type"), "data set rate": rate("cohort"),
                "emb logistic": logistic(["X", "emb"]), "emb kNN": knn("emb"),
                "question kNN": knn("question"), "question logistic": logistic(["X", "question"])}
    out: dict = {"runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        if routing_data.main(["--out", tmp, "--data-dir", str(data_dir)]) != 0:
            return {"skipped": f"conversion failed for {data_dir}"}
        setup = load_setup(f"{tmp}/routerbench.yaml")
        train_file, test_file = read_rows(f"{tmp}/routerbench_train.jsonl"), read_rows(f"{tmp}/routerbench_test.jsonl")
        whole = build(train_file + test_file, setup)
        out["distinct_embeddings"] = {c: len({v.tobytes() for v, cc in zip(whole["emb"], whole["cohort"]) if cc == c})
                                      for c in sorted(set(whole["cohort"]))}
        print(f"distinct gateway embeddings per data set: {out['distinct_embeddings']}")
        splits = []
        for seed in seeds:
            train, held = split_rows(train_file + test_file, 0.7, seed)
            splits.append((f"pooled seed {seed} 30/70", seed, train, held))
        splits.append(("train files -> test files", 0, train_file, test_file))
        for name, seed, train, held in splits:
            Tr, Te = build(train, setup), build(held, setup)
            from thrifty.routing.learned_train import pick_models
            strong, weak = pick_models(prepare(train, setup), setup, None, None)
            Tr["pair"] = [weak, strong]
            y = labels(Tr["rows"], weak, strong)
            run = {"split": name, "train_rows": len(Tr["rows"]), "test_rows": len(Te["rows"]),
                   "cheap_model": weak, "strong_model": strong, "learners": {}}
            for lname, fit in learners.items():
                run["learners"][lname] = figures(Te, fit(Tr, y, seed)(Te), weak, strong)
            run["learners"]["agreement (cascade)"] = agreement(Te, Tr, y, seed, weak, strong)
            run["learners"]["cascade (served)"] = served_cascade(train, held, setup, seed)
            # What the end-to-end proof's fast tier would pay: gpt-3.5-turbo (dearer than Yi-34B) as the peer.
            run["learners"]["cascade (peer gpt-3.5)"] = served_cascade(train, held, setup, seed, peer=E2E_PEER)
            out["runs"].append(run)
            for lname, m in run["learners"].items():
                print(f"{name:26s} {lname:20s} by cost: APGR {m['by_cost']['apgr']:.3f} CPT50 {m['by_cost']['cpt50']:.3f}"
                      f" | by calls: APGR {m['by_calls']['apgr']:.3f} CPT50 {m['by_calls']['cpt50']:.3f}", flush=True)
    out["median"] = {}
    for lname in out["runs"][0]["learners"]:
        out["median"][lname] = {way: {k: statistics.median(r["learners"][lname][way][k] for r in out["runs"])
                                      for k in ("apgr", "cpt50")} for way in ("by_cost", "by_calls")}
        m = out["median"][lname]
        print(f"{'median of ' + str(len(out['runs'])) + ' splits':26s} {lname:20s} by cost: APGR "
              f"{m['by_cost']['apgr']:.3f} CPT50 {m['by_cost']['cpt50']:.3f} | by calls: APGR "
              f"{m['by_calls']['apgr']:.3f} CPT50 {m['by_calls']['cpt50']:.3f}")
    return out


E2E_PEER = "gpt-3.5-turbo-1106"  # bench/e2e.py's fast tier: llama (mixtral's recording) + gpt-4o-mini (gpt-3.5's)


def served_cascade(train, held, setup, seed: int, peer: str | None = None) -> dict:
    """The served cascade: `thrifty train router`'s code on the train part (its answer stage over the
    cheap answer and the peer's), replayed on the report part by `evaluate_policy` (cheap + peer paid
    on every call, the strong model on escalation)."""
    policy = train_policy(train, setup, seed=seed, peer=peer, answer_stage=True)
    data = prepare(held, setup)
    m = evaluate_policy(policy, data.rows, data.features, data.costs, cascade=True)

    def two(v: dict) -> dict:
        return {way: {"apgr": v[way]["apgr"], "cpt50": (v[way]["cpt50"] or {}).get(
            "u" if way == "by_cost" else "share_of_calls")} for way in ("by_cost", "by_calls")}

    return {**two(m), "peer_model": policy.answer.peer_model, "threshold": m["threshold"],
            "at_threshold": m["at_threshold"], "cohorts": {c: two(v) for c, v in m["cohorts"].items()}}


def _slim(m: dict) -> dict:
    keep = ("n", "cheap_quality", "strong_quality", "at_threshold", "by_cost", "by_calls")
    return {**{k: m[k] for k in keep}, "threshold": m["threshold"],
            "cohorts": {c: {k: v[k] for k in keep} for c, v in m["cohorts"].items()}}


def _fmt(m: dict, share: bool) -> str:
    def c(x):
        if x is None:
            return "  n/a"
        return f"{x['share_of_calls']:.3f}" if share else f"{x['u']:.3f}"

    apgr = "  n/a" if m["apgr"] is None else f"{m['apgr']:.3f}"
    return f"APGR {apgr} CPT50 {c(m['cpt50'])} CPT80 {c(m['cpt80'])}"


def _print_run(name: str, run: dict) -> None:
    for model in ("cheap", "embedding", "cascade"):
        if model in run:
            m = run[model]
            print(f"{name:12s} seed {run['seed']} train {run['train_share']:.0%} ({run['train_rows']}) "
                  f"test {run['test_rows']:5d} {model:9s} by cost: {_fmt(m['by_cost'], False)} | "
                  f"by calls: {_fmt(m['by_calls'], True)}"
                  + ("" if m["by_cost"]["tradeoff"] else
                     f"  (no trade-off: cheap quality {m['cheap_quality']:.3f} >= strong {m['strong_quality']:.3f})"))


def main(argv: list[str] | None = None) -> int:
    import os

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20000, help="timed decisions per measurement")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--embed", action="store_true", help="also the embedding model (embeds every prompt once)")
    ap.add_argument("--embed-cache", type=Path, help="an .npz file keeping the embeddings between runs")
    ap.add_argument("--compare", action="store_true", help="also other learners on RouterBench (implies --embed)")
    ap.add_argument("--no-quality", action="store_true", help="skip part 2 (the policy's figures)")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("THRIFTY_DATA_DIR", "../shared/data")) / "routing")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "learned_router.json")
    args = ap.parse_args(argv)
    embedder = CachedEmbedder(args.embed_cache) if args.embed or args.compare else None
    result: dict = {"machine": platform.platform(), "python": platform.python_version()}
    if not args.data_dir.is_dir():
        print(f"routing data not found at {args.data_dir}: set THRIFTY_DATA_DIR (quality part skipped)")
        result["quality"] = {"skipped": f"no data at {args.data_dir}"}
    elif args.no_quality:
        result["quality"] = {"skipped": "--no-quality"}
    else:
        result["quality"] = quality(args.data_dir, args.seeds, embedder if args.embed else None)
    if args.compare and embedder is not None and args.data_dir.is_dir():
        result["compare"] = compare(args.data_dir, args.seeds, embedder)
    # Latency on a policy trained on a small synthetic set (the decision's cost does not depend on the data).
    with tempfile.TemporaryDirectory() as tmp:
        policy_path = _synthetic_policy(Path(tmp), embed=args.embed)
        result["latency"] = latency(policy_path, args.rounds, args.embed)
    for name, p in result["latency"].items():
        print(f"latency {name:30s} p50 {p['p50_us']:9.1f} us  p99 {p['p99_us']:9.1f} us  max {p['max_us']:9.1f} us")
    summary = {}
    for name, runs in result["quality"].items():
        if isinstance(runs, list):
            for model in ("cheap", "embedding", "cascade"):
                vals = [r[model] for r in runs if model in r]
                if vals:
                    summary[f"{name}/{model}"] = {
                        way: statistics.fmean(v[way]["apgr"] for v in vals) if all(v[way]["apgr"] is not None
                                                                                    for v in vals) else None
                        for way in ("by_cost", "by_calls")}
    result["mean_apgr"] = summary
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Five significant decimals are plenty for these figures, and keep the file small.
    rounded = json.loads(json.dumps(result), parse_float=lambda x: round(float(x), 5))
    args.out.write_text(json.dumps(rounded, indent=1))
    print(f"written to {args.out}")
    return 0


def _synthetic_policy(folder: Path, embed: bool) -> str:
    from thrifty.routing.eval import Outcome, Row
    from thrifty.routing.learned_train import train_policy as fit

    rows = []
    for i in range(60):
        short = i % 2 == 0
        prompt = f"Question {i}: what is {i} plus {i}?" if short else ("Background. " * (50 + i)) + "Derive it."
        # Recorded answers, so the policy has an answer stage too (its peer: small-b).
        agree = i % 3 != 0
        rows.append(Row(prompt, {"small": Outcome(1.0 if short or agree else 0.0, 0.001, "A" if agree else "B"),
                                 "small-b": Outcome(1.0, 0.001, "A"), "big": Outcome(1.0, 0.01, "A")}))
    (folder / "routing.yaml").write_text(json.dumps({"tiers": {"fast": ["small", "small-b"], "strong": ["big"]},
                                                     "default_tier": "strong"}))
    setup = load_setup(str(folder / "routing.yaml"))
    rng = np.random.default_rng(0)
    policy = fit(rows, setup, embed=(lambda texts: rng.normal(size=(len(texts), 384))) if embed else None)
    path = folder / "policy.json"
    policy.save(str(path))
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
