"""Benchmarks of the semantic cache: ANN libraries, lookup latency and memory, CLINC150 replay,
MRPC / STS-B calibration (train -> test), and whether the verifier earns its place.

Usage: python bench/semantic_cache.py [--part ann|latency|clinc|pairs|verifier|all] [--sizes 10000,100000]

Everything runs on one core (onnxruntime and the ANN libraries with one thread) to stay polite on a
shared machine and to match one gateway worker. Embeddings of the real texts used as index contents
are cached under ~/.cache/thrifty-bench so that re-runs skip the slow part. Prints a summary per
part and merges the numbers into bench/results/semantic_cache.json.
Data comes from THRIFTY_DATA_DIR (default ../shared/data).
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from thrifty.cache.semantic import (
    DecisionPolicy,
    GuardVerifier,
    OnnxEmbedder,
    SemanticCache,
    calibrate,
    metrics,
    roc_auc,
)
from thrifty.cache.semantic.vote import VoteWeights

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("THRIFTY_DATA_DIR", REPO.parent / "shared" / "data"))
CACHE = Path(os.environ.get("THRIFTY_BENCH_CACHE", Path.home() / ".cache" / "thrifty-bench"))
RESULTS = REPO / "bench" / "results" / "semantic_cache.json"
TARGET = 0.01


# ---------------------------------------------------------------- data

def clinc() -> dict:
    return json.loads((DATA / "prompts/clinc150/data_full.json").read_text())


def mrpc(split: str) -> list[tuple[str, str, int]]:
    pairs = []
    with open(DATA / f"pairs/mrpc/msr_paraphrase_{split}.txt", encoding="utf-8-sig") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 5 and parts[0] in ("0", "1"):  # one train line joins two records: skipped
                pairs.append((parts[3], parts[4], int(parts[0])))
    return pairs


def stsb(split: str, pos_at: float = 4.0, neg_below: float = 4.0) -> list[tuple[str, str, int]]:
    """STS-B pairs binarised: score >= pos_at is 1, score < neg_below is 0, the rest dropped."""
    pairs = []
    with open(DATA / f"pairs/stsb/sts-{split}.csv", encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            score = float(row[4])
            if score >= pos_at:
                pairs.append((row[5], row[6], 1))
            elif score < neg_below:
                pairs.append((row[5], row[6], 0))
    return pairs


def corpus_texts() -> list[str]:
    texts = [t for split in clinc().values() for t, _ in split]
    with open(DATA / "prompts/banking77/train.csv", encoding="utf-8") as f:
        texts += [row["text"] for row in csv.DictReader(f)]
    for split in ("train", "test"):
        for a, b, _ in mrpc(split):
            texts += [a, b]
    for split in ("dev", "test"):
        for a, b, _ in stsb(split, 0.0, 0.0):
            texts += [a, b]
    return list(dict.fromkeys(texts))


def query_texts() -> list[str]:
    with open(DATA / "prompts/banking77/test.csv", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)][:1000]


def cached_embeddings(name: str, texts: list[str], embedder: OnnxEmbedder) -> np.ndarray:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}-{len(texts)}.npy"
    if path.is_file():
        return np.load(path)
    start = time.perf_counter()
    vectors = embedder.embed_batch(texts, batch_size=64)
    print(f"  embedded {len(texts)} texts in {time.perf_counter() - start:.0f} s", flush=True)
    np.save(path, vectors)
    return vectors


def vectors_of_size(n: int, embedder: OnnxEmbedder) -> np.ndarray:
    """n unit vectors: real embeddings first, then noisy copies of them (near-duplicates, as a
    cache full of paraphrases has) up to n."""
    real = cached_embeddings("corpus", corpus_texts(), embedder)
    if n <= len(real):
        return real[:n]
    rng = np.random.default_rng(0)
    extra = real[rng.integers(0, len(real), n - len(real))]
    extra = extra + rng.normal(0, 0.03, extra.shape).astype(np.float32)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    return np.vstack([real, extra]).astype(np.float32)


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def merge_results(part: str, result: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    data[part] = result
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


# ---------------------------------------------------------------- ANN libraries

def _ann_one(lib: str, n: int) -> dict:
    """Build one library's HNSW index over n vectors; time single-query search; recall@1."""
    embedder = OnnxEmbedder()
    base = vectors_of_size(n, embedder)
    queries = cached_embeddings("queries", query_texts(), embedder)
    exact = np.argmax(queries @ base.T, axis=1)
    gc.collect()
    rss0 = rss_mib()
    start = time.perf_counter()
    if lib == "usearch":
        from usearch.index import Index

        index = Index(ndim=base.shape[1], metric="ip", dtype="f32", connectivity=16, expansion_add=128,
                      expansion_search=64)
        index.add(np.arange(n, dtype=np.uint64), base, threads=1)

        def search(q):
            return int(index.search(q, 4, threads=1).keys[0])
    elif lib == "usearch-f16":
        from usearch.index import Index

        index = Index(ndim=base.shape[1], metric="ip", dtype="f16", connectivity=16, expansion_add=128,
                      expansion_search=64)
        index.add(np.arange(n, dtype=np.uint64), base, threads=1)

        def search(q):
            return int(index.search(q, 4, threads=1).keys[0])
    elif lib == "hnswlib":
        import hnswlib

        index = hnswlib.Index(space="ip", dim=base.shape[1])
        index.init_index(max_elements=n, ef_construction=128, M=16)
        index.set_num_threads(1)
        index.add_items(base, np.arange(n))
        index.set_ef(64)

        def search(q):
            return int(index.knn_query(q, k=4)[0][0][0])
    elif lib == "faiss":
        import faiss

        faiss.omp_set_num_threads(1)
        index = faiss.IndexHNSWFlat(base.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 128
        index.add(base)
        index.hnsw.efSearch = 64

        def search(q):
            return int(index.search(q[None, :], 4)[1][0][0])
    elif lib == "numpy-exact":
        matrix = base.copy()

        def search(q):
            return int(np.argmax(matrix @ q))
    else:
        raise SystemExit(f"unknown library {lib}")
    build_s = time.perf_counter() - start
    memory = rss_mib() - rss0
    for q in queries[:50]:
        search(q)
    lat, found = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(search(q))
        lat.append((time.perf_counter() - t) * 1e3)
    return {"lib": lib, "n": n, "build_s": round(build_s, 2), "rss_mib": round(memory, 1),
            "bytes_per_vector": round(memory * 2**20 / n),
            "search_ms_p50": round(pct(lat, 50), 4), "search_ms_p99": round(pct(lat, 99), 4),
            "recall_at_1": float(np.mean(np.array(found) == exact))}


def part_ann(sizes: list[int]) -> dict:
    rows = []
    for n in sizes:
        for lib in ("numpy-exact", "usearch", "usearch-f16", "hnswlib", "faiss"):
            out = subprocess.run([sys.executable, __file__, "--part", "_ann_one", "--lib", lib, "--n", str(n)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-2000:])
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"  {lib:<12} n={n:>7}  build {row['build_s']:7.2f} s  rss {row['rss_mib']:7.1f} MiB "
                  f"({row['bytes_per_vector']} B/vec)  search p50 {row['search_ms_p50']:.3f} ms "
                  f"p99 {row['search_ms_p99']:.3f} ms  recall@1 {row['recall_at_1']:.3f}", flush=True)
    return {"rows": rows}



