"""Labelled pairs for `thrifty eval cache` from the shared data (written to a folder, never committed).

    python bench/cache_pairs.py --out /tmp/thrifty-pairs
    thrifty eval cache --pairs /tmp/thrifty-pairs/clinc150_test.jsonl \\
        --calibrate /tmp/thrifty-pairs/clinc150_calibrate.jsonl

reads `$THRIFTY_DATA_DIR` (default `../shared/data`) and writes `NAME_calibrate.jsonl` and
`NAME_test.jsonl` (`{"a", "b", "label"}`) for each set. Calibration and test never share a text:

- mrpc: the published train (calibrate) and test splits; label = paraphrase.
- stsb: dev (calibrate) and test; label 1 when the 0-5 score is >= 4 ("mostly equivalent"),
  else 0: a cache must not serve a 3 ("important information differs").
- clinc150, banking77 (FAQ traffic): utterances of the published train split make the
  calibration pairs, of the test split the test pairs. Each utterance `a` (in a fixed random
  order, seed `SEED`) gives one positive, `a` with another utterance of the same intent (a cached
  answer to one serves the other), and one negative, `a` with an utterance of a different intent;
  for clinc150 the other intent is from the same domain (banking, travel, ...) so that negatives
  are near misses, not random topics, and clinc150's out-of-scope utterances also pair with
  in-scope ones as negatives (a quarter of the negatives). Each set is cut to `--per-split`
  pairs, half positive.

It also writes streams for `thrifty eval cache --stream` (`NAME_stream_{calibrate,test}.jsonl`,
`{"text", "answer"}`: the intent is the answer, null for clinc150's out-of-scope queries, which
share an answer with nobody): clinc150's calibration stream is 30 utterances per intent of the
train split plus the 200 out-of-scope train and validation utterances, its test stream the whole
test split (4,500 + 1,000 out of scope); banking77's are 40 per intent of train and all of test.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = 14


def data_dir() -> Path:
    return Path(os.environ.get("THRIFTY_DATA_DIR", REPO.parent / "shared" / "data"))


def mrpc(d: Path, split: str) -> list[tuple[str, str, int]]:
    pairs = []
    with open(d / f"pairs/mrpc/msr_paraphrase_{split}.txt", encoding="utf-8-sig") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 5 and parts[0] in ("0", "1"):  # one train line joins two records: skipped
                pairs.append((parts[3], parts[4], int(parts[0])))
    return pairs


def stsb(d: Path, split: str) -> list[tuple[str, str, int]]:
    with open(d / f"pairs/stsb/sts-{split}.csv", encoding="utf-8") as f:
        return [(row[5], row[6], int(float(row[4]) >= 4.0))
                for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def intent_pairs(by_intent: dict[str, list[str]], neighbours: dict[str, list[str]], outside: list[str],
                 n: int, rng: random.Random) -> list[tuple[str, str, int]]:
    """n pairs, half same-intent; negatives from a neighbouring intent or (a quarter) `outside`."""
    anchors = [(intent, text) for intent, texts in by_intent.items() if len(texts) > 1 for text in texts]
    rng.shuffle(anchors)
    pairs = []
    for k, (intent, a) in enumerate(anchors[: n // 2]):
        pairs.append((a, rng.choice([t for t in by_intent[intent] if t != a]), 1))
        if outside and k % 4 == 0:
            pairs.append((a, rng.choice(outside), 0))
        else:
            other = rng.choice(neighbours[intent])
            pairs.append((a, rng.choice(by_intent[other]), 0))
    return pairs


def clinc150(d: Path, split: str, n: int) -> list[tuple[str, str, int]]:
    data = json.loads((d / "prompts/clinc150/data_full.json").read_text(encoding="utf-8"))
    domains = json.loads((d / "prompts/clinc150/domains.json").read_text(encoding="utf-8"))
    domain_of = {intent: name for name, intents in domains.items() for intent in intents}
    by_intent: dict[str, list[str]] = {}
    for text, intent in data[split]:
        by_intent.setdefault(intent, []).append(text)
    neighbours = {i: [j for j in by_intent if j != i and domain_of.get(j) == domain_of.get(i)] for i in by_intent}
    outside = [text for text, _ in data[f"oos_{split}"]]
    return intent_pairs(by_intent, neighbours, outside, n, random.Random(f"{SEED}-clinc-{split}"))


def banking77(d: Path, split: str, n: int) -> list[tuple[str, str, int]]:
    by_intent: dict[str, list[str]] = {}
    with open(d / f"prompts/banking77/{split}.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_intent.setdefault(row["category"], []).append(row["text"])
    neighbours = {i: [j for j in by_intent if j != i] for i in by_intent}
    return intent_pairs(by_intent, neighbours, [], n, random.Random(f"{SEED}-banking-{split}"))


def _sample(rows: list[tuple[str, str | None]], per_intent: int, rng: random.Random) -> list:
    by: dict[str | None, list[str]] = {}
    for text, intent in rows:
        by.setdefault(intent, []).append(text)
    return [(t, i) for i, ts in by.items() for t in rng.sample(ts, min(per_intent, len(ts)))]


def streams(d: Path) -> dict[str, tuple[list, list]]:
    """(calibration stream, test stream) of (text, answer) per intent set."""
    data = json.loads((d / "prompts/clinc150/data_full.json").read_text(encoding="utf-8"))
    rng = random.Random(f"{SEED}-streams")
    clinc_cal = _sample([tuple(r) for r in data["train"]], 30, rng) + \
        [(t, None) for t, _ in data["oos_train"] + data["oos_val"]]
    clinc_test = [tuple(r) for r in data["test"]] + [(t, None) for t, _ in data["oos_test"]]
    banking = {}
    for split in ("train", "test"):
        with open(d / f"prompts/banking77/{split}.csv", encoding="utf-8") as f:
            banking[split] = [(row["text"], row["category"]) for row in csv.DictReader(f)]
    return {"clinc150": (clinc_cal, clinc_test),
            "banking77": (_sample(banking["train"], 40, rng), banking["test"])}


def build(d: Path, per_split: int) -> dict[str, tuple[list, list]]:
    return {
        "mrpc": (mrpc(d, "train"), mrpc(d, "test")),
        "stsb": (stsb(d, "dev"), stsb(d, "test")),
        "clinc150": (clinc150(d, "train", per_split), clinc150(d, "test", per_split)),
        "banking77": (banking77(d, "train", per_split), banking77(d, "test", per_split)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Write labelled pairs for `thrifty eval cache`.")
    parser.add_argument("--out", required=True, help="folder to write NAME_{calibrate,test}.jsonl into")
    parser.add_argument("--per-split", type=int, default=3000, help="pairs per intent set and split (default 3000)")
    args = parser.parse_args()
    d = data_dir()
    if not (d / "pairs").is_dir() or not (d / "prompts").is_dir():
        print(f"cache_pairs: shared data not found at {d} (set THRIFTY_DATA_DIR)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, (calibrate, test) in build(d, args.per_split).items():
        calibrate_texts = {t for a, b, _ in calibrate for t in (a, b)}
        test = [p for p in test if p[0] not in calibrate_texts and p[1] not in calibrate_texts]  # disjoint
        for split, pairs in (("calibrate", calibrate), ("test", test)):
            with open(out / f"{name}_{split}.jsonl", "w", encoding="utf-8") as f:
                for a, b, y in pairs:
                    f.write(json.dumps({"a": a, "b": b, "label": y}, ensure_ascii=False) + "\n")
        print(f"{name}: calibrate {len(calibrate)} pairs ({sum(y for *_, y in calibrate)} positive), "
              f"test {len(test)} ({sum(y for *_, y in test)} positive)")
    for name, (calibrate, test) in streams(d).items():
        seen = {t for t, _ in calibrate}
        test = [(t, a) for t, a in test if t not in seen]  # disjoint texts
        for split, rows in (("calibrate", calibrate), ("test", test)):
            with open(out / f"{name}_stream_{split}.jsonl", "w", encoding="utf-8") as f:
                for text, answer in rows:
                    f.write(json.dumps({"text": text, "answer": answer}, ensure_ascii=False) + "\n")
        print(f"{name}: stream calibrate {len(calibrate)} queries, test {len(test)} "
              f"({sum(a is None for _, a in test)} with an answer of their own)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
