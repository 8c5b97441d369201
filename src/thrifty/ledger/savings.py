"""The savings query: baseline, actual and each lever's part, summed exactly, per group.

Only rows of the current accounting (schema.ACCOUNTING and later) are summed: the rows written
before it used another baseline (the provider's own cache discounts counted as saved), and adding
the two would mix definitions. They are counted apart, as `legacy_calls`, so a report can say
that part of the window is not in its sums.

A row is summed when both its cost and its baseline are known (`priced_calls`); the others are
counted in `calls` only. A lever's money is summed over the same priced rows, the exact part and
the estimated part apart, so for rows whose levers add up, the levers' parts add up to
`saved_usd`; its `calls` counts every row it acted on, priced or not.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from thrifty.contract import LEVERS
from thrifty.ledger.driver import Driver
from thrifty.ledger.queries import RowFilter, compile_where, group_column
from thrifty.ledger.schema import ACCOUNTING, EXACT, lever_order

_CURRENT = f"accounting >= {ACCOUNTING:d}"
_LEGACY = f"(accounting IS NULL OR accounting < {ACCOUNTING:d})"
_PRICED = f"{_CURRENT} AND cost_usd IS NOT NULL AND baseline_cost_usd IS NOT NULL"

_SELECT_CALLS = ("SELECT {key}, "
                 f"SUM(CASE WHEN {_CURRENT} THEN 1 ELSE 0 END), "
                 f"SUM(CASE WHEN {_PRICED} THEN 1 ELSE 0 END), "
                 "{baseline}, {actual}, {discount}, "
                 f"SUM(CASE WHEN {_LEGACY} THEN 1 ELSE 0 END) "
                 "FROM calls{cond}{group}")
# The filter applies to `calls` inside the subquery, so its column names stay unqualified.
_SELECT_LEVERS = ("SELECT {key}, l.lever, COUNT(*), {exact}, {estimated} "
                  "FROM (SELECT * FROM calls{cond}) AS c JOIN call_levers AS l ON l.request_id = c.request_id "
                  f"WHERE c.{_CURRENT} GROUP BY {{group}}l.lever")


def select_savings(driver: Driver, where: RowFilter | None, group_by: str | None) -> list[dict[str, Any]]:
    """Per value of `group_by` (GROUP_COLUMNS; one entry with key None when None), most saved
    first, a dict of: key, calls, priced_calls, baseline_usd, actual_usd, saved_usd (baseline -
    actual), provider_discount_usd, levers ({lever: {"saved_usd", "estimated_usd", "calls"}}
    for every lever of LEVERS, in their order, and any other name found after them) and
    legacy_calls. Money is Decimal, summed exactly.
    """
    col = None if group_by is None else group_column(group_by)
    cond, params = compile_where(where, driver.dialect)
    money = driver.dialect.money_sum

    def priced(value: str, extra: str = "") -> str:
        return money.format(f"CASE WHEN {_PRICED}{extra} THEN {value} END")

    calls_sql = _SELECT_CALLS.format(key=col or "NULL", cond=cond, group=f" GROUP BY {col}" if col else "",
                                     baseline=priced("baseline_cost_usd"), actual=priced("cost_usd"),
                                     discount=priced("provider_discount_usd"))
    levers_sql = _SELECT_LEVERS.format(key=f"c.{col}" if col else "NULL", cond=cond,
                                       group=f"c.{col}, " if col else "",
                                       exact=priced("l.saved_usd", " AND l.estimated = 0"),
                                       estimated=priced("l.saved_usd", " AND l.estimated <> 0"))
    with driver.reader() as conn:  # one snapshot: the two statements see the same rows
        found = conn.execute(calls_sql, params).fetchall()
        acted = conn.execute(levers_sql, params).fetchall()
    groups = {key: _group(key, *rest) for key, *rest in found}
    for key, lever, n, exact, estimated in acted:
        groups[key]["levers"][lever] = {"saved_usd": _money(exact), "estimated_usd": _money(estimated), "calls": n}
    out = list(groups.values())
    for g in out:
        g["levers"] = dict(sorted(g["levers"].items(), key=lambda kv: lever_order(kv[0])))
    out.sort(key=lambda g: (-g["saved_usd"], -g["calls"], g["key"] is None, g["key"] or ""))
    return out


def _group(key: Any, calls: int | None, priced_calls: int | None, baseline: Any, actual: Any,
           discount: Any, legacy: int | None) -> dict[str, Any]:
    baseline, actual = _money(baseline), _money(actual)
    return {"key": key, "calls": calls or 0, "priced_calls": priced_calls or 0,
            "baseline_usd": baseline, "actual_usd": actual, "saved_usd": EXACT.subtract(baseline, actual),
            "provider_discount_usd": _money(discount),
            "levers": {lever: {"saved_usd": Decimal(0), "estimated_usd": Decimal(0), "calls": 0} for lever in LEVERS},
            "legacy_calls": legacy or 0}


def _money(value: Any) -> Decimal:
    """A sum as Decimal: exact text (SQLite) or NUMERIC (PostgreSQL); None over no rows at all."""
    return Decimal(0) if value is None else Decimal(value)
