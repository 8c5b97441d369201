"""RouterBench's CSV files (the shared `routing/routerbench_subset`) as outcome rows.

One row per prompt: `{"id", "prompt", "outcomes": {model: {"score", "cost_usd", "answer"?}},
"cohort"}`, the `thrifty eval router` shape plus each model's recorded answer text. A model whose
score or cost is missing on a row is left out of that row's outcomes.
"""

from __future__ import annotations

import ast
import csv
from pathlib import Path

_NOT_MODELS = ("", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to")


def cell_text(cell: str) -> str:
    """RouterBench stores prompts and answers as the repr of a list of strings."""
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        return cell
    if isinstance(value, list):
        return "\n\n".join(str(v) for v in value)
    return str(value)


def routerbench_rows(path: Path, cohort: str) -> list[dict]:
    csv.field_size_limit(1 << 30)  # recorded answers run long
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        models = [c for c in reader.fieldnames or [] if c not in _NOT_MODELS and "|" not in c]
        rows = []
        for r in reader:
            outcomes = {}
            for m in models:
                score, cost = r.get(m, ""), r.get(f"{m}|total_cost", "")
                if score == "" or cost == "":
                    continue
                out = {"score": float(score), "cost_usd": float(cost)}
                answer = r.get(f"{m}|model_response")
                if answer:
                    out["answer"] = cell_text(answer)
                outcomes[m] = out
            rows.append({"id": r["sample_id"], "prompt": cell_text(r["prompt"]), "outcomes": outcomes,
                         "cohort": cohort})
    return rows
