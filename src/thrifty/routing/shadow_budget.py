"""The shadow lane's own spend cap: reserve a call's worst case first, settle at its cost.

A shadow call is sent only when what was spent in the window, plus what is held for calls in
flight, plus this call's worst case, stays within the cap; so the spend never passes the cap
(as long as a call costs no more than its worst case, which the budget estimator bounds). An
unpriced call is settled at its worst case. The window is a UTC hour, day or month, counted in
this process (each replica has its own cap; see docs/shadow.md).
"""

from __future__ import annotations

import calendar
import threading
import time
from decimal import Decimal
from typing import Callable

ZERO = Decimal(0)
_FORMATS = {"hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d", "month": "%Y-%m"}


class ShadowBudget:
    def __init__(self, cap_usd: Decimal, per: str = "day", clock: Callable[[], float] = time.time) -> None:
        if per not in _FORMATS:
            raise ValueError(f"per must be one of {', '.join(_FORMATS)}, not {per!r}")
        self.cap = Decimal(cap_usd)
        self._format = _FORMATS[per]
        self._clock = clock
        self._window = ""
        self.spent = ZERO
        self.held = ZERO
        self._lock = threading.Lock()

    def _roll(self) -> None:
        window = time.strftime(self._format, time.gmtime(self._clock()))
        if window != self._window:
            self._window, self.spent = window, ZERO  # holds of calls in flight carry over

    def reserve(self, worst_usd: Decimal | None) -> bool:
        """Hold `worst_usd` if it fits under the cap; False (nothing held) when it does not, or
        when the call has no price (its cost could not be capped)."""
        if worst_usd is None:
            return False
        with self._lock:
            self._roll()
            if self.spent + self.held + worst_usd > self.cap:
                return False
            self.held += worst_usd
            return True

    def settle(self, worst_usd: Decimal, cost_usd: Decimal | None) -> None:
        """Replace the hold by what the call cost (its worst case when unknown)."""
        with self._lock:
            self._roll()
            self.held -= worst_usd
            self.spent += worst_usd if cost_usd is None else cost_usd

    def window_start(self) -> float:
        """Unix seconds at which the current window began (UTC)."""
        t = time.gmtime(self._clock())
        if self._format.endswith("%H"):
            parts = (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour)
        elif self._format.endswith("%d"):
            parts = (t.tm_year, t.tm_mon, t.tm_mday, 0)
        else:
            parts = (t.tm_year, t.tm_mon, 1, 0)
        return float(calendar.timegm((*parts, 0, 0, 0, 0, 0)))

    def seed(self, spent_usd: Decimal) -> None:
        """Count what this window already spent (a restart reads it back from the ledger)."""
        with self._lock:
            self._roll()
            self.spent = max(self.spent, spent_usd)

    def left(self) -> Decimal:
        with self._lock:
            self._roll()
            return self.cap - self.spent - self.held
