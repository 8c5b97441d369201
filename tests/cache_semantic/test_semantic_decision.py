"""Calibration math, AUC, metrics and online tightening, on synthetic scores (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from thrifty.cache.semantic import CalibrationError, DecisionPolicy, OperatingPoint, calibrate, metrics, roc_auc
from thrifty.cache.semantic.decision import (
    REJECTED,
    allowed_exceedances,
    binomial_cdf,
    min_negatives,
)


def test_binomial_cdf_matches_direct_sum():
    for n, p in ((10, 0.3), (50, 0.01), (200, 0.05)):
        for k in range(0, 12):
            direct = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))
            assert binomial_cdf(k, n, p) == pytest.approx(direct, rel=1e-9, abs=1e-12)
    assert binomial_cdf(-1, 10, 0.5) == 0.0
    assert binomial_cdf(10, 10, 0.5) == 1.0


def test_allowed_exceedances_is_the_largest_k_within_the_bound():
    n, a, c = 1323, 0.01, 0.9
    k = allowed_exceedances(n, a, c)
    assert binomial_cdf(k, n, a) <= 1 - c < binomial_cdf(k + 1, n, a)
    # In expectation mode it is the split-conformal rank.
    assert allowed_exceedances(n, a, None) == n - math.ceil((1 - a) * (n + 1))
    assert allowed_exceedances(min_negatives(a, c) - 1, a, c) == -1
    assert allowed_exceedances(min_negatives(a, c), a, c) == 0


def test_calibrate_leaves_exactly_k_negatives_above_the_threshold():
    rng = np.random.default_rng(0)
    neg = rng.normal(0.3, 0.1, 2000)
    pos = rng.normal(0.8, 0.1, 500)
    scores = np.r_[neg, pos]
    labels = np.r_[np.zeros(2000, int), np.ones(500, int)]
    op = calibrate(scores, labels, target_false_hit=0.01, confidence=0.9)
    assert (neg > op.threshold).sum() == op.allowed_exceedances
    assert op.negatives == 2000 and op.positives == 500
    assert op.calibration_false_hit_rate == pytest.approx(op.allowed_exceedances / 2000)
    assert 0.9 < op.calibration_recall <= 1.0


def test_calibrated_threshold_meets_the_target_on_fresh_negatives_with_the_stated_confidence():
    # Negatives ~ N(0, 0.1): the true false-hit rate of a threshold t is the normal tail beyond t.
    rng = np.random.default_rng(1)
    target, confidence, trials = 0.01, 0.9, 300
    misses = 0
    for _ in range(trials):
        neg = rng.normal(0.0, 0.1, 1000)
        op = calibrate(neg, np.zeros(1000, int), target_false_hit=target, confidence=confidence)
        true_rate = 0.5 * math.erfc(op.threshold / 0.1 / math.sqrt(2))
        misses += true_rate > target
    assert misses / trials <= 1 - confidence + 0.04  # binomial noise over 300 trials
    assert misses > 0  # and the bound is not vacuously loose


def test_calibration_refuses_too_few_negatives_and_bad_arguments():
    with pytest.raises(CalibrationError, match="need at least 230 negative pairs"):
        calibrate(np.linspace(0, 1, 100), np.zeros(100, int), target_false_hit=0.01, confidence=0.9)
    with pytest.raises(CalibrationError, match="target"):
        calibrate([0.1], [0], target_false_hit=0.0)
    with pytest.raises(CalibrationError, match="length"):
        calibrate([0.1, 0.2], [0])


def test_roc_auc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(2)
    s = np.round(rng.random(300), 2)  # many ties
    y = rng.integers(0, 2, 300)
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert roc_auc(s, y) == pytest.approx(brute)
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))


def test_metrics_counts():
    m = metrics([True, True, False, True, False], [1, 0, 1, 1, 0])
    assert (m.hits, m.true_hits, m.false_hits) == (3, 2, 1)
    assert m.precision == pytest.approx(2 / 3)
    assert m.recall == pytest.approx(2 / 3)
    assert m.false_hit_rate == pytest.approx(1 / 2)


class NoDigits:
    def consistent(self, query: str, cached: str) -> bool:
        return not any(ch.isdigit() for ch in query + cached)


def test_policy_accepts_above_threshold_and_verifier_vetoes():
    policy = DecisionPolicy(OperatingPoint(threshold=0.8), verifier=NoDigits())
    assert policy.accept("ns", 0.81, "how do I reset", "how to reset")
    assert not policy.accept("ns", 0.80, "how do I reset", "how to reset")  # strictly above
    assert not policy.accept("ns", 0.99, "order 12", "order 13")
    assert policy.score(0.99, "order 12", "order 13") == REJECTED
    assert policy.score(0.99) == 0.99  # no texts, no veto


def test_namespace_calibration_overrides_the_default_for_that_namespace_only():
    policy = DecisionPolicy(OperatingPoint(threshold=0.9, confidence=None))
    rng = np.random.default_rng(3)
    neg = rng.normal(0.2, 0.05, 500)
    op = policy.calibrate_namespace("faq", np.r_[neg, [0.9] * 50], np.r_[np.zeros(500, int), np.ones(50, int)])
    assert op.confidence is None
    assert policy.threshold("faq") == op.threshold < 0.5
    assert policy.threshold("other") == 0.9


def test_one_bad_hit_among_few_tightens_past_it():
    policy = DecisionPolicy(OperatingPoint(threshold=0.8, target_false_hit=0.01))
    for s in (0.95, 0.9, 0.86, 0.84, 0.83):
        policy.record_hit("ns", s)
    new = policy.record_bad_hit("ns", 0.84)
    assert new == pytest.approx(0.84)
    assert not policy.accept("ns", 0.84) and policy.accept("ns", 0.8401)
    assert policy.threshold("other") == 0.8  # only that namespace


def test_one_bad_hit_among_many_good_ones_moves_nothing():
    policy = DecisionPolicy(OperatingPoint(threshold=0.8, target_false_hit=0.01))
    for s in np.linspace(0.81, 0.99, 300):
        policy.record_hit("ns", float(s))
    assert policy.record_bad_hit("ns", 0.85) == 0.8


def test_repeated_bad_hits_tighten_monotonically_and_can_close_a_namespace():
    policy = DecisionPolicy(OperatingPoint(threshold=0.8))
    thresholds = []
    for s in (0.82, 0.9, 0.97, 0.999):
        policy.record_hit("ns", s)
        thresholds.append(policy.record_bad_hit("ns", s))
    assert thresholds == sorted(thresholds)
    assert thresholds[-1] == pytest.approx(0.999)


def test_policy_round_trips_through_a_dict():
    policy = DecisionPolicy(OperatingPoint(threshold=0.7, negatives=400))
    policy.calibrate_namespace("a", np.r_[np.linspace(0, 0.5, 300), [0.9] * 10], np.r_[np.zeros(300), np.ones(10)])
    policy.record_hit("b", 0.75)
    policy.record_bad_hit("b", 0.75)
    again = DecisionPolicy.from_dict(policy.to_dict())
    for ns in ("a", "b", "c"):
        assert again.threshold(ns) == policy.threshold(ns)
    assert again.default == policy.default


def test_default_policy_votes_where_answers_repeat_and_keeps_the_general_point_elsewhere():
    from thrifty.cache.semantic import GuardVerifier, default_policy, general_policy
    from thrifty.cache.semantic.decision import DEFAULT_VOTE_POINT, GENERAL_OPERATING_POINT

    policy = default_policy()
    assert isinstance(policy.verifier, GuardVerifier) and policy.vote is not None
    assert policy.threshold("any") == DEFAULT_VOTE_POINT["threshold"] and policy.default.target_false_hit == 0.01
    assert policy.threshold("any", voting=False) == GENERAL_OPERATING_POINT["threshold"]
    # the vote needs repeated answers: none yet, a few, or too few keys -> the cosine point decides
    assert not policy.voting(0, 0) and not policy.voting(100, 5) and not policy.voting(5, 4)
    assert policy.voting(100, 10) and policy.voting(10, 9)
    unguarded = default_policy(verifier=False)
    assert unguarded.verifier is None
    assert unguarded.threshold("any", voting=False) > policy.threshold("any", voting=False)
    # the default before the vote, kept to compare with
    old = general_policy()
    assert old.vote is None and old.threshold("any") == GENERAL_OPERATING_POINT["threshold"]
    assert general_policy(verifier=False).threshold("any") > old.threshold("any")


def test_the_vote_and_nearest_points_survive_a_round_trip():
    from thrifty.cache.semantic import default_policy

    policy = default_policy()
    policy.record_hit("ns", 0.97)
    policy.record_bad_hit("ns", 0.97)
    again = DecisionPolicy.from_dict(policy.to_dict())
    assert again.nearest == policy.nearest and again.vote == policy.vote
    assert again.threshold("ns") == policy.threshold("ns") == 0.97  # the floor binds on both scales
    assert again.threshold("ns", voting=False) == 0.97
    # an old saved vote policy (no "nearest"): the vote decides everywhere, as it did
    data = policy.to_dict()
    del data["nearest"]
    old = DecisionPolicy.from_dict(data)
    assert old.nearest is None and old.voting(0, 0)
