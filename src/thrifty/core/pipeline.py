"""Levers as stages: each wraps the rest of the flow, like ASGI middleware.

A stage gets the call and `call_next`; it may answer by itself (a cache hit), change the call
before passing it on (routing, shaping), or look at the answer on its way back (filling a cache).
The innermost step calls the provider. Stages never touch the HTTP layer: the API turns the
`Answer` into bytes in the client's protocol.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Sequence

from thrifty.core.usage import Usage

if TYPE_CHECKING:
    from thrifty.api.surfaces import Surface
    from thrifty.core.gateway import Route
    from thrifty.ledger import LedgerRow


@dataclass(slots=True, eq=False)
class Call:
    """One client request on its way through the stages."""

    request_id: str
    tenant: str
    surface: "Surface"
    headers: dict[str, str]
    body: dict[str, Any]  # the client's request, in the client's protocol
    model: str  # the model the client asked for
    stream: bool
    row: "LedgerRow"
    policy: Any = None  # the CallPolicy of the route that matched (core.policy)
    route: "Route | None" = None
    upstream_body: dict[str, Any] | None = None  # the request in the provider's wire format
    saved: dict[str, Decimal] = field(default_factory=dict)  # lever -> USD it saved on this call
    extra_headers: dict[str, str] = field(default_factory=dict)  # stages' additions to the answer's headers


@dataclass(slots=True, eq=False)
class Answer:
    """What goes back to the client, in the client's protocol.

    Exactly one of `body` (a whole answer) and `events` (a stream of protocol events) is set.
    For a stream, `usage`, `cost` and `complete` are final only once `events` is exhausted.
    """

    body: dict[str, Any] | None = None
    events: AsyncIterator[dict[str, Any]] | None = None
    usage: Usage = field(default_factory=Usage)
    cost: Decimal | None = None
    cache: str = "miss"
    complete: bool = False  # a stream ended with its final event


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
