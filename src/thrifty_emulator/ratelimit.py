"""Per-key, per-model rate limits as token buckets, and the headers that report them.

Both providers limit per model and measure per minute with a bucket that refills continuously
("token bucket algorithm": Anthropic, Rate limits; OpenAI, Rate limits guide), so a bucket of
capacity C refills at C/60 per second and a request waits only until there is room for it.

What a request needs, checked before the model runs:
  - OpenAI: 1 request, and prompt + max output (max_completion_tokens/max_tokens, or the
    model's maximum when unset) from the tokens bucket (`tpm`);
  - Anthropic: 1 request, the uncached input (cache reads do not count towards ITPM) from
    `itpm`, and max_tokens from `otpm` (estimated from max_tokens at the start).
What it takes: the request, its input, and the output actually generated (OTPM and TPM are
"adjusted at the end of the request to reflect the actual number of output tokens").

A request that can never fit (it needs more than a bucket holds) is refused without a
retry-after, as OpenAI's "Request too large" is; otherwise the 429's `retry-after` is the whole
seconds until every bucket it needs has room again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from thrifty_emulator.keys import Limits

Clock = Callable[[], float]


@dataclass(slots=True)
class Bucket:
    capacity: int
    level: float
    updated: float

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.capacity / 60.0)
        self.updated = now

    def wait_s(self, amount: int) -> float:
        """Seconds until `amount` fits (0 when it fits now); inf when it never can."""
        if amount > self.capacity:
            return math.inf
        return max(0.0, (amount - self.level) * 60.0 / self.capacity)

    def take(self, amount: int) -> None:
        self.level = max(0.0, self.level - amount)

    def give(self, amount: int) -> None:
        self.level = min(self.capacity, self.level + amount)

    @property
    def full_in_s(self) -> float:
        return (self.capacity - self.level) * 60.0 / self.capacity


@dataclass(frozen=True, slots=True)
class Refusal:
    dimension: str  # "requests", "tokens", "input_tokens" or "output_tokens"
    limit: int
    requested: int
    used: int
    retry_after_s: int | None  # None: the request can never fit


# What each wire draws from: bucket name -> Limits field.
DIMENSIONS = {"openai": {"requests": "rpm", "tokens": "tpm"},
              "anthropic": {"requests": "rpm", "input_tokens": "itpm", "output_tokens": "otpm"}}


class RateLimiter:
    def __init__(self, clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self._clock, self._wall = clock, wall
        self._buckets: dict[tuple[str, str, str, str], Bucket] = {}

    def _bucket(self, wire: str, key: str, model: str, dim: str, limits: Limits) -> Bucket:
        ident = (wire, key, model, dim)
        b = self._buckets.get(ident)
        now = self._clock()
        if b is None:
            cap = getattr(limits, DIMENSIONS[wire][dim])
            b = self._buckets[ident] = Bucket(cap, float(cap), now)
        b.refill(now)
        return b

    def acquire(self, wire: str, key: str, model: str, limits: Limits, need: dict[str, int]) -> Refusal | None:
        """Take `need` (bucket name -> amount) from the buckets, or say why not (taking nothing)."""
        buckets = {dim: self._bucket(wire, key, model, dim, limits) for dim in DIMENSIONS[wire]}
        worst: Refusal | None = None
        worst_wait = 0.0
        for dim, amount in need.items():
            b = buckets[dim]
            wait = b.wait_s(amount)
            if wait > worst_wait:
                worst_wait = wait
                worst = Refusal(dim, b.capacity, amount, b.capacity - int(b.level),
                                None if math.isinf(wait) else max(1, math.ceil(wait)))
        if worst is not None:
            return worst
        for dim, amount in need.items():
            buckets[dim].take(amount)
        return None

    def settle(self, wire: str, key: str, model: str, limits: Limits, dim: str, estimated: int, actual: int) -> None:
        """Replace an estimate taken at the start by what the request actually used."""
        b = self._bucket(wire, key, model, dim, limits)
        if actual < estimated:
            b.give(estimated - actual)
        else:
            b.take(actual - estimated)

    def headers(self, wire: str, key: str, model: str, limits: Limits) -> dict[str, str]:
        buckets = {dim: self._bucket(wire, key, model, dim, limits) for dim in DIMENSIONS[wire]}
        if wire == "openai":
            out = {}
            for dim, b in buckets.items():
                out[f"x-ratelimit-limit-{dim}"] = str(b.capacity)
                out[f"x-ratelimit-remaining-{dim}"] = str(int(b.level))
                out[f"x-ratelimit-reset-{dim}"] = go_duration(b.full_in_s)
            return out
        out = {}
        now = self._wall()
        for dim, b in buckets.items():
            name = dim.replace("_", "-")
            out[f"anthropic-ratelimit-{name}-limit"] = str(b.capacity)
            out[f"anthropic-ratelimit-{name}-remaining"] = str(int(b.level))
            out[f"anthropic-ratelimit-{name}-reset"] = rfc3339(now + b.full_in_s)
        # The combined tokens headers report the most restrictive of the token limits.
        tightest = min((buckets["input_tokens"], buckets["output_tokens"]), key=lambda b: b.level / b.capacity)
        out["anthropic-ratelimit-tokens-limit"] = str(tightest.capacity)
        out["anthropic-ratelimit-tokens-remaining"] = str(int(tightest.level))
        out["anthropic-ratelimit-tokens-reset"] = rfc3339(now + tightest.full_in_s)
        return out

    def reset(self) -> None:
        self._buckets.clear()


def go_duration(seconds: float) -> str:
    """OpenAI's reset format (a Go duration): "17ms", "1s", "6m0s", "1h2m3.5s"."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{round(secs, 3):g}s"
    if hours or minutes:
        text = f"{int(minutes)}m" + text
    if hours:
        text = f"{int(hours)}h" + text
    return text


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(math.ceil(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
