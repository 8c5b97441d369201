"""Escalation: check a lower tier's answer and re-run the request one tier up when it fails.

`ModelRoute` (routing/stage.py) hands a call whose routing `Decision` has checks to `Escalation.run`,
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

A learned cascade (a rule's policy with an answer stage, routing/learned.py) adds one more: the
decision carries the stage and its threshold (and the check name `policy`, so that it is checked
even when the rule has no other checks); after the rule's other checks pass, the peer's
sample is taken the same way (and recorded the same way), the stage scores the cheap answer with
it, and a score below the threshold escalates with check name `policy` and reason "policy: answer
score 0.31 < 0.55". The plain consistency comparison is then one of the stage's inputs, not a
check of its own. Streamed calls take no sample, so the stage does not run on them (the other
checks still do, on the buffered stream).

The ledger. Rows reconcile one-to-one with upstream calls: the client's row describes the answer
the client got, i.e. the final attempt; every discarded attempt is reported on the call
(`Call.discarded`) and the recorder gives it its own row, with request id `<id>.<n>` (n = 1, 2,
...), the same attribution and request hash, the deployment and tier it ran on, its own tokens and
cost, status 200 and `error_type = "escalated: <reason>"` (a consistency sample: `"consistency
sample"`). Summing `cost_usd` over all rows therefore still equals the provider's bill. In the
savings, a discarded attempt has baseline 0 and its cost is the `escalation` lever's negative
saving, so the cascade's net shows.

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
from typing import TYPE_CHECKING, Any, AsyncIterator

from thrifty.contract import Answer, Attempt, Call, Next
from thrifty.errors import IncompleteStream
from thrifty.routing.checks import CheckSettings, first_failure, request_confidence, strip_confidence_from_answer
from thrifty.shaping.prepare import Preparer

if TYPE_CHECKING:
    from thrifty.providers.deployments import Deployments
    from thrifty.routing.features import RequestFeatures
    from thrifty.routing.router import Decision, Router

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

    def __init__(self, deployments: "Deployments", router: "Router", preparer: Preparer) -> None:
        self.deployments = deployments
        self.router = router
        self.preparer = preparer
        esc = router.config.escalation if router is not None else None
        self.settings = CheckSettings.from_config(esc) if esc is not None else CheckSettings()
        self.confidence_field = esc.confidence_field if esc is not None else "confidence"
        self.sample_from = esc.consistency.sample_from if esc is not None else "peer"
        self.stats = EscalationStats()

    def snapshot(self) -> dict[str, Any]:
        return self.stats.snapshot()

    # --- moving a call ---------------------------------------------------------------------

    def place(self, call: Call, decision: "Decision") -> bool:
        """Point `call` at the decision's deployment with a freshly prepared body; a new attempt.

        True when the body asks for self-reported confidence (then the answer must be stripped).
        """
        route = self.deployments.route(decision.deployment)
        call.tier = decision.tier or route.tier
        call.attempt_effects = []
        body, asked = None, False
        if "confidence" in decision.checks and not call.stream:
            extended = request_confidence(call.body, call.wire, self.confidence_field)
            if extended is not None:
                body, asked = extended, True
        self.preparer.prepare(call, route, client_body=body)
        return asked

    # --- the loop ----------------------------------------------------------------------------

    async def run(self, call: Call, call_next: Next, decision: "Decision", features: "RequestFeatures",
                  asked_confidence: bool = False) -> Answer:
        router = self.router
        assert router is not None
        seq = [0]  # extra ledger rows so far: their request ids are <id>.1, <id>.2, ...
        while True:
            started = time.time()
            answer = await call_next(call)
            if not decision.checks and (decision.answer_stage is None or call.stream):
                return answer  # (a stream is not buffered for an answer stage that will not run on it)
            events: list[dict[str, Any]] | None = None
            if answer.events is not None:
                events = [event async for event in answer.events]
                body = _assemble(call.wire, events)
            else:
                body = answer.body
            confidence: Any = _MISSING
            if asked_confidence and body is not None:
                body, confidence = strip_confidence_from_answer(body, call.wire, self.confidence_field)
                answer.body = body
            self.stats.saw(decision.tier)
            failure = None
            if body is not None:
                failure = await self._check(call, call_next, decision, body, confidence, seq, features)
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
                     confidence: Any, seq: list[int], features: "RequestFeatures") -> tuple[str, str] | None:
        view = call.wire.answer_view(body)
        schema = call.wire.requested_schema(call.body) if "schema" in decision.checks else None
        checks = tuple(c for c in decision.checks if c not in ("consistency", "policy"))
        failure = failed_check(view, checks, self.settings, schema=schema, confidence=confidence)
        if failure is not None or call.stream:
            return failure
        if decision.answer_stage is not None:
            return await self._answer_stage(call, call_next, decision, view, features, seq)
        if "consistency" not in decision.checks:
            return failure
        second = await self._second_sample(call, call_next, decision, seq)
        if second is None:
            return None
        return failed_check(view, ("consistency",), self.settings, second=second,
                            choices=_choices(call.wire.last_user_text(call.body)))

    async def _answer_stage(self, call: Call, call_next: Next, decision: "Decision", view: Any,
                            features: "RequestFeatures", seq: list[int]) -> tuple[str, str] | None:
        """A learned cascade's verdict (routing/learned.py `AnswerStage`): the cheap answer and, when
        the stage compares two, the peer's consistency sample (recorded as the `consistency` check
        records it), scored against the decision's threshold. It replaces the plain consistency
        check, whose agreement is one of its inputs; without a sample (the peer failed) the answer
        is served, as the consistency check skips."""
        stage = decision.answer_stage
        second = None
        if stage.needs_second:
            second = await self._second_sample(call, call_next, decision, seq)
            if second is None:
                return None
        score = stage.score(features, view.text, second, view.finish_reason)
        threshold = decision.answer_threshold if decision.answer_threshold is not None else stage.threshold
        if score < threshold:
            return "policy", f"policy: answer score {score:.2f} < {threshold:.2f}"
        return None

    async def _second_sample(self, call: Call, call_next: Next, decision: "Decision",
                             seq: list[int]) -> str | None:
        """The text of a second sample of the same tier; recorded as its own ledger row."""
        router = self.router
        assert router is not None
        name = router.peer(decision) if self.sample_from == "peer" else None
        name = name or decision.deployment
        keep = (call.route, call.upstream_body, call.tier, call.retries, call.attempt_effects,
                call.body_effects, call.attempt_body, call.prefix_id)
        sample_decision = _with_deployment(decision, name)
        started = time.time()
        try:
            call.retries = 0
            asked = self.place(call, sample_decision)
            sample = await call_next(call)
            if asked and sample.body is not None:
                sample.body, _ = strip_confidence_from_answer(sample.body, call.wire, self.confidence_field)
        except Exception:  # noqa: BLE001 - no second sample: the check is skipped
            sample = None
        self_row = sample is not None and sample.body is not None
        if self_row:
            self.record_discarded(call, sample, started, seq, "consistency sample")  # type: ignore[arg-type]
        (call.route, call.upstream_body, call.tier, call.retries, call.attempt_effects,
         call.body_effects, call.attempt_body, call.prefix_id) = keep
        if not self_row:
            return None
        return call.wire.answer_view(sample.body).text  # type: ignore[union-attr, arg-type]

    # --- the ledger --------------------------------------------------------------------------

    def record_discarded(self, call: Call, answer: Answer, started: float, seq: list[int], why: str) -> None:
        """Report an upstream call whose answer the client does not get; the recorder writes its row."""
        seq[0] += 1
        call.discarded.append(Attempt(why=why, deployment=call.route, tier=call.tier, usage=answer.usage,
                                      cost=answer.cost, started_at=started, finished_at=time.time(),
                                      retries=call.retries))
        call.retries = 0  # the next attempt counts its own


def _assemble(wire: Any, events: list[dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return wire.assemble(events)
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


def _choices(text: str) -> int:
    """How many lettered options the last user message (`text`, read by the client's wire, so
    a Responses call's `input` counts as a chat call's `messages`) offers (the consistency check)."""
    import re

    letters = set(re.findall(r"(?m)^\s*\(?([A-J])[).:]\s", text))
    return len(letters)
