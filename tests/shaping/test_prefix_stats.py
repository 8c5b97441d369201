"""Per-prefix statistics: arrivals and gaps over a sliding window, call totals, bounds, threads."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from thrifty.contract.usage import Usage
from thrifty.shaping import GapCounts, PrefixStats
from tests.shaping.helpers import FakeClock


def test_gaps_are_classified_by_the_ttl_that_outlives_them():
    clock = FakeClock()
    stats = PrefixStats(clock)
    assert stats.sight("p") == GapCounts()
    for gap in (60, 300, 301, 3600, 3601):
        clock.advance(gap)
        stats.sight("p")
    assert stats.gaps("p") == GapCounts(short=2, mid=2, long=1)
    assert stats.gaps("unknown") == GapCounts()


def test_the_window_slides():
    clock = FakeClock()
    stats = PrefixStats(clock, window_s=3600)
    for _ in range(4):
        stats.sight("p")
        clock.advance(600)
    assert stats.gaps("p") == GapCounts(mid=3)
    clock.advance(3000)
    assert stats.gaps("p") == GapCounts(), "arrivals older than the window are forgotten"
    assert stats.get("p").sightings == 4, "all-time counts are kept"


def test_reuses_per_hour():
    clock = FakeClock()
    stats = PrefixStats(clock)
    assert stats.reuses_per_hour("p") == 0.0
    stats.sight("p")
    assert stats.reuses_per_hour("p") == 0.0, "a first arrival is no reuse"
    for _ in range(6):
        clock.advance(600)
        stats.sight("p")
    assert stats.reuses_per_hour("p") == pytest.approx(6.0)
    clock.advance(3600)
    assert stats.reuses_per_hour("p") == pytest.approx(3.0), "idle time lowers the rate"
    burst = PrefixStats(FakeClock())
    burst.sight("b")
    burst.sight("b")
    assert burst.reuses_per_hour("b") == pytest.approx(60.0), "spans under a minute count as a minute"


def test_observe_sums_tokens_money_and_hit_rate():
    clock = FakeClock()
    stats = PrefixStats(clock)
    stats.sight("p")
    stats.observe("p", Usage(input_tokens=20, cache_write_5m_tokens=2000, output_tokens=10),
                  Decimal("0.0076"), Decimal("-0.0015"))
    clock.advance(30)
    stats.sight("p")
    stats.observe("p", Usage(input_tokens=20, cache_read_tokens=2000, output_tokens=10),
                  Decimal("0.00081"), Decimal("0.0054"))
    stats.observe("p", Usage(input_tokens=20, cache_read_tokens=2000), None, None)
    snap = stats.get("p")
    assert snap.calls == 3 and snap.sightings == 2
    assert snap.hit_rate == pytest.approx(2 / 3)
    assert snap.cache_read_tokens == 4000 and snap.cache_write_5m_tokens == 2000 and snap.cache_write_1h_tokens == 0
    assert snap.prompt_tokens == 6060
    assert snap.read_share == pytest.approx(4000 / 6060)
    assert snap.cost_usd == Decimal("0.00841") and snap.saving_usd == Decimal("0.0039")
    assert snap.unpriced_calls == 1
    assert snap.idle_s == 0


def test_snapshot_orders_by_saving_and_the_number_of_prefixes_is_bounded():
    stats = PrefixStats(FakeClock(), max_prefixes=3)
    for pid, saving in (("a", "1"), ("b", "3"), ("c", "2")):
        stats.observe(pid, Usage(cache_read_tokens=10), Decimal(0), Decimal(saving))
    assert [s.prefix_id for s in stats.snapshot()] == ["b", "c", "a"]
    stats.sight("a")  # a is now the most recently used
    stats.sight("d")  # evicts b, the least recently used
    assert len(stats) == 3 and stats.get("b") is None
    assert {s.prefix_id for s in stats.snapshot()} == {"a", "c", "d"}


def test_arrivals_per_prefix_are_bounded():
    clock = FakeClock()
    stats = PrefixStats(clock, max_sightings=8)
    for _ in range(100):
        stats.sight("hot")
        clock.advance(1)
    assert stats.gaps("hot") == GapCounts(short=7)
    assert stats.get("hot").sightings == 100


def test_concurrent_updates_are_not_lost():
    stats = PrefixStats(max_prefixes=100)
    usage = Usage(input_tokens=1, cache_read_tokens=3)

    def work():
        for i in range(2000):
            pid = f"p{i % 10}"
            stats.sight(pid)
            stats.observe(pid, usage, Decimal("0.001"), Decimal("0.002"))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snaps = stats.snapshot()
    assert sum(s.calls for s in snaps) == 16_000
    assert sum(s.sightings for s in snaps) == 16_000
    assert sum(s.saving_usd for s in snaps) == Decimal("32.000")


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        PrefixStats(window_s=0)
    with pytest.raises(ValueError):
        PrefixStats(max_sightings=1)
