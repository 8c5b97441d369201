"""kNN voting over answer clusters, growing clusters, exploration and the stream evaluation
(issue 14), on small constructed vectors: no embedder needed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thrifty.cache.semantic import DecisionPolicy, OperatingPoint, SemanticCache
from thrifty.cache.semantic.index import NamespacedIndex
from thrifty.cache.semantic.semantic import answer_key
from thrifty.cache.semantic.store import InMemoryEntryStore, SemanticEntry
from thrifty.cache.semantic.stream import (
    StreamResult, calibrate_threshold, false_hit_bound, simulate, static_policy,
)
from thrifty.cache.semantic.vote import VoteWeights

DIM = 4


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def cache(threshold: float, weights: VoteWeights | None = VoteWeights(), **kw) -> SemanticCache:
    policy = DecisionPolicy(OperatingPoint(threshold=threshold), vote=weights)
    return SemanticCache(policy, index=NamespacedIndex(DIM), **kw)


def test_agreeing_neighbours_raise_the_score_and_a_close_rival_lowers_it():
    w = VoteWeights(k=8, agreement=0.1, rival=0.5)
    alone = w.vote([(1, 0.8, "a")])
    agreed = w.vote([(1, 0.8, "a"), (2, 0.7, "a"), (3, 0.6, "a")])
    rivalled = w.vote([(1, 0.8, "a"), (2, 0.78, "b")])
    assert alone.cluster == agreed.cluster == rivalled.cluster == "a"
    assert alone.score == pytest.approx(0.8)
    assert agreed.score == pytest.approx(0.8 + 0.2) and agreed.agreeing == 3
    assert rivalled.score == pytest.approx(0.8 - 0.39)
    assert w.vote([]).cluster is None


def test_entries_with_the_same_answer_vote_together():
    # The nearest entry (Y, 0.95) has a rival of another answer (X, 0.85) close behind; a second
    # entry of answer Y (0.90) agreeing is what lifts the vote over the threshold.
    q = unit(1, 0, 0, 0)
    y1, y2, x = unit(1, 0.33, 0, 0), unit(1, 0, 0.48, 0), unit(1, 0, 0, 0.62)
    weights = VoteWeights(k=8, agreement=0.2, rival=0.5)
    c = cache(0.6, weights)
    c.add("ns", "y1", "y1", b"Y", y1, answer_key="Y")
    c.add("ns", "y2", "y2", b"Y", y2, answer_key="Y")
    c.add("ns", "x", "x", b"X", x, answer_key="X")
    found = c.lookup_detail("ns", "q", q)
    assert found.entry is not None and found.entry.entry_id == "y1"
    assert found.score == pytest.approx(float(y1 @ q) + 0.2 - 0.5 * float(x @ q), abs=1e-3)
    # Without answer keys each entry stands alone: y2 becomes the rival and the vote fails.
    alone = cache(0.6, weights)
    for name, v in (("y1", y1), ("y2", y2), ("x", x)):
        alone.add("ns", name, name, name.encode(), v)
    assert alone.lookup_detail("ns", "q", q).entry is None


def test_a_confirmed_query_becomes_another_key_of_its_answer():
    c = cache(0.9, VoteWeights(k=1, agreement=0.0, rival=0.0))
    c.add("ns", "how do I reset my pin", "e1", b"answer", unit(1, 0, 0, 0), answer_key="A")
    middle, far = unit(1, 0.6, 0, 0), unit(1, 1.4, 0, 0)
    assert c.lookup_detail("ns", "far", far).entry is None  # cosine 0.58 to the entry
    confirmed = c.confirm("e1", "middle", middle)
    assert confirmed is not None and confirmed.cluster == "A" and confirmed.payload == b"answer"
    assert len(c) == 2
    hit = c.lookup_detail("ns", "far", far)  # 0.96 to the confirmed query
    assert hit.entry is not None and hit.entry.payload == b"answer"
    assert c.confirm("missing", "x", middle) is None


def test_exploration_sends_a_would_be_hit_upstream_and_a_different_answer_tightens():
    c = cache(0.5, VoteWeights(k=1, agreement=0.0, rival=0.0), explore=0.99, seed=1)
    c.add("ns", "a", "e1", b"A", unit(1, 0, 0, 0), answer_key="A")
    found = c.lookup_detail("ns", "q", unit(1, 0.2, 0, 0))
    assert found.entry is None and found.explored is not None and found.explored.entry_id == "e1"
    assert c.explored("ns", found.explored, found.score, same_answer=True) == pytest.approx(0.5)
    after = c.explored("ns", found.explored, found.score, same_answer=False)
    assert after == pytest.approx(found.score)  # 1 bad of 2 checks: the namespace closes up to it
    # Served hits that nobody checked do not dilute the checks.
    policy = DecisionPolicy(OperatingPoint(threshold=0.5))
    for _ in range(1000):
        policy.record_hit("ns", 0.9)
    for _ in range(20):
        policy.record_check("ns", 0.8, bad=False)
    assert policy.record_check("ns", 0.7, bad=True) == pytest.approx(0.7)  # 1 of 21 checks above 0.5 bad
    assert policy.record_check("ns", 0.95, bad=False) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        cache(0.5, explore=1.0)


def test_vote_and_explore_survive_a_saved_policy():
    policy = DecisionPolicy(OperatingPoint(threshold=0.7), vote=VoteWeights(k=5, agreement=0.1, rival=0.2),
                            explore=0.05)
    back = DecisionPolicy.from_dict(json.loads(json.dumps(policy.to_dict())))
    assert back.vote == policy.vote and back.explore == 0.05 and back.default.threshold == 0.7
    assert SemanticCache(back, index=NamespacedIndex(DIM)).explore == 0.05
    assert DecisionPolicy.from_dict(DecisionPolicy(0.5).to_dict()).vote is None


def test_the_answer_key_travels_with_the_entry():
    store = InMemoryEntryStore(keep_vectors=True)
    c = SemanticCache(DecisionPolicy(0.5), store=store, index=NamespacedIndex(DIM))
    c.add("ns", "t", "e1", b"p", unit(1, 0, 0, 0), answer_key=answer_key("Open  the app"))
    entry = store.get("e1")
    assert entry.answer_key == answer_key("open the APP") != answer_key("close the app")
    assert entry.cluster == entry.answer_key
    assert SemanticEntry("e2", "ns", "t", b"").cluster == "e2"
    rebuilt = SemanticCache(DecisionPolicy(0.5), store=store, index=NamespacedIndex(DIM))
    assert rebuilt.rebuild() == 1 and rebuilt._ids[next(iter(rebuilt._ids))][2] == entry.answer_key


def _two_intents():
    rng = np.random.default_rng(0)
    centres = {"A": unit(1, 0, 0, 0), "B": unit(0, 1, 0, 0)}
    texts, answers, vectors = [], [], []
    for answer, c in centres.items():
        for i in range(20):
            v = c + rng.normal(0, 0.15, DIM).astype(np.float32)
            texts.append(f"{answer}{i}"), answers.append(answer), vectors.append(v / np.linalg.norm(v))
    texts.append("odd"), answers.append(None), vectors.append(unit(0, 0, 1, 0))  # shares its answer with nobody
    return texts, answers, np.stack(vectors)


def test_the_stream_counts_by_the_documented_definitions():
    texts, answers, vectors = _two_intents()
    everything = simulate(texts, answers, vectors, static_policy(-1.0), candidates=1)
    # Threshold -1: everything after the first query is served the nearest entry's answer.
    # Only the first query is ever stored, so only its answer is ever available.
    assert everything.served == len(texts) - 1 and len(set(answers)) == 3
    assert everything.possible in (19, 0)  # the other 19 of the first query's intent (0 if it was "odd")
    assert everything.wrong == everything.served - everything.possible
    assert everything.false_hit_rate == pytest.approx(everything.wrong / everything.served)
    assert everything.recall == pytest.approx((everything.served - everything.wrong) / everything.possible)
    nothing = simulate(texts, answers, vectors, static_policy(1.0), candidates=1)
    assert nothing.served == 0 and nothing.recall == 0
    assert nothing.possible == len(texts) - 3  # the first A, the first B and "odd" had nothing cached


def test_exploration_calls_count_as_misses_in_the_stream():
    texts, answers, vectors = _two_intents()
    policy = DecisionPolicy(OperatingPoint(threshold=0.5), vote=VoteWeights())
    plain = simulate(texts, answers, vectors, policy, seed=3)
    explored = simulate(texts, answers, vectors, DecisionPolicy(OperatingPoint(threshold=0.5), vote=VoteWeights()),
                        seed=3, explore=0.5)
    assert explored.explored > 0
    assert explored.served + explored.explored <= plain.served + explored.explored
    assert explored.recall < plain.recall


def test_calibration_takes_the_lowest_threshold_that_meets_the_target_even_if_not_monotonic():
    rates = {0.1: 0.5, 0.2: 0.2, 0.3: 0.05, 0.4: 0.005, 0.5: 0.002, 0.6: 0.03, 0.7: 0.0}
    grid = sorted(rates)

    def run(t):
        wrong = round(rates[t] * 1000)
        return StreamResult(1000, 1000, 1000, wrong, 0, 0.5, rates[t], wrong / 1000)

    threshold, result = calibrate_threshold(run, grid, 0.01, coarse=2)
    assert threshold == 0.4 and result.false_hit_rate == 0.005  # coarse 0.5 met it, then 0.4 below it
    assert calibrate_threshold(run, grid, 0.003, coarse=2)[0] == 0.5  # 0.6 above it fails: not looked at
    assert calibrate_threshold(run, grid, 0.0001, coarse=2)[0] == 0.7  # nothing lower meets it: the top


def test_the_false_hit_bound_is_above_the_observed_rate():
    r = StreamResult(1000, 500, 230, 0, 0, 0.4, 0.0, 0.0)
    assert false_hit_bound(r, None) == 0.0
    assert false_hit_bound(r, 0.9) == pytest.approx(1 - 0.1 ** (1 / 230), rel=1e-3)  # no wrong: (1-p)^n = 0.1
    assert false_hit_bound(StreamResult(3000, 1500, 690, 0, 0, 0.4, 0.0, 0.0), 0.9, orders=3) == \
        pytest.approx(false_hit_bound(r, 0.9), rel=1e-3)


def test_the_stage_makes_a_query_with_good_feedback_another_key_and_evicts_on_bad():
    import asyncio

    from thrifty.cache.semantic_stage import SemanticCaching

    class Recorder:
        def __init__(self):
            self.calls = []

        def feedback(self, entry_id, bad):
            self.calls.append(("feedback", entry_id, bad))
            return 0.8

        def confirm(self, entry_id, text):
            self.calls.append(("confirm", entry_id, text))

    cache_ = Recorder()
    stage = SemanticCaching(cache_, accountant=None)
    stage._remember("req1", "tenant-a", "entry1", "how can I reset my pin")
    stage._remember("req2", "tenant-a", "entry2", "where is my card")
    assert asyncio.run(stage.feedback("tenant-b", "req1", bad=False)) is None  # another tenant's: unknown
    good = asyncio.run(stage.feedback("tenant-a", "req1", bad=False))
    assert good["evicted"] is False
    assert cache_.calls == [("feedback", "entry1", False), ("confirm", "entry1", "how can I reset my pin")]
    bad = asyncio.run(stage.feedback("tenant-a", "req2", bad=True))
    assert bad["evicted"] is True and cache_.calls[-1] == ("feedback", "entry2", True)
    assert asyncio.run(stage.feedback("tenant-a", "req2", bad=True)) is None  # forgotten after eviction