# ---------------------------------------------------------------- latency and memory

def part_latency(sizes: list[int], vote: bool = False) -> dict:
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--part", "_latency_one", "--n", str(n)]
                             + (["--vote"] if vote else []), capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-2000:])
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"  n={n:>7} {'vote' if vote else 'nearest'}  lookup (embed+search+decide) p50 {row['lookup_ms_p50']:.2f} ms "
              f"p99 {row['lookup_ms_p99']:.2f} ms | embed p50 {row['embed_ms_p50']:.2f} p99 "
              f"{row['embed_ms_p99']:.2f} | search p50 {row['search_ms_p50']:.3f} p99 {row['search_ms_p99']:.3f} | "
              f"{row['bytes_per_entry']} B/entry (payload {row['payload_bytes']} B)", flush=True)
    return {"rows": rows}


def _latency_one(n: int, vote: bool = False) -> dict:
    """One namespace of n entries in a SemanticCache (in-process store); time real lookups.
    `vote`: the kNN vote over answer clusters (8 neighbours, entries in clusters of 10), shaped as
    the shipped default (`default_policy`: the vote where answers repeat, a cosine point elsewhere)."""
    embedder = OnnxEmbedder()
    vectors = vectors_of_size(n, embedder)
    texts = corpus_texts()
    queries = query_texts()
    # Every lookup runs in full, none hits.
    policy = DecisionPolicy(0.999 if not vote else 1.5, verifier=GuardVerifier(), vote=VoteWeights() if vote else None,
                            nearest=0.999 if vote else None)
    embedder.load()
    gc.collect()
    rss0 = rss_mib()
    cache = SemanticCache(policy, embedder=embedder)
    payload = b""  # answers are excluded: their size is the application's
    for i in range(n):
        # A fresh string per entry, as requests bring: sharing the corpus's would hide its cost.
        cache.add("bench", f"{texts[i % len(texts)]} ", f"e{i}", payload, vector=vectors[i],
                  answer_key=f"a{i // 10}" if vote else "")
    gc.collect()
    per_entry = (rss_mib() - rss0) * 2**20 / n
    for q in queries[:50]:
        cache.lookup("bench", q)
    lookup, embed, search = [], [], []
    for q in queries:
        t0 = time.perf_counter()
        cache.lookup("bench", q)
        lookup.append((time.perf_counter() - t0) * 1e3)
    for q in queries[:300]:
        t0 = time.perf_counter()
        v = embedder.embed(q)
        t1 = time.perf_counter()
        cache.index.search("bench", v, 4)
        t2 = time.perf_counter()
        embed.append((t1 - t0) * 1e3)
        search.append((t2 - t1) * 1e3)
    text_bytes = sum(len(texts[i % len(texts)]) + 1 for i in range(n)) / n
    return {"n": n, "vote": vote, "lookup_ms_p50": pct(lookup, 50), "lookup_ms_p99": pct(lookup, 99),
            "embed_ms_p50": pct(embed, 50), "embed_ms_p99": pct(embed, 99),
            "search_ms_p50": pct(search, 50), "search_ms_p99": pct(search, 99),
            "bytes_per_entry": round(per_entry), "payload_bytes": len(payload),
            "mean_text_bytes": round(text_bytes),
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ---------------------------------------------------------------- labelled pairs

def pair_scores(pairs: list[tuple[str, str, int]], embedder: OnnxEmbedder, name: str) -> tuple[np.ndarray, np.ndarray]:
    a = cached_embeddings(f"{name}-a", [p[0] for p in pairs], embedder)
    b = cached_embeddings(f"{name}-b", [p[1] for p in pairs], embedder)
    return (a * b).sum(axis=1), np.array([p[2] for p in pairs])


def decision_scores(policy: DecisionPolicy, pairs, sims) -> np.ndarray:
    # The cache holds `a` and is asked `b`, as in the pairs-file contract.
    return np.array([policy.score(float(s), b, a) for (a, b, _), s in zip(pairs, sims)])


def evaluate(train, test, embedder, name, *, verifier=None, confidence=0.9) -> dict:
    tr_sim, tr_y = pair_scores(train, embedder, f"{name}-train")
    te_sim, te_y = pair_scores(test, embedder, f"{name}-test")
    policy = DecisionPolicy(0.0, verifier=verifier)
    tr_s, te_s = decision_scores(policy, train, tr_sim), decision_scores(policy, test, te_sim)
    op = calibrate(tr_s, tr_y, target_false_hit=TARGET, confidence=confidence)
    policy = DecisionPolicy(op, verifier=verifier)
    accepted = [policy.accept(name, float(s), b, a) for (a, b, _), s in zip(test, te_sim)]
    m = metrics(accepted, te_y)
    return {"dataset": name, "verifier": repr(verifier), "confidence": confidence,
            "train_pairs": len(train), "train_negatives": op.negatives, "test_pairs": len(test),
            "test_positives": m.positives, "test_negatives": m.negatives,
            "threshold": op.threshold, "auc_cosine": roc_auc(te_sim, te_y), "auc_decision": roc_auc(te_s, te_y),
            "precision": m.precision, "recall": m.recall, "false_hit_rate": m.false_hit_rate,
            "false_hits": m.false_hits, "hits": m.hits,
            "train_false_hit_rate": op.calibration_false_hit_rate, "train_recall": op.calibration_recall}


def datasets() -> dict:
    return {
        "mrpc": (mrpc("train"), mrpc("test")),
        # STS-B here has no train split: dev calibrates, test reports. 4 = "mostly equivalent,
        # unimportant details differ"; 3 = "roughly equivalent, important information differs":
        # a cache must not serve a 3, so everything below 4 is negative (strict); the lenient
        # variant drops the ambiguous 2-4 band, as is common, and is easier.
        "stsb-strict": (stsb("dev", 4.0, 4.0), stsb("test", 4.0, 4.0)),
        "stsb-lenient": (stsb("dev", 4.0, 2.0001), stsb("test", 4.0, 2.0001)),
    }


def _row(r: dict) -> str:
    return (f"  {r['dataset']:<13} {r['verifier']:<32} conf {str(r['confidence']):<5} thr {r['threshold']:.4f}  "
            f"AUC {r['auc_cosine']:.3f}  P {r['precision']:.3f}  R {r['recall']:.3f}  "
            f"FHR {r['false_hit_rate']:.4f} ({r['false_hits']}/{r['test_negatives']})")


def part_pairs() -> dict:
    embedder = OnnxEmbedder()
    rows = []
    for name, (train, test) in datasets().items():
        for verifier in (None, GuardVerifier()):
            for confidence in (0.9, None):
                r = evaluate(train, test, embedder, name, verifier=verifier, confidence=confidence)
                rows.append(r)
                print(_row(r), flush=True)
    return {"target_false_hit": TARGET, "rows": rows}


def part_verifier() -> dict:
    """Each guard alone and together: recall at the calibrated 1% point, and precision at the hit
    rate the guarded system reaches, against the plain threshold tuned to the same hit rate."""
    embedder = OnnxEmbedder()
    variants = {
        "none": None,
        "numbers": GuardVerifier(check_negation=False),
        "negation": GuardVerifier(check_numbers=False),
        "numbers+negation": GuardVerifier(),
        "numbers+negation+entities": GuardVerifier(check_entities=True),
    }
    rows = []
    for name, (train, test) in datasets().items():
        te_sim, te_y = pair_scores(test, embedder, f"{name}-test")
        for label, verifier in variants.items():
            r = evaluate(train, test, embedder, name, verifier=verifier)
            # Plain cosine threshold giving the same number of true hits on test.
            tp = int(round(r["recall"] * r["test_positives"]))
            pos_sorted = np.sort(te_sim[te_y == 1])[::-1]
            if tp > 0:
                cut = pos_sorted[tp - 1]
                plain = metrics(te_sim >= cut, te_y)
                r["plain_precision_at_equal_recall"] = plain.precision
                r["plain_false_hit_rate_at_equal_recall"] = plain.false_hit_rate
            r["variant"] = label
            rows.append(r)
            extra = (f" | plain at equal recall: P {r.get('plain_precision_at_equal_recall', float('nan')):.3f} "
                     f"FHR {r.get('plain_false_hit_rate_at_equal_recall', float('nan')):.4f}")
            print(_row(r) + extra, flush=True)
    return {"rows": rows}


# ---------------------------------------------------------------- CLINC150 replay

def part_clinc() -> dict:
    data = clinc()
    embedder = OnnxEmbedder()
    warm, seen = [], set()
    for text, intent in data["train"]:
        if intent not in seen:
            seen.add(intent)
            warm.append((text, intent))
    warm_texts = {t for t, _ in warm}
    queries = [(t, i) for split in ("train", "val", "test") for t, i in data[split] if t not in warm_texts]
    oos = [(t, "oos") for split in ("oos_train", "oos_val", "oos_test") for t, _ in data[split]]
    vec_warm = cached_embeddings("clinc-warm", [t for t, _ in warm], embedder)
    vec_q = cached_embeddings("clinc-queries", [t for t, _ in queries], embedder)
    vec_oos = cached_embeddings("clinc-oos", [t for t, _ in oos], embedder)

    # The shipped default: calibrated on MRPC train + STS-B dev (strict), never on CLINC.
    sets = datasets()
    train = sets["mrpc"][0] + sets["stsb-strict"][0]
    sims = np.concatenate([pair_scores(sets["mrpc"][0], embedder, "mrpc-train")[0],
                           pair_scores(sets["stsb-strict"][0], embedder, "stsb-strict-train")[0]])
    labels = np.array([p[2] for p in train])
    out = {}
    for verifier in (None, GuardVerifier()):
        probe = DecisionPolicy(0.0, verifier=verifier)
        general = calibrate(decision_scores(probe, train, sims), labels, target_false_hit=TARGET)
        # Per-namespace calibration on CLINC's own val split: each val utterance against its
        # nearest warm entry (label: same intent), which is the decision the cache actually makes.
        val = [(t, i) for t, i in data["val"] if t not in warm_texts] + [(t, "oos") for t, _ in data["oos_val"]]
        vec_val = embedder.embed_batch([t for t, _ in val])
        nearest = np.argmax(vec_val @ vec_warm.T, axis=1)
        val_pairs = [(warm[j][0], t, int(warm[j][1] == i)) for (t, i), j in zip(val, nearest)]
        val_sims = (vec_val * vec_warm[nearest]).sum(axis=1)
        own = calibrate(decision_scores(probe, val_pairs, val_sims), [p[2] for p in val_pairs],
                        target_false_hit=TARGET)
        test_set = {t for t, _ in data["test"]}
        # A query is a negative when its nearest warm entry has another intent: serving that
        # neighbour would be wrong, so false-hit rate = wrong hits / such queries.
        nearest_q = np.argmax(vec_q @ vec_warm.T, axis=1)
        for label, op in (("general", general), ("clinc-val-calibrated", own)):
            policy = DecisionPolicy(op, verifier=verifier)
            cache = SemanticCache(policy, embedder=embedder)
            for k, ((text, intent), v) in enumerate(zip(warm, vec_warm)):
                cache.add("clinc", text, f"w{k}", intent.encode(), vector=v)
            hits = wrong = n = negatives = 0
            for (text, intent), v, j in zip(queries, vec_q, nearest_q):
                if label != "general" and text not in test_set:
                    continue  # the val split calibrated this one: report on the test split
                n += 1
                negatives += warm[j][1] != intent
                found = cache.lookup_vector("clinc", text, v)
                if found is not None:
                    hits += 1
                    wrong += found[0].payload.decode() != intent
            oos_hits = sum(cache.lookup_vector("clinc", t, v) is not None for (t, _), v in zip(oos, vec_oos))
            key = f"{label}/{'verifier' if verifier else 'no-verifier'}"
            out[key] = {"threshold": op.threshold, "warm_entries": len(warm),
                        "queries": "train+val+test" if label == "general" else "test",
                        "in_scope_queries": n, "hits": hits, "hit_rate": hits / n, "wrong_intent_hits": wrong,
                        "wrong_intent_share_of_hits": wrong / hits if hits else 0.0,
                        "negatives": negatives, "false_hit_rate": wrong / negatives if negatives else 0.0,
                        "oos_queries": len(oos), "oos_hits": oos_hits, "oos_hit_rate": oos_hits / len(oos)}
            r = out[key]
            print(f"  {key:<34} thr {op.threshold:.4f}  hit rate {r['hit_rate']:.3f} ({hits}/{n})  "
                  f"wrong-intent hits {wrong} ({r['wrong_intent_share_of_hits']:.2%} of hits, "
                  f"false-hit rate {r['false_hit_rate']:.4f} of {negatives})  oos hits {oos_hits}/{len(oos)}",
                  flush=True)
    out.update(_clinc_online(data, embedder, warm, queries, vec_warm, vec_q))
    return out


def _clinc_online(data, embedder, warm, queries, vec_warm, vec_q) -> dict:
    """A cache that fills itself: every miss stores its answer, every wrong hit is reported bad
    (evicting the entry and tightening the namespace). Starts from the general threshold, and
    from a deliberately loose 0.6 to show what feedback does to a badly set namespace."""
    sets = datasets()
    train = sets["mrpc"][0] + sets["stsb-strict"][0]
    sims = np.concatenate([pair_scores(sets["mrpc"][0], embedder, "mrpc-train")[0],
                           pair_scores(sets["stsb-strict"][0], embedder, "stsb-strict-train")[0]])
    verifier = GuardVerifier()
    probe = DecisionPolicy(0.0, verifier=verifier)
    op = calibrate(decision_scores(probe, train, sims), [p[2] for p in train], target_false_hit=TARGET)
    out = {}
    for start, feedback in (("general", False), ("general", True), ("loose-0.6", False), ("loose-0.6", True)):
        policy = DecisionPolicy(op if start == "general" else 0.6, verifier=verifier)
        cache = SemanticCache(policy, embedder=embedder)
        for k, ((text, intent), v) in enumerate(zip(warm, vec_warm)):
            cache.add("clinc", text, f"w{k}", intent.encode(), vector=v)
        rng = np.random.default_rng(1)
        order = rng.permutation(len(queries))
        hits = wrong = 0
        wrong_by_quarter = [0, 0, 0, 0]
        for rank, idx in enumerate(order):
            text, intent = queries[idx]
            found = cache.lookup_vector("clinc", text, vec_q[idx])
            if found is None:
                cache.add("clinc", text, f"q{idx}", intent.encode(), vector=vec_q[idx])
                continue
            hits += 1
            if found[0].payload.decode() != intent:
                wrong += 1
                wrong_by_quarter[rank * 4 // len(order)] += 1
                if feedback:
                    cache.feedback(found[0].entry_id, bad=True)
                    cache.add("clinc", text, f"q{idx}", intent.encode(), vector=vec_q[idx])
        key = f"online/fill-on-miss/{start}/{'feedback' if feedback else 'no-feedback'}"
        out[key] = {"queries": len(queries), "hit_rate": hits / len(queries), "wrong_intent_hits": wrong,
                    "wrong_intent_share_of_hits": wrong / hits if hits else 0.0,
                    "wrong_hits_by_quarter": wrong_by_quarter, "final_threshold": policy.threshold("clinc"),
                    "entries": len(cache)}
        r = out[key]
        print(f"  {key:<44} hit rate {r['hit_rate']:.3f}  wrong-intent hits {wrong} "
              f"({r['wrong_intent_share_of_hits']:.3%} of hits, by quarter {wrong_by_quarter})  "
              f"final threshold {r['final_threshold']:.4f}", flush=True)
    return out


# ---------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--lib", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--vote", action="store_true", help="latency: the kNN-vote policy (issue 14)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.part == "_ann_one":
        print(json.dumps(_ann_one(args.lib, args.n)))
        return
    if args.part == "_latency_one":
        print(json.dumps(_latency_one(args.n, args.vote)))
        return
    parts = {"ann": lambda: part_ann(sizes), "latency": lambda: part_latency(sizes, args.vote), "pairs": part_pairs,
             "verifier": part_verifier, "clinc": part_clinc}
    for name in (parts if args.part == "all" else args.part.split(",")):
        print(f"== {name}", flush=True)
        merge_results(f"{name}_vote" if name == "latency" and args.vote else name, parts[name]())
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
