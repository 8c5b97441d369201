"""Cost-quality curves and RouteLLM's router metrics (APGR, CPT), generalised from "% of calls to the
strong model" to cost.

RouteLLM (Ong et al., 2024) routes between a weak and a strong model and plots quality against
the share of calls sent to the strong model. With per-call costs that share is the normalised cost
`u = (cost - cost_weak) / (cost_strong - cost_weak)` (identical when both models cost the same
on every call), so here:

- PGR(q) = (q - q_weak) / (q_strong - q_weak): the share of the quality gap recovered;
- APGR = the integral of PGR over u in [0, 1] (RouteLLM: the area under the curve between the
  weak and strong models' areas, over 0..100% strong calls);
- CPT(x%) = the lowest cost at which the curve recovers x% of the gap, given as a percentage of
  always using the strong model's cost (and as u).

A method's curve is its points plus the two extremes (always weak, always strong: any router can
be mixed with those at random), sorted by cost, with dominated points dropped and consecutive
points joined linearly (sending a random share of traffic to either of two operating points
achieves every point between them).

Money here is float: these are summaries of labelled data read from JSON, reported as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True, slots=True)
class Point:
    cost: float  # mean USD per request
    quality: float  # mean score
    label: str = ""


@dataclass(frozen=True, slots=True)
class Anchors:
    """The weak and strong models' mean cost and quality on the same rows."""

    weak_cost: float
    weak_quality: float
    strong_cost: float
    strong_quality: float

    @property
    def has_tradeoff(self) -> bool:
        """The strong model is both better and dearer: the only case APGR and CPT mean anything."""
        return self.strong_quality > self.weak_quality and self.strong_cost > self.weak_cost

    def u(self, cost: float) -> float:
        return (cost - self.weak_cost) / (self.strong_cost - self.weak_cost)

    def pgr(self, quality: float) -> float:
        return (quality - self.weak_quality) / (self.strong_quality - self.weak_quality)


def frontier(points: Iterable[Point]) -> list[Point]:
    """Points sorted by cost, each strictly better than every cheaper one."""
    out: list[Point] = []
    for p in sorted(points, key=lambda p: (p.cost, -p.quality)):
        if not out or p.quality > out[-1].quality:
            out.append(p)
    return out


def quality_at(points: Sequence[Point], cost: float) -> float | None:
    """The best quality the curve reaches at mean cost <= `cost`; None if nothing is that cheap."""
    front = frontier(points)
    if not front or cost < front[0].cost:
        return None
    for a, b in zip(front, front[1:]):
        if cost < b.cost:
            return a.quality + (b.quality - a.quality) * (cost - a.cost) / (b.cost - a.cost)
    return front[-1].quality


def cost_at(points: Sequence[Point], quality: float) -> float | None:
    """The lowest mean cost at which the curve reaches `quality`; None if it never does."""
    front = frontier(points)
    if not front:
        return None
    if front[0].quality >= quality:
        return front[0].cost
    for a, b in zip(front, front[1:]):
        if b.quality >= quality:
            return a.cost + (b.cost - a.cost) * (quality - a.quality) / (b.quality - a.quality)
    return None


def with_anchors(points: Iterable[Point], anchors: Anchors) -> list[Point]:
    return [*points, Point(anchors.weak_cost, anchors.weak_quality, "always weak"),
            Point(anchors.strong_cost, anchors.strong_quality, "always strong")]


def apgr(points: Sequence[Point], anchors: Anchors) -> float | None:
    """Average performance gap recovered over normalised cost [0, 1]; None without a trade-off."""
    if not anchors.has_tradeoff:
        return None
    curve = with_anchors(points, anchors)
    cuts = sorted({0.0, 1.0, *(u for u in (anchors.u(p.cost) for p in frontier(curve)) if 0.0 < u < 1.0)})
    span = anchors.strong_cost - anchors.weak_cost
    values = []
    for u in cuts:
        q = quality_at(curve, anchors.weak_cost + u * span)
        values.append(anchors.pgr(anchors.weak_quality if q is None else q))
    return sum((values[i] + values[i + 1]) * (cuts[i + 1] - cuts[i]) / 2 for i in range(len(cuts) - 1))


def cpt(points: Sequence[Point], anchors: Anchors, fraction: float) -> dict[str, float] | None:
    """Cost at which `fraction` of the quality gap is recovered: % of the strong model's cost and u."""
    if not anchors.has_tradeoff:
        return None
    target = anchors.weak_quality + fraction * (anchors.strong_quality - anchors.weak_quality)
    cost = cost_at(with_anchors(points, anchors), target)
    if cost is None:
        return None
    return {"cost_pct_of_strong": 100.0 * cost / anchors.strong_cost, "u": anchors.u(cost)}


def beats(point: Point, baseline: Sequence[Point]) -> bool:
    """Whether `point` is strictly above the baseline's curve at its cost (or cheaper than all of it)."""
    # A hair of slack on cost: sums of the same costs in another order differ in the last bits.
    q = quality_at(baseline, point.cost * (1 + 1e-9))
    return q is None or point.quality > q + 1e-12
