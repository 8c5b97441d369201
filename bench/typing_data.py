"""Labelled prompts of every request type, from the shared data sets, for `thrifty eval typing`.

    python bench/typing_data.py --split tune --out /tmp/typing_tune.jsonl
    thrifty eval typing --data /tmp/typing_tune.jsonl

reads `$THRIFTY_DATA_DIR/prompts` and `.../routing` (default `../shared/data`) and writes JSON
Lines `{"prompt": str, "type": str, "source": str}`; nothing is ever committed. Exits with a
one-line message (status 2) when the data folder is absent, so callers can skip.

What each source is labelled (the router's types: classification, extraction, rewrite,
summarization, generation, reasoning, code, agentic):

- humaneval -> code (a Python signature and docstring to complete);
- gsm8k -> reasoning (grade-school word problems);
- headlines -> classification (the FrugalGPT few-shot prefix + one headline: up/down/neutral/none);
- banking77, clinc150 -> generation. They are FAQ / assistant questions ("how do I locate my
  card?"): the answer is a short free text, not a label the user asked for, not a worked problem
  and not code. The router sends FAQ traffic by feature (`x-thrifty-feature`) or the semantic
  cache; what matters for typing is that these never look like code or reasoning, the expensive
  tiers. (clinc150's `translate` intent is labelled rewrite, its `calculator` intent reasoning.)
- mt_bench (first turn) by category: coding -> code, math and reasoning -> reasoning,
  extraction -> extraction, writing / roleplay / stem / humanities -> generation. A category is a
  coarse label (one "writing" prompt is really a grammar fix), kept as published.

Splits: `tune` and `test` are the two halves of the sets above, chosen per prompt by a hash of its
text (fixed, no seed to forget); large sets are first sampled to at most `PER_SOURCE` prompts with
a fixed seed. `heldout` is data the typing rules were never looked at against: RouterBench's MBPP
(code), ARC-Challenge and Winogrande (few-shot multiple choice -> classification) and RouterArena's
LiveCodeBench (code), WMT19 (translation -> rewrite) and math sets (AIME, MATH, GSM8K, AsDiv,
MathQA -> reasoning).
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import hashlib
import json
import os
import random
import sys
from pathlib import Path
from typing import Iterator

csv.field_size_limit(1 << 30)

REPO = Path(__file__).resolve().parents[1]
PER_SOURCE = 400  # per source before the split: enough for a stable recall, fast to evaluate
SEED = 14
SPLITS = ("tune", "test", "heldout", "all")

MT_BENCH_TYPES = {"coding": "code", "math": "reasoning", "reasoning": "reasoning", "extraction": "extraction",
                  "writing": "generation", "roleplay": "generation", "stem": "generation",
                  "humanities": "generation"}
ARENA_MATH = ("AIME", "MATH", "GSM8K", "AsDiv", "MathQA")


def data_dir() -> Path:
    return Path(os.environ.get("THRIFTY_DATA_DIR", REPO.parent / "shared" / "data"))


def available() -> str | None:
    """None when the shared prompt sets are there, else a one-line reason (for skips)."""
    prompts = data_dir() / "prompts"
    return None if prompts.is_dir() else f"shared data not found at {prompts} (set THRIFTY_DATA_DIR)"


# ---------------------------------------------------------------- the tuned-on sets

def _humaneval(d: Path) -> Iterator[tuple[str, str]]:
    with gzip.open(d / "prompts/humaneval/HumanEval.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["prompt"], "code"


def _gsm8k(d: Path) -> Iterator[tuple[str, str]]:
    with open(d / "prompts/gsm8k/test.jsonl", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["question"], "reasoning"


def _headlines(d: Path) -> Iterator[tuple[str, str]]:
    prefix = (d / "prompts/headlines/HEADLINES_prefix_e8.txt").read_text(encoding="utf-8")
    with open(d / "prompts/headlines/HEADLINES_test.csv", encoding="utf-8") as f:
        for row in csv.reader(f):
            if row and row[0].startswith("Q:"):
                yield prefix + row[0], "classification"


def _banking77(d: Path) -> Iterator[tuple[str, str]]:
    with open(d / "prompts/banking77/test.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            yield row["text"], "generation"


def _clinc150(d: Path) -> Iterator[tuple[str, str]]:
    data = json.loads((d / "prompts/clinc150/data_full.json").read_text(encoding="utf-8"))
    special = {"translate": "rewrite", "calculator": "reasoning"}
    for text, intent in data["test"]:
        yield text, special.get(intent, "generation")


def _mt_bench(d: Path) -> Iterator[tuple[str, str]]:
    with open(d / "prompts/mt_bench/question.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            yield row["turns"][0], MT_BENCH_TYPES[row["category"]]


TUNED = {"humaneval": _humaneval, "gsm8k": _gsm8k, "headlines": _headlines, "banking77": _banking77,
         "clinc150": _clinc150, "mt_bench": _mt_bench}


# ---------------------------------------------------------------- held-out sets

def _routerbench(d: Path, name: str, kind: str) -> Iterator[tuple[str, str]]:
    with open(d / f"routing/routerbench_subset/{name}_test.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            turns = ast.literal_eval(row["prompt"])  # a Python list of turns, as RouterDC stored it
            yield turns[-1], kind


def _routerarena(d: Path) -> Iterator[tuple[str, str, str]]:
    with open(d / "routing/routerarena/claude-3-haiku-20240307.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            bench = row["global_index"].rsplit("_", 1)[0]
            if bench == "LiveCodeBench":
                yield row["question"], "code", "arena-livecodebench"
            elif bench.startswith("WMT19"):
                yield row["question"], "rewrite", "arena-wmt19"
            elif bench in ARENA_MATH:
                yield row["question"], "reasoning", "arena-math"


def _heldout(d: Path) -> Iterator[dict]:
    for name, kind in (("mbpp", "code"), ("arc_challenge", "classification"), ("winograde", "classification")):
        for prompt, label in _routerbench(d, name, kind):
            yield {"prompt": prompt, "type": label, "source": f"routerbench-{name}"}
    for prompt, label, source in _routerarena(d):
        yield {"prompt": prompt, "type": label, "source": source}


# ---------------------------------------------------------------- splits

def _half(text: str) -> str:
    return "tune" if hashlib.sha256(text.encode()).digest()[0] % 2 == 0 else "test"


def load(split: str = "all", *, per_source: int = PER_SOURCE) -> list[dict]:
    """Labelled prompts of `split` (tune, test, heldout or all), in a fixed order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    d = data_dir()
    rows: list[dict] = []
    if split != "heldout":
        rng = random.Random(SEED)
        for source, read in TUNED.items():
            items = list(dict.fromkeys(read(d)))  # dedupe, keep order
            if len(items) > per_source:
                items = rng.sample(items, per_source)
            rows += [{"prompt": p, "type": t, "source": source} for p, t in items
                     if split == "all" or _half(p) == split]
    if split in ("heldout", "all"):
        rows += list(_heldout(d))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description="Write labelled prompts for `thrifty eval typing`.")
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument("--out", required=True, help="JSON Lines file to write")
    parser.add_argument("--per-source", type=int, default=PER_SOURCE)
    args = parser.parse_args()
    if (reason := available()) is not None:
        print(f"typing_data: {reason}", file=sys.stderr)
        return 2
    rows = load(args.split, per_source=args.per_source)
    with open(args.out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["source"]] = counts.get(row["source"], 0) + 1
    print(f"wrote {len(rows)} prompts to {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
