"""Budget windows: which window a moment falls in, and when that window resets.

Windows are calendar windows in UTC (a day starts at 00:00 UTC, a month on its 1st), so every
replica and every report agrees on them. `lifetime` starts at 0 and never resets. Times are unix
seconds from an injectable clock, so tests can step across boundaries.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Callable

Clock = Callable[[], float]
SYSTEM_CLOCK: Clock = time.time

_FIXED = {"minute": 60, "hour": 3600, "day": 86400}


def window_bounds(window: str, now: float) -> tuple[int, int | None]:
    """(start, end) of the window containing `now`, in unix seconds; end is None for lifetime."""
    size = _FIXED.get(window)
    if size is not None:
        start = int(now // size) * size
        return start, start + size
    if window == "month":
        t = datetime.fromtimestamp(now, UTC)
        start = datetime(t.year, t.month, 1, tzinfo=UTC)
        end = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)
        return int(start.timestamp()), int(end.timestamp())
    if window == "lifetime":
        return 0, None
    raise ValueError(f"unknown budget window {window!r}")


@lru_cache(maxsize=256)  # the hot path formats the same few window ends over and over
def iso(ts: float | None) -> str | None:
    """A unix time as ISO 8601 UTC with a Z, for messages and webhooks."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Windows:
    """window_bounds with the current window of each kind remembered: the hot path asks for the
    same month thousands of times before it changes."""

    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: dict[str, tuple[int, int | None]] = {}

    def bounds(self, window: str, now: float) -> tuple[int, int | None]:
        cur = self._current.get(window)
        if cur is not None and cur[0] <= now and (cur[1] is None or now < cur[1]):
            return cur
        cur = window_bounds(window, now)
        self._current[window] = cur
        return cur
