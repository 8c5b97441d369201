"""Escalation: check a lower tier's answer and re-run the request one tier up when it fails.

`ModelRoute` (core/upstream.py) hands a call whose routing `Decision` has checks to `Escalation.run`,
which runs the rest of the flow (`call_next`: prompt caching, budgets, the provider), runs the
decision's checks on the answer (`routing.checks.first_failure`) and, on the first failure, asks
the router for the decision one tier up (`Router.escalate`), moves the call there (the same code
path as the first decision: new route, upstream body rebuilt from the client's request) and runs
`call_next` again. At most `escalation.max_steps` climbs (default 1): the escalated decision
carries no checks once the steps are spent, so its answer is served as it is.

The checks: `empty`, `too_short`, `truncated` (finish reason `length` / `max_tokens`), `refusal`
(also "not sure" answers), `schema` (the structured output validates against the schema the
request asked for), `confidence` (the request's object schema is extended with a `confidence`
number, which is taken out of the answer before the client sees it; whole answers only: a
streamed answer cannot be edited after the fact, so there it is not asked for and the check is
skipped) and `consistency` (a second sample, from a peer deployment of the same tier or the same
one per `escalation.consistency.sample_from`, must agree; whole answers only).

The ledger. Rows reconcile one-to-one with upstream calls: the client's row (written by the API)
describes the answer the client got, i.e. the final attempt; every discarded attempt gets its own
row, recorded here, with request id `<id>.<n>` (n = 1, 2, ...), the same tenant / feature / user /
task / call site / request hash, the deployment and tier it ran on, its own tokens and cost,
status 200 and `error_type = "escalated: <reason>"`. A consistency sample is recorded the same way
with `error_type = "consistency sample"`. Summing `cost_usd` over all rows therefore still equals
the provider's bill, and the escalation reason is queryable per request.

Streams. A check needs the whole answer, so for a streamed call nothing can be checked before
the client's first byte unless the lower tier's stream is buffered. This module buffers it only
when the decision has checks: all events of the lower-tier stream are collected (nothing is sent
to the client meanwhile), assembled into a whole answer (`thrifty.cache.stage.assemble`) and
checked; on a pass the buffered events are replayed to the client, on a failure the discarded
attempt is recorded and the higher tier is streamed live (unbuffered, unless it has checks of its
own). The trade-off: for checked streams the time to first byte becomes the lower tier's whole
generation time (plus, on escalation, the higher tier's time to first token); streaming's early
bytes are given up in exchange for never showing the client an answer that is then replaced.
Requests whose decision has no checks stream exactly as before. A lower-tier stream that breaks
off raises before anything was sent, so the client gets a clean error.

Counters (`EscalationStats`, `snapshot()`): calls checked, escalations, escalations by check and by
the tier escalated from, and failed checks that could not climb (no tier above, caps).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, AsyncIterator

from thrifty.core.pipeline import Answer, Call, Next
from thrifty.ledger import LedgerRow
from thrifty.routing.checks import (CheckSettings, answer_view, first_failure, request_confidence,
                                    requested_schema, strip_confidence_from_answer)

if TYPE_CHECKING:
    from thrifty.core.gateway import Gateway
    from thrifty.routing.features import RequestFeatures
    from thrifty.routing.router import Decision

_MISSING = object()


@dataclass
class EscalationStats:
    """Counters of checked calls and escalations (the escalation rate per tier is a metric)."""

    checked: int = 0
    escalated: int = 0
    stuck: int = 0  # a check failed but there was no tier to climb to
    by_check: dict[str, int] = field(default_factory=dict)
    by_tier: dict[str, dict[str, int]] = field(default_factory=dict)  # tier -> {checked, escalated}
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def saw(self, tier: str | None) -> None:
        with self._lock:
            self.checked += 1
            t = self.by_tier.setdefault(tier or "-", {"checked": 0, "escalated": 0})
            t["checked"] += 1

    def failed(self, tier: str | None, check: str, climbed: bool) -> None:
        with self._lock:
            if not climbed:
                self.stuck += 1
                return
            self.escalated += 1
            self.by_check[check] = self.by_check.get(check, 0) + 1
            self.by_tier.setdefault(tier or "-", {"checked": 0, "escalated": 0})["escalated"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_tier = {t: {**c, "rate": (c["escalated"] / c["checked"]) if c["checked"] else 0.0}
                       for t, c in self.by_tier.items()}
            return {"checked": self.checked, "escalated": self.escalated, "stuck": self.stuck,
                    "rate": (self.escalated / self.checked) if self.checked else 0.0,
                    "by_check": dict(self.by_check), "by_tier": by_tier}


def failed_check(view: Any, checks: tuple[str, ...], settings: CheckSettings, *, schema: Any = None,
                 confidence: Any = _MISSING, second: str | None = None,
                 choices: int = 0) -> tuple[str, str] | None:
    """(check name, reason) of the first failing check, or None when all pass."""
    for name in checks:
        kw: dict[str, Any] = {"schema": schema, "second": second, "choices": choices}
        if confidence is not _MISSING:
            kw["confidence"] = confidence
        reason = first_failure(view, (name,), settings, **kw)
        if reason is not None:
            return name, reason
    return None


class Escalation:
    """Runs a routed call's checks and escalates it; one per gateway, shared by all calls."""

    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway
        router = gateway.router
        esc = router.config.escalation if router is not None else None
        self.settings = CheckSettings.from_config(esc) if esc is not None else CheckSettings()
        self.confidence_field = esc.confidence_field if esc is not None else "confidence"
        self.sample_from = esc.consistency.sample_from if esc is not None else "peer"
        self.stats = EscalationStats()

    def snapshot(self) -> dict[str, Any]:
        return self.stats.snapshot()

    # --- moving a call ---------------------------------------------------------------------

    def place(self, call: Call, decision: "Decision") -> bool:
        """Point `call` at the decision's deployment with a fresh upstream body.

        True when the body asks for self-reported confidence (then the answer must be stripped).
        """
        gw, row = self.gateway, call.row
        route = gw.route(decision.deployment)
        call.route = route
        row.provider, row.served_model, row.tier = route.provider.name, route.model, decision.tier or route.tier
        body, asked = call.body, False
        if "confidence" in decision.checks and not call.stream:
            extended = request_confidence(call.body, call.surface.name, self.confidence_field)
            if extended is not None:
                body, asked = extended, True
        call.upstream_body = call.surface.upstream_body(body, route.provider.wire, route.model,
                                                        gw.config.defaults.anthropic_max_tokens)
        return asked

    # --- the loop ----------------------------------------------------------------------------

    async def run(self, call: Call, call_next: Next, decision: "Decision", features: "RequestFeatures",
                  asked_confidence: bool = False) -> Answer:
        router = self.gateway.router
        assert router is not None
        seq = [0]  # extra ledger rows so far: their request ids are <id>.1, <id>.2, ...
        while True:
            started = time.time()
            answer = await call_next(call)
            if not decision.checks:
                return answer
            events: list[dict[str, Any]] | None = None
            if answer.events is not None:
                events = [event async for event in answer.events]
                body = _assemble(call.surface.name, events)
            else:
                body = answer.body
            confidence: Any = _MISSING
            if asked_confidence and body is not None:
                body, confidence = strip_confidence_from_answer(body, call.surface.name, self.confidence_field)
                answer.body = body
            self.stats.saw(decision.tier)
            failure = None
            if body is not None:
                failure = await self._check(call, call_next, decision, body, confidence, seq)
            if failure is None:
                return _replay(answer, events)
            check, reason = failure
            higher = router.escalate(decision, features, reason)
            self.stats.failed(decision.tier, check, higher is not None)
            if higher is None:
                return _replay(answer, events)
            self.record_discarded(call, answer, started, seq, f"escalated: {reason}")
            decision = higher
            asked_confidence = self.place(call, decision)

    async def _check(self, call: Call, call_next: Next, decision: "Decision", body: dict[str, Any],
                     confidence: Any, seq: list[int]) -> tuple[str, str] | None:
        protocol = call.surface.name
        view = answer_view(body, protocol)
        schema = requested_schema(call.body, protocol) if "schema" in decision.checks else None
        checks = tuple(c for c in decision.checks if c != "consistency")
        failure = failed_check(view, checks, self.settings, schema=schema, confidence=confidence)
        if failure is not None or "consistency" not in decision.checks or call.stream:
            return failure
        second = await self._second_sample(call, call_next, decision, seq)
        if second is None:
            return None
        return failed_check(view, ("consistency",), self.settings, second=second,
                            choices=_choices(call.body))

    async def _second_sample(self, call: Call, call_next: Next, decision: "Decision",
                             seq: list[int]) -> str | None:
        """The text of a second sample of the same tier; recorded as its own ledger row."""
        router = self.gateway.router
        assert router is not None
        name = router.peer(decision) if self.sample_from == "peer" else None
        name = name or decision.deployment
        keep = (call.route, call.upstream_body, call.row.provider, call.row.served_model, call.row.tier,
                call.row.retries, dict(call.saved))
        sample_decision = _with_deployment(decision, name)
        started = time.time()
        try:
            call.row.retries = 0
            asked = self.place(call, sample_decision)
            sample = await call_next(call)
            if asked and sample.body is not None:
                sample.body, _ = strip_confidence_from_answer(sample.body, call.surface.name, self.confidence_field)
        except Exception:  # noqa: BLE001 - no second sample: the check is skipped
            sample = None
        self_row = sample is not None and sample.body is not None
        if self_row:
            self.record_discarded(call, sample, started, seq, "consistency sample")  # type: ignore[arg-type]
        (call.route, call.upstream_body, call.row.provider, call.row.served_model, call.row.tier,
         call.row.retries, saved) = keep
        call.saved.clear()
        call.saved.update(saved)
        if not self_row:
            return None
        return answer_view(sample.body, call.surface.name).text  # type: ignore[union-attr, arg-type]

    # --- the ledger --------------------------------------------------------------------------

    def record_discarded(self, call: Call, answer: Answer, started: float, seq: list[int], why: str) -> None:
        """One ledger row for an upstream call whose answer the client does not get."""
        row = call.row
        seq[0] += 1
        usage = answer.usage
        saved = call.saved.pop("prompt_cache", None)
        extra = LedgerRow(
            request_id=f"{row.request_id}.{seq[0]}", started_at=started, finished_at=time.time(),
            tenant=row.tenant, feature=row.feature, user=row.user, task=row.task, call_site=row.call_site,
            surface=row.surface, provider=row.provider, requested_model=row.requested_model,
            served_model=row.served_model, tier=row.tier, status=200, error_type=why,
            prompt_tokens=usage.input_tokens, cached_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens, cache_write_1h_tokens=usage.cache_write_1h_tokens,
            completion_tokens=usage.output_tokens, reasoning_tokens=usage.reasoning_tokens,
            cost_usd=answer.cost, stream=row.stream, retries=row.retries, cache="miss",
            request_hash=row.request_hash, saved_prompt_cache_usd=saved,
            baseline_cost_usd=None if answer.cost is None else answer.cost + (saved or Decimal(0)))
        extra.latency_ms = (extra.finished_at - started) * 1000.0
        row.retries = 0  # the next attempt counts its own
        self.gateway.ledger.record(extra)


def _assemble(surface: str, events: list[dict[str, Any]]) -> dict[str, Any] | None:
    from thrifty.cache.replay import IncompleteStream
    from thrifty.cache.stage import assemble

    try:
        return assemble(surface, events)
    except IncompleteStream:
        return None


def _replay(answer: Answer, events: list[dict[str, Any]] | None) -> Answer:
    if events is not None:
        answer.events = _iterate(events)
    return answer


async def _iterate(events: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for event in events:
        yield event


def _with_deployment(decision: "Decision", deployment: str) -> "Decision":
    from dataclasses import replace

    return replace(decision, deployment=deployment)


def _choices(body: dict[str, Any]) -> int:
    """How many lettered options the last user message offers (for the consistency check)."""
    import re

    messages = body.get("messages") or ()
    text = ""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            text = content if isinstance(content, str) else " ".join(
                p.get("text", "") for p in content or () if isinstance(p, dict))
            break
    letters = set(re.findall(r"(?m)^\s*\(?([A-J])[).:]\s", text))
    return len(letters)
