"""The labelled, SaaS-like mix of the end-to-end proof, built from the shared data (never copied here).

Each item is one call a product makes, tagged with its cohort (sent as `x-thrifty-feature`) and
with what scoring it needs. The recorded outcomes (`outcomes`) go to `thrifty emulate`'s
`recorded:` section, so every emulator model answers a known prompt with what the model it stands
for answered (RouterBench) or with the answer this file assigns it (the other cohorts, below).

Cohorts and what their quality means (points 0-100 against the labels):

- `faq`: banking77 support questions of a few intents, paraphrases of each other, under one long
  support policy (a semantic-cache route). Every model is assigned one answer per intent, so the
  only way to lose quality is to serve another intent's answer (a false semantic hit).
- `headlines`: FrugalGPT's headline classification prompts behind their shared few-shot prefix.
  Every model is assigned the gold label (no per-model outcomes exist for it here), so this
  cohort measures only that caching and routing never served a wrong label.
- `gsm8k`: grade-school math. Only the frontier model is assigned the gold answer; no cheaper model
  has recorded outcomes, so an answer from one counts as wrong (a routing mistake costs quality).
- `arc-challenge`, `mbpp`, `winogrande`: RouterBench's prompts with every model's recorded 0/1
  score and answer text (read by `routerbench.py`): routing quality is real.
- `enrichment`: catalogue enrichment that no user waits for (`x-thrifty-defer: 24h`, the batch
  lane); quality = a non-empty answer came back.

The shares of each cohort are fixed (`SHARES`); prompts are drawn with a fixed seed, so one N
gives one mix. `THRIFTY_DATA_DIR` (default ../shared/data) must hold prompts/ and routing/.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thrifty.cli.proof.routerbench import routerbench_rows

# emulator model -> the recorded model it replays. Chosen by kind (OpenAI's frontier and small
# models of the recording's generation; an open-weight model served by a fast host), not by score.
FRONTIER = "gpt-4o"
MODELS = {"gpt-4o": "gpt-4-1106-preview", "gpt-4o-mini": "gpt-3.5-turbo-1106",
          "llama-3.1-8b-instant": "mistralai/mixtral-8x7b-chat"}

# Share of calls per cohort: a support bot, a classifier and a batch job dominate a SaaS bill's
# call count; hard prompts are the minority.
SHARES = {"faq": 0.30, "headlines": 0.20, "gsm8k": 0.08, "arc-challenge": 0.10, "mbpp": 0.07,
          "winogrande": 0.10, "enrichment": 0.15}
FAQ_INTENTS = 8  # the most frequent banking77 intents of the test split
# The mix draws its RouterBench cohorts only from the published test files; a learned routing
# policy (`bench/e2e.py --learned`) trains only on the train files, less any prompt whose text is
# also in a test file (2 MBPP prompts are in both), so no prompt of the mix is ever trained on.
ROUTERBENCH_FILES = {"arc-challenge": "arc_challenge_test.csv", "mbpp": "mbpp_test.csv",
                     "winogrande": "winograde_test.csv"}
ROUTERBENCH_TRAIN_FILES = {"arc-challenge": "arc_challenge_train.csv", "mbpp": "mbpp_train.csv",
                           "winogrande": "winograde_train.csv"}

ENRICH_SYSTEM = "Tag this customer message with one topic and three search keywords, on one line."


@dataclass
class Item:
    """One call of the mix and what scoring it needs."""

    cohort: str
    messages: list[dict[str, str]]
    label: Any = None  # faq: intent; headlines: label; gsm8k: the number; routerbench: {model: score}
    answers: dict[str, str] = field(default_factory=dict)  # routerbench: recorded model -> answer text
    max_tokens: int | None = None
    defer: bool = False

    @property
    def prompt(self) -> str:
        return self.messages[-1]["content"]


def data_dir() -> Path:
    return Path(os.environ.get("THRIFTY_DATA_DIR", "../shared/data"))


def missing_data(root: Path | None = None, *, train_side: bool = False) -> str | None:
    """Why the mix (and with `train_side`, a policy's training rows) cannot be built here, or None
    when the shared data is in place."""
    root = root or data_dir()
    need = ["prompts/banking77/test.csv", "prompts/headlines/HEADLINES_test.csv",
            "prompts/headlines/HEADLINES_prefix_e8.txt", "prompts/gsm8k/test.jsonl", "prompts/clinc150/data_full.json",
            *(f"routing/routerbench_subset/{f}" for f in ROUTERBENCH_FILES.values()),
            *(f"routing/routerbench_subset/{f}" for f in ROUTERBENCH_TRAIN_FILES.values() if train_side)]
    absent = [p for p in need if not (root / p).exists()]
    if absent:
        return f"shared data not found under {root} ({absent[0]}...): set THRIFTY_DATA_DIR"
    return None


def faq_answer(intent: str) -> str:
    """The one answer every model gives to a question of `intent`; the tag makes it scoreable."""
    return (f"[{intent}] Thanks for asking about {intent.replace('_', ' ')}. You can handle this in the app; "
            "if anything looks wrong, contact support and we will help you.")


def intent_of(answer: str) -> str | None:
    m = re.match(r"\[([A-Za-z_]+)\]", answer.strip())
    return m.group(1) if m else None


def gsm8k_answer(number: str) -> str:
    return f"Working through it step by step gives the result.\n#### {number}"


def number_of(answer: str) -> str | None:
    m = re.search(r"####\s*(-?[\d,.]+)", answer)
    return m.group(1).replace(",", "") if m else None


def _counts(n: int) -> dict[str, int]:
    counts = {c: int(n * s) for c, s in SHARES.items()}
    for c in sorted(SHARES, key=SHARES.get, reverse=True)[: n - sum(counts.values())]:
        counts[c] += 1  # largest shares take the rounding remainder
    return counts


def build_mix(n: int, seed: int = 14, root: Path | None = None) -> tuple[list[Item], list[dict]]:
    """(items in a shuffled arrival order, outcomes rows for the emulator's `recorded:` file)."""
    root = root or data_dir()
    rng = random.Random(seed)
    counts = _counts(n)
    items: list[Item] = []
    outcomes: list[dict] = []
    recorded = list(dict.fromkeys(MODELS.values()))

    def record(prompt: str, answer_by_model: dict[str, str], cohort: str) -> None:
        outcomes.append({"prompt": prompt, "cohort": cohort,
                         "outcomes": {m: {"score": 1.0, "answer": a} for m, a in answer_by_model.items()}})

    # FAQ: a few intents, paraphrases drawn without repetition.
    from thrifty.cli.workload import SUPPORT_POLICY

    with (root / "prompts/banking77/test.csv").open(newline="", encoding="utf-8") as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    by_intent: dict[str, list[str]] = {}
    for text, intent in rows:
        by_intent.setdefault(intent, []).append(text)
    intents = sorted(by_intent, key=lambda i: (-len(by_intent[i]), i))[:FAQ_INTENTS]
    pool = [(t, i) for i in intents for t in by_intent[i]]
    for text, intent in rng.sample(pool, min(counts["faq"], len(pool))):
        items.append(Item("faq", [{"role": "system", "content": SUPPORT_POLICY}, {"role": "user", "content": text}],
                          label=intent, max_tokens=200))
        record(text, {m: faq_answer(intent) for m in recorded}, "faq")

    prefix = (root / "prompts/headlines/HEADLINES_prefix_e8.txt").read_text(encoding="utf-8").strip()
    with (root / "prompts/headlines/HEADLINES_test.csv").open(newline="", encoding="utf-8") as f:
        heads = [(q.strip(), label) for q, label, *_ in csv.reader(f)]
    for query, label in rng.sample(heads, counts["headlines"]):
        items.append(Item("headlines", [{"role": "system", "content": prefix}, {"role": "user", "content": query}],
                          label=label, max_tokens=10))
        record(query, {m: label for m in recorded}, "headlines")

    with (root / "prompts/gsm8k/test.jsonl").open(encoding="utf-8") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    for p in rng.sample(problems, counts["gsm8k"]):
        number = number_of(p["answer"])
        items.append(Item("gsm8k", [{"role": "user", "content": p["question"]}], label=number, max_tokens=600))
        record(p["question"], {MODELS[FRONTIER]: gsm8k_answer(number or "")}, "gsm8k")

    for cohort, name in ROUTERBENCH_FILES.items():
        rows = [r for r in routerbench_rows(root / "routing/routerbench_subset" / name, cohort)
                if all(m in r["outcomes"] for m in recorded)]
        for r in rng.sample(rows, counts[cohort]):
            outs = {m: r["outcomes"][m] for m in recorded}
            items.append(Item(cohort, [{"role": "user", "content": r["prompt"]}],
                              label={m: o["score"] for m, o in outs.items()},
                              answers={m: o.get("answer", "") for m, o in outs.items()}, max_tokens=800))
            outcomes.append({"prompt": r["prompt"], "cohort": cohort, "outcomes": outs})

    data = json.loads((root / "prompts/clinc150/data_full.json").read_text(encoding="utf-8"))
    for text, _intent in rng.sample(data["test"], counts["enrichment"]):
        items.append(Item("enrichment", [{"role": "system", "content": ENRICH_SYSTEM},
                                         {"role": "user", "content": text}], max_tokens=60, defer=True))
    rng.shuffle(items)
    return items, outcomes


def policy_training_rows(root: Path | None = None, request_types: tuple[str, ...] | None = None) -> list[dict]:
    """The train side of the split: RouterBench train rows (outcomes of the recorded models only)
    whose prompt is in no test file, in the `thrifty eval router` shape. With `request_types`, only
    the prompts the gateway types as one of them: the traffic of the rule the policy will serve."""
    from thrifty.routing.features import features_from_prompt

    root = root or data_dir()
    folder = root / "routing/routerbench_subset"
    test_prompts = {r["prompt"] for cohort, name in ROUTERBENCH_FILES.items()
                    for r in routerbench_rows(folder / name, cohort)}
    recorded = list(dict.fromkeys(MODELS.values()))
    rows = []
    for cohort, name in ROUTERBENCH_TRAIN_FILES.items():
        for r in routerbench_rows(folder / name, cohort):
            if r["prompt"] in test_prompts or not all(m in r["outcomes"] for m in recorded):
                continue
            if request_types is not None and features_from_prompt(r["prompt"]).request_type not in request_types:
                continue
            # The recorded answers too: a cascade policy learns from what the cheap models said.
            rows.append({"prompt": r["prompt"], "cohort": cohort,
                         "outcomes": {m: {k: r["outcomes"][m][k] for k in ("score", "cost_usd", "answer")
                                          if k in r["outcomes"][m]} for m in recorded}})
    return rows


def score(item: Item, answer: str | None, served_model: str | None) -> float:
    """The quality of one served answer, 0..1, against the item's label."""
    if answer is None:
        return 0.0
    if item.cohort == "faq":
        return float(intent_of(answer) == item.label)
    if item.cohort == "headlines":
        return float(answer.strip().lower() == str(item.label).lower())
    if item.cohort == "gsm8k":
        return float(item.label is not None and number_of(answer) == item.label)
    if item.cohort == "enrichment":
        return float(bool(answer.strip()))
    # RouterBench: the recorded score of the model whose recorded answer was served (the served
    # model's first, then any model with that exact text), else the served model's own score.
    recorded = MODELS.get(served_model or "")
    candidates = ([recorded] if recorded else []) + [m for m in item.answers if m != recorded]
    for m in candidates:
        if item.answers.get(m) and item.answers[m].strip() == answer.strip():
            return float(item.label[m])
    return float(item.label.get(recorded, 0.0)) if recorded else 0.0


def write_outcomes(path: Path, outcomes: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in outcomes:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def served_recorded(model: str | None) -> str | None:
    """Response models are dated snapshots (gpt-4o-2024-08-06); map them back to the catalog name."""
    if not model:
        return None
    return next((m for m in sorted(MODELS, key=len, reverse=True) if model == m or model.startswith(m + "-")), model)


def quality(items: list[Item], results: list[dict[str, Any]]) -> tuple[dict[str, float], float]:
    """Points (0-100) per cohort and over every call: the mean score of the answers served."""
    by: dict[str, list[float]] = {}
    for item, res in zip(items, results):
        by.setdefault(item.cohort, []).append(score(item, res["answer"], served_recorded(res["model"])))
    every = [s for v in by.values() for s in v]
    return ({c: 100 * sum(v) / len(v) for c, v in by.items()}, 100 * sum(every) / len(every) if every else 0.0)

