"""What both providers' batch APIs share: a job's timeline, its lines, and running a line.

A batch job is lazy: nothing runs in the background. Its timeline is fixed at creation from
`batch_seconds` (B) and `batch_expire_seconds` (E), both from the emulator config, and every read
of the job first `advance`s it to the present:

    created ............ +0.1B ......................... +0.9B ......... +B
      validating        | in_progress: line i of n runs   | finalizing    | ended
                        | at +B * (0.1 + 0.8 * (i+1)/n)   |               |

A line runs exactly once, when the job is observed at or after its due time, through the same
engine as the interactive routes (`LineRunner`: the wire's parse and model rules, the prompt
cache, the deterministic model, the same usage), and a line that succeeded is billed in the
billing counter's batch section. Lines due after the job stops never run: on cancel (the job
is cancelling for 0.1B, then ends) they end as cancelled, past +E (the providers' 24-hour
window) as expired; neither bills anything.

Per-line faults: a line whose last user message contains `BATCH_FAULT_MARKER` fails with the
provider's 500 (OpenAI `server_error`, Anthropic `api_error`) and bills nothing, so tests can
make one line of a batch fail on the provider's side while the others succeed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from thrifty_emulator import embeddings
from thrifty_emulator.prompt_cache import deferred_writes
from thrifty_emulator.usage import TokenCounts
from thrifty_emulator.wire import Wire, WireError

if TYPE_CHECKING:
    from thrifty_emulator.app import EmulatorApp

BATCH_FAULT_MARKER = "[emulator:batch_fault]"
VALIDATING = 0.1  # share of batch_seconds spent validating before the first line runs
FINALIZING = 0.9  # ... after which the last line has run and the job finalizes
CANCELLING = 0.1  # share of batch_seconds a cancelled job spends cancelling


@dataclass(frozen=True, slots=True)
class Timeline:
    created: float  # on the emulator's clock
    wall_created: float  # the same instant as a Unix time, for the timestamps the APIs show
    seconds: float  # batch_seconds
    expire_seconds: float  # batch_expire_seconds

    @property
    def validated(self) -> float:
        return self.created + VALIDATING * self.seconds

    @property
    def finalizing(self) -> float:
        return self.created + FINALIZING * self.seconds

    @property
    def finished(self) -> float:
        return self.created + self.seconds

    @property
    def expires(self) -> float:
        return self.created + self.expire_seconds

    def due(self, index: int, count: int) -> float:
        """When line `index` of `count` runs."""
        share = VALIDATING + (FINALIZING - VALIDATING) * (index + 1) / max(count, 1)
        return self.created + share * self.seconds

    def wall(self, t: float) -> float:
        return self.wall_created + (t - self.created)

    def unix(self, t: float) -> int:
        return math.floor(self.wall(t))

    def rfc3339(self, t: float) -> str:
        return datetime.fromtimestamp(self.wall(t), UTC).isoformat(timespec="microseconds") \
            .replace("+00:00", "Z")


@dataclass(slots=True)
class Line:
    custom_id: str
    body: Any  # the request body (an OpenAI line's `body`, an Anthropic request's `params`)
    outcome: str | None = None  # "succeeded" | "errored" | "expired" | "cancelled", once settled
    status: int | None = None  # the HTTP status the request got, when it ran
    response: dict[str, Any] | None = None  # the answer or the error body, in the provider's shape
    request_id: str | None = None
    usage: TokenCounts | None = None  # what a succeeded line billed


@dataclass(slots=True)
class Job:
    """One batch job; `run` settles one line (LineRunner); `ended_at` is set once results are final."""

    id: str
    lines: list[Line]
    timeline: Timeline
    run: Callable[[Line], None]
    cancel_at: float | None = None
    ended_at: float | None = None
    ran: int = 0  # lines[:ran] have run
    extra: dict[str, Any] = field(default_factory=dict)  # the provider's own fields (endpoint, metadata, ...)

    @property
    def stops_at(self) -> float:
        """After this instant no further line starts."""
        t = self.timeline
        return min(t.expires, self.cancel_at if self.cancel_at is not None else math.inf)

    @property
    def ends_at(self) -> float:
        """When results are final: the last line done, the window expired, or cancelling over."""
        t = self.timeline
        if self.cancel_at is not None and self.cancel_at < t.expires:
            return self.cancel_at + CANCELLING * t.seconds
        return min(t.finished, t.expires)

    @property
    def expired(self) -> bool:
        """Ended by the completion window rather than by finishing or a cancel."""
        t = self.timeline
        return t.expires < t.finished and (self.cancel_at is None or self.cancel_at >= t.expires)

    def advance(self, now: float) -> None:
        """Run every line due by `now` (and before the job stopped); settle the rest once ended."""
        n = len(self.lines)
        stop = self.stops_at
        while self.ran < n:
            due = self.timeline.due(self.ran, n)
            if due > now or due >= stop:
                break
            self.run(self.lines[self.ran])
            self.ran += 1
        if self.ended_at is None and now >= self.ends_at:
            leftover = "expired" if self.expired else "cancelled"
            for line in self.lines[self.ran:]:
                line.outcome = leftover
            self.ended_at = self.ends_at

    def count(self, outcome: str) -> int:
        return sum(1 for line in self.lines if line.outcome == outcome)


class LineRunner:
    """Runs one batch line through the interactive engine of the app (no rate limits, no pacing:
    batch capacity is a separate pool at both providers), billing a success as a batch line."""

    def __init__(self, app: EmulatorApp) -> None:
        self._app = app

    def chat(self, wire: Wire, line: Line, headers: Mapping[str, str]) -> None:
        app = self._app
        line.request_id = app._ids.make("req_", 24)
        try:
            body = line.body
            if isinstance(body, dict) and body.get("stream"):
                # Both APIs answer a batch request as one whole body; a stream has nowhere to go.
                raise wire.invalid("stream: streaming is not supported in batch requests", "stream")
            req = wire.parse(body)
            spec = app._spec(wire, req.model)
            wire.check(req, spec, headers)
            if BATCH_FAULT_MARKER in (req.user_text or ""):
                app.billing.fault(spec.name, batch=True)
                raise wire.fault_error(500, req.model, 0)
            with deferred_writes() as writes:
                completion = app._complete(wire, req, spec)
            writes.commit()  # the line's answer exists: later lines can read what it cached
        except WireError as err:
            _failed(wire, line, err)
            return
        line.outcome, line.status, line.usage = "succeeded", 200, completion.usage
        line.response = wire.render(completion)
        app.billing.charge(spec.name, completion.usage, batch=True)

    def embedding(self, wire: Wire, line: Line) -> None:
        app = self._app
        line.request_id = app._ids.make("req_", 24)
        try:
            model, inputs, encoding, dims = embeddings.parse(line.body)
            body, n = embeddings.answer(model, inputs, encoding, dims)
        except WireError as err:
            _failed(wire, line, err)
            return
        usage = TokenCounts(input_tokens=n)
        line.outcome, line.status, line.usage, line.response = "succeeded", 200, usage, body
        app.billing.charge(model, usage, batch=True)


def _failed(wire: Wire, line: Line, err: WireError) -> None:
    line.outcome, line.status = "errored", err.status
    line.response = wire.error_body(err, line.request_id or "")
