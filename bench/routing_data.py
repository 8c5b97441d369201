"""Convert the shared routing data sets into `thrifty eval router` files (never committed).

    python bench/routing_data.py --out /tmp/thrifty-routing

reads `$THRIFTY_DATA_DIR/routing` (default `../shared/data/routing`) and writes to `--out`:

- `routerbench_train.jsonl`, `routerbench_test.jsonl`: the RouterBench subset (ARC-Challenge,
  MBPP, Winogrande; 0-shot) with the published train/test split; cohort = the data set; every
  model's 0/1 score, USD cost and recorded answer. A model whose score or cost is missing on a
  row is left out of that row's outcomes.
- `routerarena_train.jsonl`, `routerarena_test.jsonl`: RouterArena's cached results for
  claude-3-haiku and gemini-2.0-flash, split by a hash of the prompt id (`--arena-train`, default
  60% train); cohort = the benchmark the prompt comes from (MMLUPro, PubMedQA, ...).
- `routerbench.yaml`, `routerarena.yaml`: hand-written starting configs (gateway shape: deployments,
  prices, routing) to evaluate and to calibrate from. Prices there are each model's mean observed
  USD per estimated prompt token in the data, only used to rank deployments inside a tier.

Then, for example:

    thrifty eval router --data OUT/routerbench_test.jsonl --config OUT/routerbench.yaml \\
        --calibrate OUT/routerbench_train.jsonl
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from pathlib import Path

from thrifty.cli.proof.routerbench import routerbench_rows  # one reader, shared with the proof

csv.field_size_limit(1 << 30)

ROUTERBENCH_SETS = {"arc_challenge": "arc-challenge", "mbpp": "mbpp", "winograde": "winogrande"}
ARENA_MODELS = ("claude-3-haiku-20240307", "gemini-2.0-flash-001")


def data_dir() -> Path:
    return Path(os.environ.get("THRIFTY_DATA_DIR", "../shared/data")) / "routing"


def routerarena_rows(folder: Path) -> list[dict]:
    by_id: dict[str, dict] = {}
    for model in ARENA_MODELS:
        with (folder / f"{model}.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                rec = json.loads(line)
                ev = rec.get("evaluation_result") or {}
                if not rec.get("success") or ev.get("score") is None:
                    continue
                row = by_id.setdefault(rec["global_index"], {
                    "id": rec["global_index"], "prompt": rec["question"], "outcomes": {},
                    "cohort": rec["global_index"].split("_", 1)[0]})
                row["outcomes"][model] = {"score": float(ev["score"]), "cost_usd": ev.get("inference_cost"),
                                          "answer": rec.get("generated_answer") or ""}
    return [r for r in by_id.values() if len(r["outcomes"]) == len(ARENA_MODELS)]


def in_train(key: str, fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return h / 2 ** 64 < fraction


def observed_prices(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean USD per estimated prompt token (chars / 4) per model, as a flat price per million tokens."""
    spend: dict[str, float] = {}
    tokens: dict[str, float] = {}
    for r in rows:
        t = max(len(r["prompt"]) / 4, 1)
        for m, o in r["outcomes"].items():
            if o.get("cost_usd") is not None:
                spend[m] = spend.get(m, 0.0) + o["cost_usd"]
                tokens[m] = tokens.get(m, 0.0) + t
    return {m: {"input": round(spend[m] / tokens[m] * 1e6, 4), "output": round(spend[m] / tokens[m] * 1e6, 4)}
            for m in spend}


