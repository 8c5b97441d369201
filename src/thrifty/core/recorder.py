"""The one writer of ledger rows: a call's facts from the HTTP side, its effects from the stages.

Stages never touch the ledger. They report on the call (route, tier, retries, lever effects,
discarded attempts) and the answer (usage, cost, cache outcome); once the answer is final the
HTTP exchange hands both here with what only it knows (status, latency, time to first byte).
Every call with a valid key leaves exactly one row, and every discarded upstream attempt one more
(`<id>.<n>`), so the rows add up to the provider's bill.

Durability: `begin()` journals that a call started as soon as its tenant is known, and `record()`
journals its rows before the last bytes of its answer go out (api/chat.py), so a
call whose answer reached the client is on disk, and one cut short by a crash is recovered as
interrupted (ledger/journal.py), its budget hold settled at the worst case by
`settle_interrupted()` when the next process starts.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, Sequence

from thrifty.contract import Answer, Attempt, Call, Usage
from thrifty.contract.exchange import Exchange
from thrifty.ledger import Ledger, LedgerRow
from thrifty.pricing import Accountant, Accounting

if TYPE_CHECKING:
    from thrifty.budgets import Enforcer

log = logging.getLogger("thrifty.ledger")


class Recorder:
    def __init__(self, ledger: Ledger, accountant: Accountant,
                 observers: Sequence[Callable[[LedgerRow, float | None], None]] = ()) -> None:
        self.ledger = ledger
        self.accountant = accountant
        # Called with each row once it is queued for the ledger (thrifty.observe: metrics,
        # spans, alerts), and the seconds its call spent on providers (Call.upstream_s; None for
        # a discarded attempt's row and a call that reached none), which the ledger does not
        # keep. On the request path: each must be quick, and never raise.
        self.observers = tuple(observers)

    def begin(self, ex: Exchange) -> None:
        """Journal that the call started: a crash before its row leaves it recorded as interrupted."""
        self.ledger.begin(ex.request_id, {"t": ex.started_at, "tenant": ex.tenant, "surface": ex.surface,
                                          "feature": ex.feature, "user": ex.user, "task": ex.task,
                                          "call_site": ex.call_site})

    def record(self, ex: Exchange, call: Call | None, answer: Answer | None) -> None:
        """Write the call's row (and its discarded attempts'). Never raises for a missing price."""
        row = self._row(ex)
        rows = []
        if call is not None:
            route = call.route
            row.retries = call.retries
            row.tier = call.tier if call.tier is not None else (route.tier if route is not None else None)
            if route is not None:
                row.provider, row.served_model = route.provider.name, route.model
            for n, attempt in enumerate(call.discarded, 1):
                rows.append(self._attempt_row(ex, attempt, n, call))
        if answer is not None and ex.status == 200:
            if answer.cache in ("exact", "semantic"):
                row.provider, row.served_model = None, answer.served_model
                row.tier = answer.tier
            row.cache = answer.cache
            _usage_into(row, answer.usage)
            row.cost_usd = answer.cost
            if call is not None:
                self._account(row, self.accountant.of_call(call, answer))  # worked out once per answer
        elif answer is not None:
            row.cache = answer.cache
        if ex.not_billed and ex.status != 200:
            row.cost_usd = Decimal(0)
        rows.append(row)
        for r in rows:  # nearly always one row: one journal write per call
            self.ledger.record(r)
        upstream_s = call.upstream_s if call is not None and call.upstream_s else None
        for observe in self.observers:
            for r in rows:
                try:
                    observe(r, upstream_s if r is row else None)
                except Exception:  # a bug in an observer must not cost the call its answer
                    log.exception("observer %r failed on row %s", observe, r.request_id)

    @staticmethod
    def _row(ex: Exchange) -> LedgerRow:
        return LedgerRow(request_id=ex.request_id, started_at=ex.started_at, finished_at=ex.finished_at,
                         tenant=ex.tenant, feature=ex.feature, user=ex.user, task=ex.task,
                         call_site=ex.call_site, surface=ex.surface, provider=None,
                         requested_model=ex.requested_model, served_model=None, tier=None,
                         status=ex.status, error_type=ex.error_type, latency_ms=ex.latency_ms,
                         ttft_ms=ex.ttft_ms, stream=ex.stream, request_hash=ex.request_hash,
                         request_body=ex.request_body, response_body=ex.response_body, lane=ex.lane)

    @staticmethod
    def _account(row: LedgerRow, a: Accounting) -> None:
        row.baseline_cost_usd = a.baseline_usd
        row.baseline_model = a.baseline_model
        row.provider_discount_usd = a.provider_discount_usd
        row.levers = a.levers

    def _attempt_row(self, ex: Exchange, attempt: Attempt, n: int, call: Call) -> LedgerRow:
        row = self._row(ex)
        row.request_id = f"{ex.request_id}.{n}"
        row.started_at, row.finished_at = attempt.started_at, attempt.finished_at
        row.latency_ms = (attempt.finished_at - attempt.started_at) * 1000.0
        row.ttft_ms = None
        row.status, row.error_type = attempt.status, attempt.why
        row.request_body = row.response_body = None
        route = attempt.deployment
        row.provider, row.served_model, row.tier = route.provider.name, route.model, attempt.tier
        row.retries = attempt.retries
        _usage_into(row, attempt.usage)
        row.cost_usd = attempt.cost
        if attempt.status == 200:  # a failed attempt's cost is unknown: no accounting claimed
            self._account(row, self.accountant.discarded(attempt.cost))
        return row


def _usage_into(row: LedgerRow, u: Usage) -> None:
    row.prompt_tokens = u.input_tokens
    row.cached_tokens = u.cache_read_tokens
    row.cache_write_tokens = u.cache_write_tokens
    row.cache_write_1h_tokens = u.cache_write_1h_tokens
    row.completion_tokens = u.output_tokens
    row.reasoning_tokens = u.reasoning_tokens


def saved_usd(a: Accounting | None, actual: Decimal | None) -> Decimal | None:
    """What the levers saved in all (baseline - actual), None when either is unknown."""
    if a is None or a.baseline_usd is None or actual is None:
        return None
    return a.baseline_usd - actual


async def settle_interrupted(ledger: Ledger, enforcer: Enforcer) -> int:
    """Settle, at their worst case, the budget holds of calls that a dead process left in the
    ledger's journal (see Enforcer.settle_interrupted); return how many counted. Called once the
    ledger has started. A hold the store cannot settle now stays journaled for the next start."""
    holds = ledger.take_interrupted_holds()
    settled, counted = [], 0
    for reservation_id, held in holds:
        try:
            ok = await enforcer.settle_interrupted(held)
        except Exception:  # a journal line we cannot read back: say so, do not stop the start
            log.exception("budgets: interrupted reservation %s could not be settled", reservation_id)
            ok = False
        if ok is None:
            continue
        settled.append(reservation_id)
        counted += ok
    ledger.holds_settled(settled)
    if holds:
        log.warning("budgets: %d budget hold(s) of interrupted calls settled at their worst case "
                    "(%d still held by the store, the others were settled already or expired)",
                    len(settled), counted)
    return counted
