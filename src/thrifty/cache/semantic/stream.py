"""The semantic cache on a stream of traffic: what `thrifty eval cache --stream` measures.

Queries arrive one at a time (in a random order, `seed`) at an empty cache that is the gateway's
own `SemanticCache`. A miss calls "upstream" and stores the query with its answer (the label:
for FAQ traffic, same intent = same answer; a query whose answer is None has an answer nobody
else shares, as CLINC150's out-of-scope queries). A served hit is right when the cached answer
is the query's. An exploration (probability `explore`) is not served: it costs an upstream call
and is counted as a miss; its fresh answer is compared with the candidate's and stored.
`feedback` is the share of served hits that a client reports on (good: the query becomes a key
of the answer's cluster; bad: the entry is evicted and the namespace tightens). `free_form`
replays the stream as free-form LLM traffic: answers are stored without an answer key (no two
byte-identical), so every entry is a cluster of one, while a hit is still judged by the label.

Definitions (the same for every policy and the static-cosine baseline):
- false-hit rate = wrong answers served / answers served (1 - precision of what the cache
  served); `false_hits_per_lookup` = wrong answers served / all lookups is reported too;
- recall = right answers served / lookups whose answer some entry in the cache already held
  (the hits that were possible); explorations and misses count against it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from thrifty.cache.semantic.decision import DecisionPolicy, OperatingPoint, binomial_cdf
from thrifty.cache.semantic.index import NamespacedIndex
from thrifty.cache.semantic.semantic import SemanticCache

NAMESPACE = "stream"


@dataclass(frozen=True)
class StreamResult:
    lookups: int
    possible: int  # lookups whose answer was already in the cache
    served: int
    wrong: int
    explored: int
    recall: float
    false_hit_rate: float  # wrong / served
    false_hits_per_lookup: float  # wrong / lookups

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def counted(cls, lookups: int, possible: int, served: int, wrong: int, explored: int) -> StreamResult:
        """The result of these counts, its rates worked out as the module doc defines them."""
        return cls(lookups, possible, served, wrong, explored,
                   recall=(served - wrong) / possible if possible else math.nan,
                   false_hit_rate=wrong / served if served else 0.0,
                   false_hits_per_lookup=wrong / lookups if lookups else math.nan)


def pooled(results: Sequence[StreamResult]) -> StreamResult:
    """Several runs (stream orders) counted as one."""
    return StreamResult.counted(sum(r.lookups for r in results), sum(r.possible for r in results),
                                sum(r.served for r in results), sum(r.wrong for r in results),
                                sum(r.explored for r in results))


def simulate(texts: Sequence[str], answers: Sequence[str | None], vectors: np.ndarray, policy: DecisionPolicy, *,
             seed: int = 0, explore: float = 0.0, feedback: float = 0.0, candidates: int = 4,
             free_form: bool = False) -> StreamResult:
    """One pass of the stream through a fresh cache with `policy` (see the module doc)."""
    rng = np.random.default_rng(seed)
    labels = [a if a is not None else f"\x00own:{i}" for i, a in enumerate(answers)]
    cache = SemanticCache(policy, candidates=candidates, index=NamespacedIndex(vectors.shape[1]),
                          explore=explore, seed=seed)
    held: set[str] = set()
    possible = served = wrong = explored = 0
    for n, i in enumerate(rng.permutation(len(texts))):
        text, label, vector = texts[i], labels[i], vectors[i]
        if label in held:
            possible += 1
        found = cache.lookup_detail(NAMESPACE, text, vector)
        if found.entry is not None:
            served += 1
            right = found.entry.payload.decode() == label
            wrong += not right
            if feedback and rng.random() < feedback:
                if right:
                    cache.confirm(found.entry.entry_id, text, vector)
                else:
                    cache.feedback(found.entry.entry_id, bad=True, score=found.score)
            continue
        if found.explored is not None:
            explored += 1
            cache.explored(NAMESPACE, found.explored, found.score, found.explored.payload.decode() == label)
        cache.add(NAMESPACE, text, f"q{n}", label.encode(), vector, answer_key="" if free_form else label)
        held.add(label)
    return StreamResult.counted(len(texts), possible, served, wrong, explored)


def false_hit_bound(result: StreamResult, confidence: float | None, orders: int = 1) -> float:
    """An upper bound on the false-hit rate at `confidence` (None: the observed rate).

    The counts of `orders` pooled runs of one stream are not independent draws, so the bound is
    taken on one run's worth of them (wrong and served divided by `orders`).
    """
    if confidence is None:
        return result.false_hit_rate
    n = max(1, round(result.served / orders))
    k = round(result.wrong / orders)
    lo, hi = 0.0, 1.0
    for _ in range(40):  # the p at which P(Binomial(n, p) <= k) = 1 - confidence
        mid = (lo + hi) / 2
        if binomial_cdf(k, n, mid) > 1.0 - confidence:
            lo = mid
        else:
            hi = mid
    return hi


def calibrate_threshold(run: Callable[[float], StreamResult], grid: Sequence[float], target: float, *,
                        confidence: float | None = None, orders: int = 1, coarse: int = 4
                        ) -> tuple[float, StreamResult]:
    """The lowest threshold of `grid` (ascending) whose run meets the target false-hit rate
    (its upper bound at `confidence`, see `false_hit_bound`).

    The false-hit rate falls as the threshold rises, but not monotonically at the top, where few
    answers are served (the cache's contents change with the threshold too), so this scans up
    from the bottom: every `coarse`-th point until one meets the target, then the points just
    below it. The top of the grid is the answer when nothing lower meets the target.
    """
    def meets(i: int) -> bool:
        results[i] = run(grid[i])
        return false_hit_bound(results[i], confidence, orders) <= target

    results: dict[int, StreamResult] = {}
    found = len(grid) - 1
    for i in range(0, len(grid), coarse):
        if meets(i):
            found = i
            for j in range(max(0, i - coarse + 1), i):
                if meets(j):
                    found = j
                    break
            break
    if found not in results:
        results[found] = run(grid[found])
    return float(grid[found]), results[found]


def static_policy(threshold: float) -> DecisionPolicy:
    """The baseline: serve the nearest entry when its cosine is above a fixed threshold."""
    return DecisionPolicy(OperatingPoint(threshold=threshold))


# ---------------------------------------------------------------- the evaluation

COSINE_GRID = tuple(round(0.60 + 0.005 * i, 3) for i in range(81))  # 0.60 .. 1.00
VOTE_GRID = tuple(round(0.40 + 0.005 * i, 3) for i in range(201))  # 0.40 .. 1.40


@dataclass(frozen=True)
class Stream:
    texts: list[str]
    answers: list[str | None]
    vectors: np.ndarray


def evaluate_stream(test: Stream, calibration: Stream | None, *, target: float, orders: int = 3,
                    confidence: float | None = 0.9,
                    verifier=None, explore: float = 0.0, feedback: float = 0.0, fixed: DecisionPolicy | None = None,
                    weights=None, progress: Callable[[int, int], None] | None = None,
                    free_form: bool = False) -> dict:
    """Policy (kNN vote, threshold chosen on `calibration`; the general cosine point where answers
    do not repeat, as in `default_policy`) vs a static cosine (threshold chosen on `calibration`
    the same way), both run on `test`; or `fixed` scored as it is. `free_form`: see `simulate`.

    Calibration runs use orders 0..orders-1, test runs orders 1000.. (other arrivals).
    """
    from thrifty.cache.semantic.decision import GENERAL_OPERATING_POINT, GENERAL_OPERATING_POINT_UNGUARDED
    from thrifty.cache.semantic.vote import VoteWeights

    nearest = OperatingPoint(**(GENERAL_OPERATING_POINT if verifier is not None else GENERAL_OPERATING_POINT_UNGUARDED))

    weights = VoteWeights() if weights is None else weights
    calibration_seeds = range(orders)
    test_seeds = range(1000, 1000 + orders)
    budget = [0, 0]

    def runs(stream: Stream, policy_of: Callable[[], DecisionPolicy], seeds, **kw) -> StreamResult:
        out = []
        for seed in seeds:
            out.append(simulate(stream.texts, stream.answers, stream.vectors, policy_of(), seed=seed,
                                free_form=free_form, **kw))
            budget[0] += 1
            if progress is not None:
                progress(min(budget[0], budget[1]), budget[1])
        return pooled(out)

    static_kw = dict(candidates=1)
    policy_kw = dict(explore=explore, feedback=feedback)
    report: dict = {"target_false_hit": target, "confidence": confidence, "orders": orders, "lookups": len(test.texts),
                    "explore": explore, "feedback": feedback, "free_form": free_form,
                    "definitions": {"false_hit_rate": "wrong answers served / answers served",
                                    "recall": "right answers served / lookups whose answer the cache held",
                                    "explorations": "counted as misses (an upstream call)"}}
    if fixed is not None:
        budget[1] = orders
        result = runs(test, lambda: _fresh(fixed), test_seeds, **policy_kw)
        report["policy"] = {"description": "as it is (nothing fitted)", "threshold": fixed.default.threshold,
                            "vote": fixed.vote.to_dict() if fixed.vote else None,
                            "nearest_threshold": fixed.nearest.threshold if fixed.nearest else None,
                            **result.to_dict()}
        return report
    if calibration is None:
        raise ValueError("a stream evaluation fits its thresholds on a calibration stream")
    budget[1] = orders * (len(COSINE_GRID) + len(VOTE_GRID)) // 4  # about: the scans stop at the target
    static_t, static_cal = calibrate_threshold(
        lambda t: runs(calibration, lambda: static_policy(t), calibration_seeds, **static_kw), COSINE_GRID, target,
        confidence=confidence, orders=orders)
    vote_t, vote_cal = calibrate_threshold(
        lambda t: runs(calibration, lambda: DecisionPolicy(OperatingPoint(threshold=t, target_false_hit=target),
                                                           verifier=verifier, vote=weights, nearest=nearest),
                       calibration_seeds, **policy_kw), VOTE_GRID, target, confidence=confidence, orders=orders)
    budget[1] = budget[0] + 2 * orders + orders * len(COSINE_GRID) // 4
    static_test = runs(test, lambda: static_policy(static_t), test_seeds, **static_kw)
    policy = DecisionPolicy(OperatingPoint(threshold=vote_t, target_false_hit=target, confidence=confidence,
                                           calibration_false_hit_rate=vote_cal.false_hit_rate,
                                           calibration_recall=vote_cal.recall),
                            verifier=verifier, vote=weights, nearest=nearest)
    vote_test = runs(test, lambda: _fresh(policy), test_seeds, **policy_kw)
    # The strongest static baseline: the best cosine cut on the test stream itself (in-sample,
    # observed rate), which flatters it; the policy's recall is compared with this one.
    best_t, best_test = calibrate_threshold(
        lambda t: runs(test, lambda: static_policy(t), test_seeds, **static_kw), COSINE_GRID, target)
    report["static_cosine"] = {"threshold": static_t, "calibration": static_cal.to_dict(), **static_test.to_dict()}
    report["static_cosine_best"] = {"threshold": best_t, "chosen": "in-sample on the test stream, observed rate",
                                    **best_test.to_dict()}
    report["policy"] = {"description": "kNN vote over answer clusters", "threshold": vote_t,
                        "vote": weights.to_dict(), "verifier": repr(verifier) if verifier else None,
                        "calibration": vote_cal.to_dict(), **vote_test.to_dict()}
    report["recall_ratio"] = vote_test.recall / best_test.recall if best_test.recall else math.nan
    report["fitted"] = policy
    return report


def _fresh(policy: DecisionPolicy) -> DecisionPolicy:
    """A copy without online state, so each run starts from the same policy."""
    return DecisionPolicy.from_dict(policy.to_dict(), verifier=policy.verifier)
