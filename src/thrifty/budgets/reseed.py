"""Budget counters rebuilt from the ledger, for a store that came back empty.

A Redis without persistence that restarts (or a FLUSHDB, or a new process with in-process
counters) forgets what was spent; the ledger does not. For each budget, the spend of its current
window (the budgets' own calendar windows, `windows.window_bounds`) is summed from the ledger
with its scope, `match` and `tenant` as filters, per scope value, and becomes that counter's spend.

What the ledger can give back:

- USD: the exact sum of the calls' costs (every row: answered calls and discarded attempts);
- tokens: input (cached or not) + output of the calls that reached a provider (cache hits never
  held budget, so they are left out);
- not the `key` scope: the ledger records the tenant, not the virtual key, so key budgets start
  again from zero (logged);
- calls whose row is not written yet: the ledger is flushed first, so this replica's queue is in;
  rows other replicas still hold in memory (a fraction of a second's worth) are not.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal
from typing import Any, Iterator, Sequence

from thrifty.budgets.backend import Seed, to_nano
from thrifty.budgets.limits import BudgetConfig
from thrifty.budgets.scopes import GLOBAL, key_part
from thrifty.budgets.windows import window_bounds
from thrifty.ledger import Ledger
from thrifty.ledger.queries import RowFilter

log = logging.getLogger("thrifty.budgets")

_TENANT_QUALIFIED = ("feature", "user", "task")
_REACHED_PROVIDER = ("miss", "bypass", "unavailable")  # cache outcomes of calls that held budget
_FLUSH_TIMEOUT_S = 10.0


def counter_key(b: BudgetConfig, tenant: str | None, value: str, window_start: int, lifetime: bool) -> str:
    """The counter id the enforcer uses for budget `b`, scope value `value` (Enforcer._apply)."""
    qual = key_part(value)
    if b.scope in _TENANT_QUALIFIED and b.per_tenant:
        qual = key_part(tenant or "") + "/" + qual
    return f"{b.name}:{qual}:{'L' if lifetime else window_start}"


class LedgerSpend:
    """Reads the spend of each budget's current window back from a ledger (blocking: run it in
    a worker thread)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def seeds(self, budgets: Sequence[BudgetConfig], now: float, ttl: float, idle: float) -> list[Seed]:
        self.ledger.flush(_FLUSH_TIMEOUT_S)  # this replica's queued rows count too
        out: list[Seed] = []
        for b in budgets:
            if b.scope == "key":
                log.warning("budgets: %r counts per virtual key, which the ledger does not record; "
                            "its counters start again from zero", b.name)
                continue
            start, end = window_bounds(b.window, now)
            where = RowFilter(since=None if end is None else float(start),
                              until=None if end is None else float(end), tenant=b.tenant)
            expire_at = now + idle if end is None else end + ttl
            for tenant, value, usd, tokens in self._spend(b, where):
                if usd or tokens:
                    out.append(Seed(counter_key(b, tenant, value, start, end is None),
                                    to_nano(usd), tokens, expire_at))
        return out

    def _spend(self, b: BudgetConfig, where: RowFilter) -> Iterator[tuple[str | None, str, Decimal, int]]:
        """(tenant, scope value, USD, tokens) per counter of budget `b` that has spend."""
        if b.scope == "global":
            usd, tokens = _sum(self._totals("tenant", where))
            yield None, GLOBAL, usd, tokens
            return
        if b.scope == "tenant":
            if b.match is not None:
                if b.tenant is not None and b.tenant != b.match:
                    return
                where = replace(where, tenant=b.match)
            for key, usd, tokens in _by_key(self._totals("tenant", where)):
                yield key, key, usd, tokens
            return
        if b.match is not None:
            where = replace(where, **{b.scope: b.match})
        if not b.per_tenant:
            for key, usd, tokens in _by_key(self._totals(b.scope, where)):
                yield None, key, usd, tokens
            return
        for tenant, _, _ in _by_key(self._totals("tenant", where)):
            for key, usd, tokens in _by_key(self._totals(b.scope, replace(where, tenant=tenant))):
                yield tenant, key, usd, tokens

    def _totals(self, group_by: str, where: RowFilter) -> list[tuple[Any, Decimal, int]]:
        """(group, USD of every row, tokens of the rows that reached a provider) per group."""
        groups: dict[Any, list] = {}
        for t in self.ledger.totals(group_by, where):
            groups.setdefault(t["key"], [Decimal(0), 0])[0] += t["cost_usd"]
        for cache in _REACHED_PROVIDER:
            for t in self.ledger.totals(group_by, replace(where, cache=cache)):
                groups.setdefault(t["key"], [Decimal(0), 0])[1] += (
                    (t["prompt_tokens"] or 0) + (t["cached_tokens"] or 0)
                    + (t["cache_write_tokens"] or 0) + (t["completion_tokens"] or 0))
        return [(k, usd, tokens) for k, (usd, tokens) in groups.items()]


def _by_key(groups: list[tuple[Any, Decimal, int]]) -> Iterator[tuple[str, Decimal, int]]:
    for key, usd, tokens in groups:
        if key:  # calls without a value for the scope are under no budget of it
            yield key, usd, tokens


def _sum(groups: list[tuple[Any, Decimal, int]]) -> tuple[Decimal, int]:
    return sum((g[1] for g in groups), Decimal(0)), sum(g[2] for g in groups)