ROUTERBENCH_CONFIG = """\
# Hand-written starting point for the RouterBench subset (11 models; three tiers as in the
# playbook). `thrifty eval router --calibrate TRAIN` fits rules over the same tiers.
deployments:
  mixtral-8x7b: {{provider: together, model: mistralai/mixtral-8x7b-chat}}
  yi-34b: {{provider: together, model: zero-one-ai/Yi-34B-Chat}}
  gpt-3.5-turbo: {{provider: openai, model: gpt-3.5-turbo-1106}}
  gpt-4: {{provider: openai, model: gpt-4-1106-preview}}
prices:   # observed mean USD per estimated prompt token; ranks deployments within a tier
{prices}
routing:
  tiers:
    fast: [mixtral-8x7b, yi-34b]     # mixtral serves (cheaper); yi is its consistency peer
    standard: [gpt-3.5-turbo]
    heavy: [gpt-4]
  default_tier: standard
  rules:
    - {{name: agents, when: {{tools: true}}, tier: heavy}}
    - {{name: reasoning, when: {{request_type: reasoning}}, tier: heavy}}
    - {{name: code, when: {{request_type: code}}, tier: standard}}
    - name: trivial
      when: {{request_type: [classification, extraction, rewrite]}}
      tier: fast
      checks: [empty, refusal, truncated, consistency]
      escalate_to: heavy
  escalation:
    checks: [empty, refusal, truncated]
    max_steps: 1
"""

ROUTERARENA_CONFIG = """\
# Hand-written starting point for RouterArena's two cached models. gemini-2.0-flash is the
# cheaper one, so it is the fast tier; claude-3-haiku is the tier an escalation goes to.
deployments:
  gemini-flash: {{provider: google, model: gemini-2.0-flash-001}}
  claude-haiku: {{provider: anthropic, model: claude-3-haiku-20240307}}
prices:
{prices}
routing:
  tiers:
    fast: [gemini-flash]
    standard: [claude-haiku]
  default_tier: fast
  rules:
    - {{name: agents, when: {{tools: true}}, tier: standard}}
  escalation:
    checks: [empty, refusal, truncated]
    max_steps: 1
"""


def _prices_yaml(prices: dict[str, dict[str, float]], models: list[str]) -> str:
    return "\n".join(f"  {m}: {{input: {prices[m]['input']}, output: {prices[m]['output']}}}"
                     for m in models if m in prices)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (created; keep it out of the repository)")
    ap.add_argument("--data-dir", default=None, help="the shared routing folder (default $THRIFTY_DATA_DIR/routing)")
    ap.add_argument("--arena-train", type=float, default=0.6, help="share of RouterArena prompts in train")
    args = ap.parse_args(argv)
    src = Path(args.data_dir) if args.data_dir else data_dir()
    if not src.is_dir():
        print(f"routing data not found at {src}: set THRIFTY_DATA_DIR", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    bench = src / "routerbench_subset"
    all_rb = []
    for split in ("train", "test"):
        rows = []
        for stem, cohort in ROUTERBENCH_SETS.items():
            rows += routerbench_rows(bench / f"{stem}_{split}.csv", cohort)
        write_jsonl(out / f"routerbench_{split}.jsonl", rows)
        counts[f"routerbench_{split}"] = len(rows)
        all_rb += rows
    arena = routerarena_rows(src / "routerarena")
    train = [r for r in arena if in_train(r["id"], args.arena_train)]
    test = [r for r in arena if not in_train(r["id"], args.arena_train)]
    write_jsonl(out / "routerarena_train.jsonl", train)
    write_jsonl(out / "routerarena_test.jsonl", test)
    counts.update(routerarena_train=len(train), routerarena_test=len(test))
    rb_prices = observed_prices([r for r in all_rb])
    (out / "routerbench.yaml").write_text(ROUTERBENCH_CONFIG.format(prices=_prices_yaml(
        rb_prices, ["mistralai/mixtral-8x7b-chat", "zero-one-ai/Yi-34B-Chat", "gpt-3.5-turbo-1106",
                    "gpt-4-1106-preview"])))
    (out / "routerarena.yaml").write_text(ROUTERARENA_CONFIG.format(prices=_prices_yaml(
        observed_prices(arena), list(ARENA_MODELS))))
    for name, n in counts.items():
        print(f"{name:20s} {n} rows")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
