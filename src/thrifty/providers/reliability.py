"""Upstream reliability: retries with backoff, fallback within a tier, circuit breakers, a deadline.

The policy, in the order it applies to one call (`ProviderCall` drives it; nothing here is
touched while the first attempt succeeds, apart from one breaker update):

- **What is retried.** 5xx (not 501), timeouts and broken connections (a dropped answer, or a
  stream cut before its first event), and 408 / 409 (the provider's own "try again": a request
  timeout and a lock conflict, which the OpenAI and Anthropic SDKs retry too; `retry_statuses`).
  Any other 4xx is final: the request itself is wrong, and sending it again costs money and
  answers the same.
- **429** is not retried at once on the deployment that said it: that deployment gets no traffic
  until its `retry-after` has passed (`rate_limit_cooldown_s` when the header is absent), and the
  call moves at once, without backoff, to the next deployment of the tier that may take it. With
  none, the call waits out the `retry-after` and goes back to the same deployment when that wait
  is at most `rate_limit_wait_s` and ends before the deadline (as the OpenAI and Anthropic SDKs
  do); otherwise the 429 goes back to the client, `retry-after` kept.
- **Where a retry goes.** After a failure, the same deployment gets `same_deployment_retries`
  retries (after a backoff: full jitter, `uniform(0, min(backoff_max_s, backoff_base_s * 2**n))`),
  then the call moves to the next deployment of the tier that may take traffic. A retry that
  moves to another deployment does not wait. A cool-down is about rate limits, not about this
  call's own transient error: when the deployment that just failed is cooling from another
  call's 429 (a retry there would most likely be refused too), another deployment of the tier is
  preferred; with none, the retry waits for the cool-down to end when it ends within
  `rate_limit_wait_s` and the deadline, else it goes after its backoff anyway. `max_retries`
  bounds every attempt after the first, fallbacks and 429 waits included, so a call makes at most
  `1 + max_retries` upstream attempts.
- **What a fallback may cost.** `fallback_max_price_ratio` keeps every move, the router's skip
  of a cooling or open deployment included, to deployments whose price card (the router's
  blended per-token price) is at most that many times the one first chosen: 1 (the default)
  means never a dearer deployment, so a 429 on the cheapest one is waited out (above) rather
  than paid for elsewhere; `null` allows any deployment of the tier. A deployment without a
  price is a fallback only for one that has none either (there is nothing to compare).
  `fallback_tiers` says where the router may send a call when no deployment of its tier may
  take traffic: `own` (the default: the tier's cheapest deployment is tried anyway, and the
  retries above wait out its cool-down), `cheaper` (weaker tiers, then its own), or `any`
  (stronger tiers first, then weaker: a call can end up on the most expensive model; the
  router's behaviour when used on its own). A move is budgeted: the call's reservation is
  topped up for the new deployment's worst case before it is sent, and a budget without room
  answers its 429 instead (`budgets.stage`).
- **Circuit breaker** per deployment: over a sliding window of `window_s`, once at least
  `min_calls` outcomes are counted and the share of failures (5xx, timeouts, broken
  connections; not 4xx, not 429) reaches `failure_rate`, the breaker opens: no traffic for
  `cooldown_s`, then `half_open_probes` probe calls; a probe that succeeds closes it, one that
  fails opens it again. An open breaker steers calls to the tier's other deployments. When
  every candidate is open or cooling, the call is still tried on the one first chosen, the way
  Envoy's panic threshold never leaves a request with nowhere to go; `fail_fast: true` answers
  503 (open) or 429 (cooling, with the remaining `retry-after`) at once instead.
- **Deadline.** `deadline_s` bounds the whole upstream part of a call, from its first attempt:
  an attempt is cut when it runs out, and no retry starts (nor waits) past it.
- **Streams** can only be retried or moved before the provider's first event arrived, since
  nothing has reached the client until then. After that, a broken stream is the client's
  error event (and a breaker failure); the deadline also stops counting at the first event.
- **Billed failures.** An attempt that reached the provider and was cut (a timeout, a dropped
  answer) may have been billed: when it is retried, it is reported as a discarded attempt with
  an unknown cost, so it has its own ledger row (`<request_id>.<n>`, the error's status); the
  last attempt of a call that fails is the call's own row.

Fallback candidates are the other deployments of the call's tier (`row.tier`), cheapest first
as the router ranks them, when a router is configured and it chose the deployment
(`fallback: routed`, the default: `thrifty/auto`, `thrifty/<tier>`, a downgrade); a call that
named its model is retried on that model only, unless `fallback: tier`. `Breakers.is_healthy` is the router's `health` callable.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from decimal import Decimal
from enum import Enum
from typing import Awaitable, Callable, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from thrifty.errors import (
    GatewayError, GiveUp, RateLimited, UpstreamCredentialsRefused, UpstreamError, UpstreamTimeout,
)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_WINDOW_BUCKETS = 10  # the sliding window moves in tenths of window_s


class BreakerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    window_s: float = Field(default=60.0, gt=0)
    min_calls: int = Field(default=20, ge=1)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    cooldown_s: float = Field(default=30.0, gt=0)
    half_open_probes: int = Field(default=1, ge=1)


class ReliabilityConfig(BaseModel):
    """The `reliability` section of the gateway config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    max_retries: int = Field(default=2, ge=0, le=10)
    same_deployment_retries: int = Field(default=1, ge=0)
    backoff_base_s: float = Field(default=0.25, gt=0)
    backoff_max_s: float = Field(default=8.0, gt=0)
    retry_on_timeout: bool = True
    retry_statuses: tuple[int, ...] = (408, 409)  # 4xx that are transient; 5xx always are (but 501)
    deadline_s: float | None = Field(default=600.0, gt=0)
    # Who may move to the tier's other deployments: "routed" calls (thrifty/auto, thrifty/<tier>,
    # downgrades: the router chose the model), every call of a tier ("tier"), or none ("off").
    # A client that named a model itself is, by default, served by that model or not at all.
    fallback: Literal["routed", "tier", "off"] = "routed"
    rate_limit_cooldown_s: float = Field(default=1.0, ge=0)  # a 429 without retry-after
    # The longest retry-after (or cool-down) a retry waits for on the same deployment; 0: never wait.
    rate_limit_wait_s: float = Field(default=5.0, ge=0)
    # How much pricier than the first choice a fallback deployment may be (None: no limit).
    fallback_max_price_ratio: float | None = Field(default=1.0, gt=0)
    # Where routing sends a call when no deployment of its tier may take traffic (see above).
    fallback_tiers: Literal["own", "cheaper", "any"] = "own"
    fail_fast: bool = False
    breaker: BreakerConfig = BreakerConfig()

    @field_validator("retry_statuses")
    @classmethod
    def _only_4xx(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        for s in v:
            if not 400 <= s <= 499 or s == 429:
                raise ValueError(f"{s}: only 4xx statuses other than 429 (5xx are always retried; "
                                 "429 moves to another deployment)")
        return v


# --- pure parts ---------------------------------------------------------------------------

def backoff_delay(retry: int, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter (AWS architecture blog): uniform over [0, min(cap, base * 2**retry)]."""
    return rng.uniform(0.0, min(cap, base * (2.0 ** min(retry, 62))))


def retry_after_seconds(value: str | None, now_wall: float | None = None) -> float | None:
    """Seconds from a `retry-after` header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        secs = when.timestamp() - (time.time() if now_wall is None else now_wall)
    return max(0.0, secs) if secs == secs else None  # NaN is not a wait


DEADLINE_CODE = "deadline_exceeded"


class Outcome(Enum):
    FINAL = "final"  # the request is wrong (4xx): answer it, the deployment is fine
    RATE_LIMITED = "rate_limited"  # 429: cool this deployment, move on
    FAILED = "failed"  # the deployment failed (5xx, timeout, connection): retry, count against it
    TRANSIENT = "transient"  # 408 / 409: retry, not held against the deployment
    DEADLINE = "deadline"  # the call's own deadline ran out: stop, nobody's fault


def classify(err: GatewayError, config: ReliabilityConfig) -> Outcome:
    status = err.status
    if err.code == DEADLINE_CODE:
        return Outcome.DEADLINE
    if status == 429:
        return Outcome.RATE_LIMITED
    if isinstance(err, UpstreamCredentialsRefused):
        return Outcome.FINAL  # the same key is refused again, wherever the call is retried
    if isinstance(err, UpstreamTimeout):
        return Outcome.FAILED if config.retry_on_timeout else Outcome.FINAL
    if status >= 500:
        return Outcome.FINAL if status == 501 else Outcome.FAILED
    if status in config.retry_statuses:
        return Outcome.TRANSIENT
    return Outcome.FINAL


# --- circuit breakers -----------------------------------------------------------------------

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """One deployment's breaker and rate-limit cool-down. Single event loop: no locks."""

    __slots__ = ("cfg", "state", "open_until", "probes", "probe_at", "cool_until",
                 "_span", "_stamp", "_calls", "_fails")

    def __init__(self, cfg: BreakerConfig) -> None:
        self.cfg = cfg
        self.state = CLOSED
        self.open_until = 0.0
        self.probes = 0  # probes handed out while half-open
        self.probe_at = 0.0  # when the last one was handed out
        self.cool_until = 0.0  # after a 429: no traffic before this
        self._span = cfg.window_s / _WINDOW_BUCKETS
        self._stamp = [-1] * _WINDOW_BUCKETS  # which absolute bucket each slot counts
        self._calls = [0] * _WINDOW_BUCKETS
        self._fails = [0] * _WINDOW_BUCKETS

    # state

    def _tick(self, now: float) -> str:
        if self.state == OPEN and now >= self.open_until:
            self.state, self.probes = HALF_OPEN, 0
        return self.state

    def _probe_free(self, now: float) -> bool:
        # A probe whose outcome never came back (client gone) is given up after a cool-down.
        return self.probes < self.cfg.half_open_probes or now - self.probe_at >= self.cfg.cooldown_s

    def healthy(self, now: float) -> bool:
        if now < self.cool_until:
            return False
        state = self._tick(now)
        return state == CLOSED or (state == HALF_OPEN and self._probe_free(now))

    def allow(self, now: float) -> bool:
        """Whether a call may go now; in half-open, taking one of the probe slots."""
        if not self.healthy(now):
            return False
        if self.state == HALF_OPEN:
            if self.probes >= self.cfg.half_open_probes:  # a lost probe: start over
                self.probes = 0
            self.probes += 1
            self.probe_at = now
        return True

    # outcomes

    def success(self, now: float) -> None:
        self._count(now, failed=False)
        if self._tick(now) == HALF_OPEN:
            self._close()

    def failure(self, now: float) -> None:
        self._count(now, failed=True)
        state = self._tick(now)
        if state == HALF_OPEN:
            self._open(now)
        elif state == CLOSED:
            calls, fails = self.window(now)
            if calls >= self.cfg.min_calls and fails >= self.cfg.failure_rate * calls:
                self._open(now)

    def cool(self, now: float, seconds: float) -> None:
        self.cool_until = max(self.cool_until, now + seconds)

    def window(self, now: float) -> tuple[int, int]:
        """(calls, failures) counted in the sliding window ending now."""
        current = int(now // self._span)
        calls = fails = 0
        for i in range(_WINDOW_BUCKETS):
            if current - self._stamp[i] < _WINDOW_BUCKETS:
                calls += self._calls[i]
                fails += self._fails[i]
        return calls, fails

    def _count(self, now: float, failed: bool) -> None:
        bucket = int(now // self._span)
        slot = bucket % _WINDOW_BUCKETS
        if self._stamp[slot] != bucket:
            self._stamp[slot], self._calls[slot], self._fails[slot] = bucket, 0, 0
        self._calls[slot] += 1
        if failed:
            self._fails[slot] += 1

    def _open(self, now: float) -> None:
        self.state, self.open_until, self.probes = OPEN, now + self.cfg.cooldown_s, 0

    def _close(self) -> None:
        self.state, self.probes = CLOSED, 0
        self._stamp = [-1] * _WINDOW_BUCKETS  # a fresh start: old failures do not reopen it


class Breakers:
    """The breakers of every deployment, made on first use. `is_healthy` is the router's `health`."""

    def __init__(self, config: BreakerConfig | None = None, *, clock: Clock = time.monotonic) -> None:
        self.config = config or BreakerConfig()
        self.clock = clock
        self._by_name: dict[str, CircuitBreaker] = {}

    def _get(self, name: str) -> CircuitBreaker:
        b = self._by_name.get(name)
        if b is None:
            b = self._by_name[name] = CircuitBreaker(self.config)
        return b

    def is_healthy(self, name: str) -> bool:
        """Whether `name` may take traffic now (closed, or half-open with a probe slot free)."""
        b = self._by_name.get(name)
        return b is None or b.healthy(self.clock())

    def allow(self, name: str) -> bool:
        b = self._by_name.get(name)
        return b is None or b.allow(self.clock())

    def success(self, name: str) -> None:
        if self.config.enabled:
            self._get(name).success(self.clock())

    def failure(self, name: str) -> None:
        if self.config.enabled:
            self._get(name).failure(self.clock())

    def cool(self, name: str, seconds: float) -> None:
        """No traffic to `name` for `seconds` (it answered 429 with that retry-after)."""
        self._get(name).cool(self.clock(), seconds)

    def state(self, name: str) -> str:
        b = self._by_name.get(name)
        return CLOSED if b is None else b._tick(self.clock())

    def cooling_for(self, name: str) -> float:
        b = self._by_name.get(name)
        return 0.0 if b is None else max(0.0, b.cool_until - self.clock())

    def open_for(self, name: str) -> float:
        b = self._by_name.get(name)
        return 0.0 if b is None or b.state != OPEN else max(0.0, b.open_until - self.clock())


# --- the retry plan of one call ------------------------------------------------------------

class Reliability:
    """The policy and its long-lived state (breakers), built once and shared by all calls."""

    def __init__(self, config: ReliabilityConfig | None = None, *, clock: Clock = time.monotonic,
                 rng: random.Random | None = None, sleep: Sleep = asyncio.sleep,
                 breakers: Breakers | None = None) -> None:
        self.config = config or ReliabilityConfig()
        self.clock = clock
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.breakers = breakers or Breakers(self.config.breaker, clock=clock)

    def deadline_from(self, started: float) -> float | None:
        d = self.config.deadline_s
        return None if d is None else started + d

    def plan(self, first: str, peers: Sequence[str], started: float, *, routed: bool = True,
             price_of: Mapping[str, Decimal | None] | None = None) -> "RetryPlan":
        """`routed`: the router chose this deployment (the client did not name it); `price_of`:
        the router's price per deployment, for `fallback_max_price_ratio`."""
        mode = self.config.fallback
        may_move = mode == "tier" or (mode == "routed" and routed)
        ratio = self.config.fallback_max_price_ratio
        if may_move and ratio is not None:
            peers = [p for p in peers if affordable(p, first, price_of or {}, ratio)]
        return RetryPlan(self, first, peers if may_move else (), started)


def affordable(name: str, first: str, price_of: Mapping[str, Decimal | None], ratio: float | None) -> bool:
    """Whether a move from `first` to `name` stays within `fallback_max_price_ratio`."""
    if ratio is None or name == first:
        return True
    price, base = price_of.get(name), price_of.get(first)
    if price is None or base is None:
        return price is None and base is None  # unpriced peers: nothing to compare
    return price <= base * Decimal(str(ratio))


class RetryPlan:
    """Which deployment the next attempt of one call goes to, and after how long.

    Made only on the slow path (the first attempt failed, or its deployment may not take
    traffic). Counts `retries` (every attempt after the first, fallbacks included).
    """

    __slots__ = ("rel", "order", "current", "retries", "same", "backoffs", "tried", "deadline")

    def __init__(self, rel: Reliability, first: str, peers: Sequence[str], started: float) -> None:
        self.rel = rel
        self.order = (first, *(p for p in peers if p != first))
        self.current = first
        self.retries = 0
        self.same = 0  # retries on `current`
        self.backoffs = 0
        self.tried: set[str] = set()
        self.deadline = rel.deadline_from(started)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.rel.clock()

    def start(self) -> str:
        """The deployment for the first attempt when the chosen one may not take traffic now."""
        found = self._available(skip=self.current, claim=True)
        if found is not None:
            self.current = found
            return found
        if self.rel.config.fail_fast:
            raise self._refusal(self.current)
        return self.current  # nowhere else to go: try it anyway

    def after(self, err: GatewayError) -> tuple[str, float]:
        """Record the failed attempt; the next (deployment, delay). Raises GiveUp to stop."""
        rel, cfg, name = self.rel, self.rel.config, self.current
        self.tried.add(name)
        outcome = classify(err, cfg)
        if outcome is Outcome.FINAL:
            rel.breakers.success(name)  # it answered: the deployment is up, the request is wrong
            raise GiveUp
        if outcome is Outcome.DEADLINE:
            raise GiveUp
        if outcome is Outcome.RATE_LIMITED:
            wait = retry_after_seconds(err.retry_after)
            rel.breakers.cool(name, cfg.rate_limit_cooldown_s if wait is None else wait)
        elif outcome is Outcome.FAILED:
            rel.breakers.failure(name)
        if self.retries >= cfg.max_retries:
            raise GiveUp
        target, delay = self._next(name, outcome)
        left = self.remaining()
        if left is not None and delay >= left:
            raise GiveUp  # never wait past the deadline
        self.same = self.same + 1 if target == name else 0
        self.current = target
        self.retries += 1
        return target, delay

    def _next(self, name: str, outcome: Outcome) -> tuple[str, float]:
        """Where the retry after a failure on `name` goes, and how long it waits first."""
        rel, cfg = self.rel, self.rel.config
        if outcome is not Outcome.RATE_LIMITED and self.same < cfg.same_deployment_retries \
                and rel.breakers.allow(name):
            return name, self._backoff()
        other = self._available(skip=name, claim=True)
        if other is not None:
            return other, self._backoff() if other in self.tried else 0.0
        # Nowhere else to go: wait out a cool-down (this call's 429, or another call's) when it
        # is short, else retry a failure after its backoff anyway (a 429 goes back to the client).
        cooling = rel.breakers.cooling_for(name)
        left = self.remaining()
        if cooling > 0 and cooling <= cfg.rate_limit_wait_s and (left is None or cooling < left):
            return name, max(cooling, self._backoff() if outcome is not Outcome.RATE_LIMITED else 0.0)
        if outcome is Outcome.RATE_LIMITED:
            raise GiveUp
        if not rel.breakers.allow(name) and cfg.fail_fast:
            raise GiveUp
        return name, self._backoff()  # open or cooling past the wait: tried anyway, as in start()

    def _backoff(self) -> float:
        cfg = self.rel.config
        delay = backoff_delay(self.backoffs, cfg.backoff_base_s, cfg.backoff_max_s, self.rel.rng)
        self.backoffs += 1
        return delay

    def _available(self, skip: str, claim: bool = False) -> str | None:
        """The first deployment other than `skip` that may take traffic; untried ones first."""
        breakers = self.rel.breakers
        others = [n for n in self.order if n != skip]
        for name in sorted(others, key=lambda n: n in self.tried):  # stable: keeps price order
            if breakers.allow(name) if claim else breakers.is_healthy(name):
                return name
        return None

    def _refusal(self, name: str) -> GatewayError:
        breakers = self.rel.breakers
        cooling = breakers.cooling_for(name)
        if cooling > 0:
            return RateLimited(f"{name}: rate limited by the provider; no traffic before its retry-after",
                               retry_after=str(max(1, round(cooling))))
        return UpstreamError(f"{name}: circuit open after repeated upstream failures; "
                             f"retrying in {breakers.open_for(name):.0f}s", status=503)


def deadline_error(name: str, seconds: float | None) -> UpstreamTimeout:
    return UpstreamTimeout(f"{name}: no answer within the request deadline of {seconds or 0:g}s",
                           code=DEADLINE_CODE)
