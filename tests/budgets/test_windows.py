"""Calendar windows in UTC, and when each resets."""

from __future__ import annotations

from calendar import timegm

import pytest

from thrifty.budgets.windows import Windows, iso, window_bounds


def ts(*t: int) -> int:
    return timegm((*t, 0, 0, 0)[:6] if len(t) < 6 else t)


@pytest.mark.parametrize("window, now, start, end", [
    ("minute", ts(2026, 3, 5, 10, 7, 59), ts(2026, 3, 5, 10, 7, 0), ts(2026, 3, 5, 10, 8, 0)),
    ("hour", ts(2026, 3, 5, 10, 59, 59), ts(2026, 3, 5, 10, 0, 0), ts(2026, 3, 5, 11, 0, 0)),
    ("day", ts(2026, 3, 5, 23, 59, 59), ts(2026, 3, 5, 0, 0, 0), ts(2026, 3, 6, 0, 0, 0)),
    ("month", ts(2026, 1, 31, 23, 59, 59), ts(2026, 1, 1, 0, 0, 0), ts(2026, 2, 1, 0, 0, 0)),
    ("month", ts(2026, 2, 1, 0, 0, 0), ts(2026, 2, 1, 0, 0, 0), ts(2026, 3, 1, 0, 0, 0)),
    ("month", ts(2028, 2, 29, 12, 0, 0), ts(2028, 2, 1, 0, 0, 0), ts(2028, 3, 1, 0, 0, 0)),  # leap year
    ("month", ts(2026, 12, 31, 23, 59, 59), ts(2026, 12, 1, 0, 0, 0), ts(2027, 1, 1, 0, 0, 0)),
])
def test_bounds(window, now, start, end):
    assert window_bounds(window, now) == (start, end)
    assert window_bounds(window, now + 0.5 if now + 0.5 < end else now) == (start, end)


def test_the_end_of_a_window_is_the_start_of_the_next():
    for window in ("minute", "hour", "day", "month"):
        start, end = window_bounds(window, ts(2026, 12, 31, 23, 59, 59))
        assert window_bounds(window, end)[0] == end
        assert window_bounds(window, end - 0.001) == (start, end)


def test_lifetime_never_resets():
    assert window_bounds("lifetime", 1e12) == (0, None)
    assert iso(None) is None


def test_the_remembered_window_follows_the_clock_both_ways():
    w = Windows()
    feb = ts(2026, 2, 10, 0, 0, 0)
    assert w.bounds("month", feb) == window_bounds("month", feb)
    assert w.bounds("month", feb - 20 * 86400) == window_bounds("month", feb - 20 * 86400)  # January
    assert w.bounds("month", feb) == (ts(2026, 2, 1, 0, 0, 0), ts(2026, 3, 1, 0, 0, 0))
    assert iso(ts(2026, 3, 1, 0, 0, 0)) == "2026-03-01T00:00:00Z"


def test_unknown_window():
    with pytest.raises(ValueError):
        window_bounds("fortnight", 0)
