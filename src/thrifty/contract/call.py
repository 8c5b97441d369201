"""Levers as stages: each wraps the rest of the flow, like ASGI middleware.

A stage gets the call and `call_next`; it may answer by itself (a cache hit), change the call
before passing it on (routing), or look at the answer on its way back (filling a cache). The
innermost step calls the provider. Stages never touch the HTTP layer or the ledger: they report
what they did on the call (`effects`, `discarded`), and one recorder turns call and answer into
ledger rows once the answer is final.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from thrifty.contract.effects import Effect
from thrifty.contract.usage import Usage


@dataclass(slots=True, eq=False)
class Attempt:
    """An upstream call whose answer the client does not get (an escalated lower tier, a
    consistency sample, a retried attempt cut after it reached the provider). It was (or may
    have been) billed, so it gets a ledger row of its own."""

    why: str  # "escalated: <reason>" / "consistency sample"
    deployment: Any  # the deployment it ran on (a core.gateway.Route)
    tier: str | None
    usage: Usage
    cost: Decimal | None
    started_at: float
    finished_at: float
    retries: int = 0
    status: int = 200  # an attempt cut by a timeout or a dropped answer: the error's status, cost unknown


@dataclass(slots=True, eq=False)
class Call:
    """One client request on its way through the stages."""

    request_id: str
    tenant: str
    wire: Any  # the client's dialect: a thrifty.wire.Wire
    headers: dict[str, str]
    body: dict[str, Any]  # the client's request, in the client's dialect
    model: str  # the model the client asked for
    stream: bool
    feature: str | None = None
    user: str | None = None
    task: str | None = None
    call_site: str | None = None
    policy: Any = None  # the CallPolicy of the route that matched (app.policy)
    route: Any = None  # the deployment this attempt goes to (a core.gateway.Route)
    tier: str | None = None  # the routing tier, when a router chose it
    upstream_body: dict[str, Any] | None = None  # the request in the provider's dialect
    retries: int = 0
    # Seconds this call spent on providers: every attempt's wait for its answer (a stream's: from
    # sending to its last event) and the backoff between retries, summed over the attempts
    # (escalations, samples, retries). The latency minus this is the gateway's own overhead.
    upstream_s: float = 0.0
    # The last user turn's unit embedding, when the semantic cache computed one for this call (a
    # learned routing policy with an embedding model reuses it instead of embedding again).
    embedding: Any = None
    # What the levers did, in the order they acted: for the whole call (`effects`), for the current
    # attempt (`attempt_effects`: a budget's downgrade, fallbacks) and for its body (`body_effects`:
    # shaping, prompt caching). Escalation starts a new attempt; preparing a body replaces its effects.
    effects: list[Effect] = field(default_factory=list)
    attempt_effects: list[Effect] = field(default_factory=list)
    body_effects: list[Effect] = field(default_factory=list)
    attempt_body: dict[str, Any] | None = None  # the client request this attempt uses, when not `body`
    reserved_output_cap: int | None = None  # a budget reserved for this cap: every body carries it
    prefix_id: str | None = None  # the prompt-cache prefix of the current body
    discarded: list[Attempt] = field(default_factory=list)
    extra_headers: dict[str, str] = field(default_factory=dict)  # stages' additions to the answer's headers
    # Awaited before a retry that needs more than is held: one sent to another deployment than the
    # one budgeted (a fallback), or one after an attempt the provider may have billed (`after_cut`,
    # which then keeps its own hold). A budget reserves what the attempt needs, or raises its 429.
    # None: nothing to cover.
    cover_attempt: Callable[["Call", bool], Awaitable[None]] | None = None


@dataclass(slots=True, eq=False)
class Answer:
    """What goes back to the client, in the client's dialect.

    Exactly one of `body` (a whole answer) and `events` (a stream of dialect events) is set.
    For a stream, `usage`, `cost` and `complete` are final only once `events` is exhausted.
    """

    body: dict[str, Any] | None = None
    events: AsyncIterator[dict[str, Any]] | None = None
    usage: Usage = field(default_factory=Usage)
    cost: Decimal | None = None
    cache: str = "miss"
    complete: bool = False  # a stream ended with its final event
    served_model: str | None = None  # set when no deployment served it (a cache hit)
    tier: str | None = None
    accounting: Any = None  # the priced counterfactual, once worked out (pricing.savings.Accountant)


Next = Callable[[Call], Awaitable[Answer]]


class Stage(ABC):
    """One lever. Subclasses keep their own state (caches, statistics) and config."""

    name: str = "stage"

    @abstractmethod
    async def __call__(self, call: Call, call_next: Next) -> Answer: ...


def compose(stages: Sequence[Stage], innermost: Next) -> Next:
    """`stages[0]` runs first and wraps everything after it."""
    handler = innermost
    for stage in reversed(stages):
        handler = _bind(stage, handler)
    return handler


def _bind(stage: Stage, call_next: Next) -> Next:
    async def run(call: Call) -> Answer:
        return await stage(call, call_next)

    return run


AfterHook = Callable[[Answer, "list[dict[str, Any]] | None"], Awaitable[None]]


async def after_answer(answer: Answer, hook: AfterHook, *, collect: bool = False) -> Answer:
    """Run `hook` once the answer is final: now for a whole answer, after the last event of a stream.

    With `collect`, the hook also gets the stream's events (for assembling the whole answer);
    it never runs for a stream that broke off.
    """
    if answer.events is None:
        await hook(answer, None)
        return answer
    answer.events = _watch(answer, answer.events, hook, collect)
    return answer


async def _watch(answer: Answer, events: AsyncIterator[dict[str, Any]], hook: AfterHook,
                 collect: bool) -> AsyncIterator[dict[str, Any]]:
    seen: list[dict[str, Any]] | None = [] if collect else None
    async for event in events:
        if seen is not None:
            seen.append(event)
        yield event
    if answer.complete:
        await hook(answer, seen)
