"""`thrifty eval typing --data FILE`: how the router's request typing does on labelled prompts.

Prompts are JSON Lines `{"prompt": str, "type": str, "source": str?}` with `type` one of the
router's request types (`thrifty.routing.features.REQUEST_TYPES`). Each prompt is typed exactly as
the gateway would type a single-turn chat request with that text (`features_from_prompt`), and the
report gives accuracy, per-type precision / recall, the confusion matrix (rows: labelled type,
columns: typed as), accuracy per source, and the count of code prompts typed as a cheap-tier type
(classification, extraction, rewrite): the mistake that sends code to the fast tier.
`bench/typing_data.py` writes such files from the shared data sets.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from thrifty.cli.eval_cache import eval_subparsers
from thrifty.errors import ThriftyError

# Types that rules commonly send to the fast tier; code typed as one of these is the costly mistake.
TRIVIAL_TYPES = ("classification", "extraction", "rewrite")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = eval_subparsers(sub).add_parser(
        "typing", help="request typing: per-type precision/recall and a confusion matrix on labelled prompts",
        description="Type labelled prompts as the router does and report accuracy, per-type precision "
                    "and recall, the confusion matrix and accuracy per source.")
    p.add_argument("--data", required=True, metavar="FILE",
                   help='JSON Lines of {"prompt": str, "type": str, "source": str (optional)}')
    p.add_argument("--errors", type=int, default=0, metavar="N",
                   help="also list up to N mistyped prompts (first 100 characters each)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def read_labelled(path: str) -> list[dict]:
    from thrifty.routing.features import REQUEST_TYPES

    from thrifty.jsonutil import jsonl_lines

    rows = []
    for where, row in jsonl_lines(path, "prompts"):
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise ThriftyError(f'{where}: expected {{"prompt": str, "type": str}}')
        if row.get("type") not in REQUEST_TYPES:
            raise ThriftyError(f"{where}: type must be one of {', '.join(REQUEST_TYPES)}, "
                               f"got {row.get('type')!r}")
        rows.append({"prompt": row["prompt"], "type": row["type"], "source": str(row.get("source") or "-")})
    if not rows:
        raise ThriftyError(f"{path}: no prompts")
    return rows


def evaluate(rows: list[dict], *, errors: int = 0) -> dict:
    """Type every prompt and score against its label."""
    from thrifty.routing.features import REQUEST_TYPES, features_from_prompt

    matrix = {t: {u: 0 for u in REQUEST_TYPES} for t in REQUEST_TYPES}
    by_source: dict[str, list[int]] = {}
    mistakes = []
    for row in rows:
        typed = features_from_prompt(row["prompt"]).request_type
        matrix[row["type"]][typed] += 1
        right = by_source.setdefault(row["source"], [0, 0])
        right[0] += typed == row["type"]
        right[1] += 1
        if typed != row["type"] and len(mistakes) < errors:
            mistakes.append({"source": row["source"], "type": row["type"], "typed": typed,
                             "prompt": row["prompt"][:100]})
    per_type = {}
    for t in REQUEST_TYPES:
        support = sum(matrix[t].values())
        typed_as = sum(matrix[u][t] for u in REQUEST_TYPES)
        if support or typed_as:
            per_type[t] = {"support": support, "typed": typed_as,
                           "precision": matrix[t][t] / typed_as if typed_as else math.nan,
                           "recall": matrix[t][t] / support if support else math.nan}
    used = [t for t in REQUEST_TYPES if t in per_type]
    correct = sum(matrix[t][t] for t in REQUEST_TYPES)
    report = {
        "prompts": len(rows), "accuracy": correct / len(rows),
        "per_type": per_type,
        "confusion": {t: {u: matrix[t][u] for u in used} for t in used},
        "by_source": {s: {"prompts": n, "accuracy": ok / n} for s, (ok, n) in by_source.items()},
        "code_typed_trivial": sum(matrix["code"][t] for t in TRIVIAL_TYPES),
    }
    if errors:
        report["errors"] = mistakes
    return report


def run(args: argparse.Namespace) -> int:
    if args.errors < 0:
        raise ThriftyError(f"--errors must be 0 or more, got {args.errors}")
    report = evaluate(read_labelled(args.data), errors=args.errors)
    if args.json:
        print(json.dumps(_without_nan(report), indent=2))
    else:
        print(format_report(report))
    return 0


def _without_nan(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return value


def _pct(value: float) -> str:
    return "  n/a" if math.isnan(value) else f"{value * 100:5.1f}"


def format_report(r: dict) -> str:
    used = list(r["confusion"])
    short = {t: t[:6] for t in used}
    lines = [f"prompts   {r['prompts']}", f"accuracy  {r['accuracy'] * 100:.1f}%",
             f"code typed classification/extraction/rewrite: {r['code_typed_trivial']}", "",
             f"{'type':<15}{'support':>8}{'typed':>7}{'prec%':>7}{'recall%':>9}"]
    for t, m in r["per_type"].items():
        lines.append(f"{t:<15}{m['support']:>8}{m['typed']:>7}{_pct(m['precision']):>7}{_pct(m['recall']):>9}")
    lines += ["", "confusion (rows: labelled, columns: typed as)",
              f"{'':<15}" + "".join(f"{short[u]:>7}" for u in used)]
    for t in used:
        lines.append(f"{t:<15}" + "".join(f"{r['confusion'][t][u]:>7}" for u in used))
    lines += ["", "accuracy by source"]
    for s, m in r["by_source"].items():
        lines.append(f"  {s:<28}{m['prompts']:>6}  {m['accuracy'] * 100:5.1f}%")
    for e in r.get("errors", []):
        lines.append(f"  [{e['source']}] {e['type']} -> {e['typed']}: {e['prompt']!r}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run it as: thrifty eval typing --data FILE")
