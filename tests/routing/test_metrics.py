"""APGR, CPT and curves, on curves whose values are known."""

from __future__ import annotations

import pytest

from thrifty.routing.metrics import Anchors, Point, apgr, beats, cost_at, cpt, frontier, quality_at

A = Anchors(weak_cost=1.0, weak_quality=0.5, strong_cost=11.0, strong_quality=0.9)


def test_random_router_recovers_half_the_gap_on_average():
    line = [Point(1 + 10 * p, 0.5 + 0.4 * p) for p in (0, 0.25, 0.5, 0.75, 1)]
    assert apgr(line, A) == pytest.approx(0.5)
    assert cpt(line, A, 0.5) == pytest.approx({"cost_pct_of_strong": 100 * 6 / 11, "u": 0.5})
    assert cpt(line, A, 0.8)["u"] == pytest.approx(0.8)


def test_a_router_at_strong_quality_for_weak_cost_recovers_everything():
    assert apgr([Point(1.0, 0.9)], A) == pytest.approx(1.0)
    assert cpt([Point(1.0, 0.9)], A, 0.8) == pytest.approx({"cost_pct_of_strong": 100 / 11, "u": 0.0})


def test_one_operating_point_is_joined_to_the_extremes():
    # (u=0.2, PGR=0.75): area = 0.2*(0+0.75)/2 + 0.8*(0.75+1)/2 = 0.075 + 0.7
    assert apgr([Point(3.0, 0.8)], A) == pytest.approx(0.775)
    assert cpt([Point(3.0, 0.8)], A, 0.5)["u"] == pytest.approx(0.2 * 0.5 / 0.75)


def test_frontier_drops_dominated_points_and_interpolates():
    pts = [Point(5, 0.6), Point(2, 0.7), Point(8, 0.65), Point(9, 0.8)]
    assert frontier(pts) == [Point(2, 0.7), Point(9, 0.8)]
    assert quality_at(pts, 1.9) is None
    assert quality_at(pts, 5.5) == pytest.approx(0.75)
    assert quality_at(pts, 100) == 0.8
    assert cost_at(pts, 0.75) == pytest.approx(5.5)
    assert cost_at(pts, 0.6) == 2 and cost_at(pts, 0.81) is None


def test_no_tradeoff_means_no_apgr():
    cheap_and_best = Anchors(weak_cost=3.0, weak_quality=0.5, strong_cost=1.0, strong_quality=0.7)
    assert not cheap_and_best.has_tradeoff
    assert apgr([Point(1, 0.7)], cheap_and_best) is None and cpt([Point(1, 0.7)], cheap_and_best, 0.5) is None


def test_beats_means_above_the_baseline_at_the_same_cost():
    line = [Point(1, 0.5), Point(11, 0.9)]
    assert beats(Point(6, 0.71), line) and not beats(Point(6, 0.70), line)
    assert not beats(Point(11, 0.9), line)  # a tie is not a win
    assert beats(Point(0.5, 0.1), line)  # cheaper than anything the baseline can do
