"""Cost alerts: thresholds on rolling windows of ledger rows, and on budget burn.

A creeping fast-tier average means a prompt grew or the router misclassifies; an escalation rate
above ~30% means the small model is too small; a budget burning faster than its window means it
runs out before the window ends. Each fires as a log line and, when the rule names one, a
webhook (delivered by thrifty.budgets.alerts.Alerter: background, with a timeout, never in the
request's way), at most once per window for each (rule, tier, feature).

The rolling windows live in this process: each replica watches its own calls. That is what an
average or a rate needs (a replica's share of the traffic is a fair sample); budget burn reads
the budget store, which all replicas share.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Sequence

from thrifty.budgets.alerts import Alerter
from thrifty.ledger import LedgerRow
from thrifty.observe.settings import AlertRule

if TYPE_CHECKING:
    from thrifty.budgets import Enforcer

log = logging.getLogger("thrifty.observe")

MAX_KEYS = 1000  # (rule, tier, feature) windows kept per rule; more are folded into "other"
OTHER = "other"


@dataclass(slots=True)
class _Window:
    """Calls of the last `span_s` seconds: (time, value) pairs and their running sums."""

    span_s: float
    items: deque[tuple[float, float]] = field(default_factory=deque)
    total: float = 0.0
    quiet_until: float = 0.0  # fired: silent until then (once per window)

    def add(self, t: float, value: float) -> None:
        self.items.append((t, value))
        self.total += value
        cutoff = t - self.span_s
        while self.items and self.items[0][0] <= cutoff:
            self.total -= self.items.popleft()[1]

    @property
    def mean(self) -> float:
        return self.total / len(self.items) if self.items else 0.0


class Alerts:
    """The Recorder observer for cost_per_request and escalation_rate rules, and the periodic
    check of budget_burn rules (`check_budgets`, run by `start()`)."""

    def __init__(self, rules: Sequence[AlertRule], *, alerter: Alerter | None = None,
                 enforcer: Enforcer | None = None, budget_check_s: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.rules = tuple(rules)
        self._row_rules = tuple(r for r in self.rules if r.kind != "budget_burn")
        self._burn_rules = tuple(r for r in self.rules if r.kind == "budget_burn")
        self.alerter = alerter if alerter is not None else Alerter()
        self.enforcer = enforcer
        self.budget_check_s = budget_check_s
        self.clock = clock
        self._windows: dict[tuple[str, str, str], _Window] = {}
        self._escalated_from: dict[str, str] = {}  # request id -> the tier its discarded attempt ran in
        self._burn_sent: dict[tuple[str, str], float] = {}  # (rule, budget) -> window start alerted
        self._task: asyncio.Task[None] | None = None
        self.fired: list[dict[str, Any]] = []  # the last alerts sent, newest last (the admin view, tests)

    # --- rows (request path) ---------------------------------------------------------------

    def observe(self, row: LedgerRow, upstream_s: float | None = None) -> None:
        if not self._row_rules:
            return
        base, dot, n = row.request_id.rpartition(".")
        if dot and n.isdigit():
            # A discarded attempt (`<id>.<n>`): it is not a call of its own. An escalated one
            # marks its call as started in its tier; the call's own row comes right after.
            if row.error_type is not None and row.error_type.startswith("escalated"):
                if len(self._escalated_from) >= MAX_KEYS:  # calls whose own row never came
                    self._escalated_from.clear()
                self._escalated_from.setdefault(base, row.tier or "")
            return
        first_tier = self._escalated_from.pop(row.request_id, None)
        escalated = first_tier is not None
        t = row.finished_at or self.clock()
        for rule in self._row_rules:
            if rule.kind == "cost_per_request":
                if row.status != 200 or row.cost_usd is None:
                    continue
                tier = row.tier or ""
                if not self._matches(rule, tier, row.feature):
                    continue
                w = self._window(rule, tier, row.feature)
                w.add(t, float(row.cost_usd))
                assert rule.above_usd is not None
                if len(w.items) >= rule.min_calls and w.mean > float(rule.above_usd):
                    self._fire(rule, w, t, tier, row.feature, value=w.mean,
                               text=f"average cost per request ${w.mean:.6f} over {len(w.items)} calls "
                                    f"is above ${rule.above_usd}")
            elif rule.kind == "escalation_rate":
                tier = first_tier if escalated else (row.tier or "")
                if not self._matches(rule, tier, row.feature):
                    continue
                w = self._window(rule, tier, row.feature)
                w.add(t, 1.0 if escalated else 0.0)
                assert rule.above is not None
                if len(w.items) >= rule.min_calls and w.mean > rule.above:
                    self._fire(rule, w, t, tier, row.feature, value=w.mean,
                               text=f"{w.mean:.0%} of {len(w.items)} calls first answered in tier "
                                    f"{tier or '-'} were escalated (above {rule.above:.0%})")

    @staticmethod
    def _matches(rule: AlertRule, tier: str, feature: str | None) -> bool:
        return (rule.tier is None or rule.tier == tier) and (rule.feature is None or rule.feature == feature)

    def _window(self, rule: AlertRule, tier: str, feature: str | None) -> _Window:
        key = (rule.name, tier, feature or "")
        w = self._windows.get(key)
        if w is None:
            if len(self._windows) >= MAX_KEYS * max(1, len(self._row_rules)):
                key = (rule.name, OTHER, OTHER)
                w = self._windows.get(key)
            if w is None:
                w = self._windows[key] = _Window(rule.window_s)
        return w

    def _fire(self, rule: AlertRule, w: _Window, now: float, tier: str, feature: str | None, *,
              value: float, text: str) -> None:
        if now < w.quiet_until:
            return
        w.quiet_until = now + rule.window_s
        where = ", ".join(f"{k} {v}" for k, v in (("tier", tier), ("feature", feature)) if v)
        self._send({"event": rule.kind, "rule": rule.name, "tier": tier or None, "feature": feature,
                    "value": value, "calls": len(w.items), "window_s": rule.window_s, "at": now,
                    "text": f"[{rule.name}] {where + ': ' if where else ''}{text}"}, rule.webhook)

    def _send(self, payload: dict[str, Any], webhook: str | None) -> None:
        self.fired.append(payload)
        del self.fired[:-100]
        try:
            self.alerter.spawn(self.alerter.deliver(payload, webhook))
        except RuntimeError:  # no event loop (a row recorded from a thread): the log line only
            log.warning("alert: %s", payload["text"])

    # --- budget burn (periodic) ------------------------------------------------------------

    def start(self) -> None:
        """Check budget_burn rules every `budget_check_s` in the background (needs a loop)."""
        if self._burn_rules and self.enforcer is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._burn_loop())

    async def _burn_loop(self) -> None:
        while True:
            await asyncio.sleep(self.budget_check_s)
            try:
                await self.check_budgets()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alerts: budget burn check failed")

    async def check_budgets(self, now: float | None = None) -> int:
        """Fire each budget_burn rule whose budget runs out before its window ends at the spend
        rate seen so far in the window; return how many fired."""
        if self.enforcer is None:
            return 0
        now = self.clock() if now is None else now
        fired = 0
        for rule in self._burn_rules:
            for b in self.enforcer.budgets:
                if rule.budget is not None and b.name != rule.budget:
                    continue
                value = None if b.scope == "global" else b.match
                if b.limit_usd is None or (b.scope != "global" and value is None):
                    continue  # a counter per tenant/feature: no one budget to project
                try:
                    found = await self.enforcer.spend(b.scope, value, tenant=b.tenant, now=now)
                except Exception as exc:
                    log.debug("alerts: budget %s not read: %s", b.name, exc)
                    continue
                for entry in found["budgets"]:
                    if entry["budget"] != b.name or entry["resets_at"] is None:
                        continue
                    start, end = entry["window_start"], entry["resets_at"]
                    runs_out = exhaustion_time(entry["spent_usd"], entry["limit_usd"], start, now)
                    if runs_out is None or runs_out >= end:
                        continue
                    if self._burn_sent.get((rule.name, b.name)) == start:
                        continue  # once per window
                    self._burn_sent[(rule.name, b.name)] = start
                    fired += 1
                    self._send({"event": "budget_burn", "rule": rule.name, "budget": b.name,
                                "spent_usd": str(entry["spent_usd"]), "limit_usd": str(entry["limit_usd"]),
                                "runs_out_at": runs_out, "resets_at": end, "at": now,
                                "text": f"[{rule.name}] budget {b.name}: ${entry['spent_usd']} of "
                                        f"${entry['limit_usd']} spent; at this rate it runs out "
                                        f"{_hours(end - runs_out)} before the window resets"}, rule.webhook)
        return fired

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.alerter.close()


def exhaustion_time(spent: Decimal, limit: Decimal, window_start: float, now: float) -> float | None:
    """When a budget runs out at the average rate of its window so far (None: nothing spent
    yet, or no time has passed); `now` if it is spent already."""
    if spent >= limit:
        return now
    elapsed = now - window_start
    if spent <= 0 or elapsed <= 0:
        return None
    rate = float(spent) / elapsed  # USD per second
    return now + float(limit - spent) / rate


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
