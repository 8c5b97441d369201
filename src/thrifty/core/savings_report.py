"""The savings waterfall as JSON and as text, from `Ledger.savings()` groups.

One rendering for every surface that shows savings (`GET /admin/savings`, `thrifty demo`), so
they always agree: baseline, then each lever's part (exact and estimated apart), then actual; the
provider's own discounts on their own line, never as a Thrifty saving.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from thrifty.contract import LEVERS

_ZERO = Decimal(0)


def usd(amount: Decimal) -> str:
    return format(amount, "f")


def group_json(g: dict[str, Any]) -> dict[str, Any]:
    """One savings group with money as exact strings, levers that did nothing left out."""
    levers = {}
    for name, part in g["levers"].items():
        if not part["calls"]:
            continue
        levers[name] = {"saved_usd": usd(part["saved_usd"] + part["estimated_usd"]),
                        "exact_usd": usd(part["saved_usd"]), "estimated_usd": usd(part["estimated_usd"]),
                        "calls": part["calls"]}
    exact = sum((p["saved_usd"] for p in g["levers"].values()), _ZERO)
    estimated = sum((p["estimated_usd"] for p in g["levers"].values()), _ZERO)
    return {"key": g["key"], "calls": g["calls"], "priced_calls": g["priced_calls"],
            "baseline_usd": usd(g["baseline_usd"]), "actual_usd": usd(g["actual_usd"]),
            "saved_usd": usd(g["saved_usd"]), "saved_exact_usd": usd(exact), "saved_estimated_usd": usd(estimated),
            "provider_discount_usd": usd(g["provider_discount_usd"]), "levers": levers,
            "legacy_calls": g["legacy_calls"]}


def lever_totals(g: dict[str, Any]) -> dict[str, str]:
    """Each lever that acted -> what it saved in all (exact + estimated), as exact strings."""
    return {name: usd(part["saved_usd"] + part["estimated_usd"])
            for name, part in g["levers"].items() if part["calls"]}


def waterfall(g: dict[str, Any]) -> list[str]:
    """The human waterfall of one group."""
    baseline, actual = g["baseline_usd"], g["actual_usd"]
    lines = [f"  {'without Thrifty (baseline)':<34} ${baseline:>12.6f}"]
    for name in (*LEVERS, *(n for n in g["levers"] if n not in LEVERS)):
        part = g["levers"].get(name)
        if not part or not part["calls"]:
            continue
        total = part["saved_usd"] + part["estimated_usd"]
        label = name.replace("_", " ")
        note = []
        if part["estimated_usd"]:
            note.append(f"${part['estimated_usd']:.6f} estimated")
        note.append(f"acted on {part['calls']} calls")
        sign = "-" if total >= 0 else "+"  # a lever that added cost (escalation) adds to the bill
        lines.append(f"  {sign} {label:<32} ${abs(total):>12.6f}  ({', '.join(note)})")
    share = f"  ({(baseline - actual) / baseline:.1%} saved)" if baseline > 0 else ""
    lines.append(f"  {'= actual':<34} ${actual:>12.6f}{share}")
    lines.append(f"  {'provider discounts you had anyway':<34} ${g['provider_discount_usd']:>12.6f}  "
                 "(the provider's own caching: in the baseline, not a Thrifty saving)")
    if g["priced_calls"] < g["calls"]:
        lines.append(f"  {g['calls'] - g['priced_calls']} calls without a price are counted but not summed")
    if g["legacy_calls"]:
        lines.append(f"  {g['legacy_calls']} older rows use the earlier baseline and are left out")
    return lines
