"""Per-prefix statistics of provider prompt caching, kept in process.

Two kinds of facts, recorded at two moments of a call:

- `sight(prefix_id)` when a request carrying the prefix is planned: its arrival time. The gaps
  between arrivals say how long a cache entry must live to be read again, which is what the
  5m / 1h TTL choice needs.
- `observe(prefix_id, usage, cost, saving)` once the provider answered: tokens read from and
  written to its cache, what the call cost and what caching saved on it.

Memory is bounded: at most `max_prefixes` prefixes (the least recently used one is dropped, its
totals with it) and `max_sightings` arrival times each, within `window_s`. A prefix used so often
that its last arrivals span less than the window is hot, and its gaps are all short anyway.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, NamedTuple

from thrifty.contract.usage import Usage

Clock = Callable[[], float]

FIVE_MINUTES_S = 300.0
ONE_HOUR_S = 3600.0
_MIN_SPAN_S = 60.0  # a rate over less than a minute says little; do not extrapolate from it
_ZERO = Decimal(0)


class GapCounts(NamedTuple):
    """Gaps between consecutive arrivals of one prefix, by the cache entries that outlive them."""

    short: int = 0  # <= 5 min: a 5m entry is still warm
    mid: int = 0  # 5 min .. 1 h: only a 1h entry is still warm
    long: int = 0  # > 1 h: both have expired


@dataclass(frozen=True, slots=True)
class PrefixSnapshot:
    """One prefix's figures, for reports. Money in USD, exact."""

    prefix_id: str
    calls: int  # answered calls observed
    sightings: int  # requests planned with this prefix (arrivals), all time
    reuses_per_hour: float  # repeat arrivals per hour, over the window
    hit_rate: float  # share of observed calls that read from the provider's cache
    read_share: float  # share of their prompt tokens read from the cache
    prompt_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cost_usd: Decimal  # of the calls with a known cost
    saving_usd: Decimal  # of the calls with a known saving; negative when writes went unread
    unpriced_calls: int  # calls whose cost or saving was unknown
    idle_s: float  # since the last arrival


class _Entry:
    __slots__ = ("arrivals", "kinds", "gaps", "sightings", "calls", "hits", "prompt", "read", "w5m",
                 "w1h", "cost", "saving", "unpriced")

    def __init__(self) -> None:
        self.arrivals: deque[float] = deque()
        self.kinds: deque[int] = deque()  # kinds[i]: the class of the gap from arrivals[i] to [i + 1]
        self.gaps = [0, 0, 0]  # counts of kinds: short, mid, long
        self.sightings = 0
        self.calls = self.hits = self.prompt = self.read = self.w5m = self.w1h = self.unpriced = 0
        self.cost = _ZERO
        self.saving = _ZERO


class PrefixStats:
    """Thread-safe statistics per prefix id, with an injectable clock (seconds, monotonic)."""

    def __init__(self, clock: Clock = time.monotonic, *, window_s: float = 3 * ONE_HOUR_S,
                 max_prefixes: int = 10_000, max_sightings: int = 64) -> None:
        if window_s <= 0 or max_prefixes < 1 or max_sightings < 2:
            raise ValueError("window_s must be positive, max_prefixes >= 1 and max_sightings >= 2")
        self._clock = clock
        self.window_s = window_s
        self._max_prefixes = max_prefixes
        self._max_sightings = max_sightings
        self._entries: dict[str, _Entry] = {}  # least recently used first
        self._lock = threading.Lock()

    def _entry(self, prefix_id: str) -> _Entry:
        """The prefix's entry, moved to the most recently used end (the caller holds the lock)."""
        entry = self._entries.pop(prefix_id, None)
        if entry is None:
            entry = _Entry()
            while len(self._entries) >= self._max_prefixes:
                del self._entries[next(iter(self._entries))]
        self._entries[prefix_id] = entry
        return entry

    def _prune(self, entry: _Entry, now: float) -> None:
        arrivals, horizon = entry.arrivals, now - self.window_s
        while arrivals and (arrivals[0] < horizon or len(arrivals) > self._max_sightings):
            arrivals.popleft()
            if entry.kinds:
                entry.gaps[entry.kinds.popleft()] -= 1

    def sight(self, prefix_id: str) -> GapCounts:
        """Record an arrival of `prefix_id` now; return its gaps in the window, this one included."""
        now = self._clock()
        with self._lock:
            entry = self._entry(prefix_id)
            entry.sightings += 1
            if entry.arrivals:
                kind = _kind(now - entry.arrivals[-1])
                entry.kinds.append(kind)
                entry.gaps[kind] += 1
            entry.arrivals.append(now)
            self._prune(entry, now)
            return GapCounts(*entry.gaps)

    def observe(self, prefix_id: str, usage: Usage, cost: Decimal | None, saving: Decimal | None) -> None:
        """Add one answered call: its cache tokens, its cost and what caching saved on it."""
        with self._lock:
            entry = self._entry(prefix_id)
            entry.calls += 1
            if usage.cache_read_tokens:
                entry.hits += 1
            entry.prompt += usage.prompt_tokens
            entry.read += usage.cache_read_tokens
            entry.w5m += usage.cache_write_5m_tokens
            entry.w1h += usage.cache_write_1h_tokens
            if cost is None or saving is None:
                entry.unpriced += 1
            if cost is not None:
                entry.cost += cost
            if saving is not None:
                entry.saving += saving

    def gaps(self, prefix_id: str) -> GapCounts:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(prefix_id)
            if entry is None:
                return GapCounts()
            self._prune(entry, now)
            return GapCounts(*entry.gaps)

    def reuses_per_hour(self, prefix_id: str) -> float:
        """Repeat arrivals in the window per hour of the time since the first of them."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(prefix_id)
            if entry is None:
                return 0.0
            self._prune(entry, now)
            return _rate(entry.arrivals, now)

    def get(self, prefix_id: str) -> PrefixSnapshot | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(prefix_id)
            return None if entry is None else self._snapshot(prefix_id, entry, now)

    def snapshot(self) -> list[PrefixSnapshot]:
        """Every prefix held, the largest saving first."""
        now = self._clock()
        with self._lock:
            out = [self._snapshot(pid, entry, now) for pid, entry in self._entries.items()]
        out.sort(key=lambda s: (-s.saving_usd, -s.calls, s.prefix_id))
        return out

    def _snapshot(self, prefix_id: str, entry: _Entry, now: float) -> PrefixSnapshot:
        self._prune(entry, now)
        arrivals = entry.arrivals
        return PrefixSnapshot(
            prefix_id=prefix_id, calls=entry.calls, sightings=entry.sightings,
            reuses_per_hour=_rate(arrivals, now),
            hit_rate=entry.hits / entry.calls if entry.calls else 0.0,
            read_share=entry.read / entry.prompt if entry.prompt else 0.0,
            prompt_tokens=entry.prompt, cache_read_tokens=entry.read,
            cache_write_5m_tokens=entry.w5m, cache_write_1h_tokens=entry.w1h,
            cost_usd=entry.cost, saving_usd=entry.saving, unpriced_calls=entry.unpriced,
            idle_s=now - arrivals[-1] if arrivals else self.window_s,
        )

    def __len__(self) -> int:
        return len(self._entries)


def _kind(gap: float) -> int:
    return 0 if gap <= FIVE_MINUTES_S else 1 if gap <= ONE_HOUR_S else 2


def _rate(arrivals: deque[float], now: float) -> float:
    if len(arrivals) < 2:
        return 0.0
    span = max(now - arrivals[0], _MIN_SPAN_S)
    return (len(arrivals) - 1) * ONE_HOUR_S / span
