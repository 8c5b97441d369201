"""The pure parts of the reliability policy: backoff bounds, retry-after, what is retried, config."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from thrifty.errors import (
    InvalidRequest, NotFound, RateLimited, UpstreamError, UpstreamTimeout, error_for_status,
)
from thrifty.providers.reliability import (
    Outcome, ReliabilityConfig, backoff_delay, classify, deadline_error, retry_after_seconds,
)


def test_full_jitter_stays_within_the_exponential_envelope():
    rng = random.Random(7)
    for retry in range(8):
        bound = min(8.0, 0.25 * 2 ** retry)
        delays = [backoff_delay(retry, 0.25, 8.0, rng) for _ in range(2000)]
        assert all(0.0 <= d <= bound for d in delays)
        # Full jitter spreads over the whole range, not around its top.
        assert min(delays) < 0.1 * bound and max(delays) > 0.9 * bound


def test_backoff_is_reproducible_with_a_seeded_rng_and_capped():
    a = [backoff_delay(i, 0.5, 2.0, random.Random(1)) for i in range(5)]
    b = [backoff_delay(i, 0.5, 2.0, random.Random(1)) for i in range(5)]
    assert a == b
    assert backoff_delay(10_000, 0.5, 2.0, random.Random(3)) <= 2.0  # no overflow for absurd retry counts


def test_retry_after_seconds_and_http_date():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("-4") == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now_wall=1445412480.0) == pytest.approx(10.0)
    assert retry_after_seconds("nan") is None


@pytest.mark.parametrize("err,outcome", [
    (error_for_status(500, "x"), Outcome.FAILED),
    (error_for_status(502, "x"), Outcome.FAILED),
    (error_for_status(503, "x"), Outcome.FAILED),
    (error_for_status(529, "x"), Outcome.FAILED),
    (error_for_status(501, "x"), Outcome.FINAL),  # not implemented: asking again will not help
    (UpstreamError("connection refused"), Outcome.FAILED),
    (UpstreamTimeout("slow"), Outcome.FAILED),
    (error_for_status(429, "x", retry_after="2"), Outcome.RATE_LIMITED),
    (error_for_status(408, "x"), Outcome.TRANSIENT),
    (error_for_status(409, "x"), Outcome.TRANSIENT),
    (error_for_status(400, "x"), Outcome.FINAL),
    (error_for_status(401, "x"), Outcome.FINAL),
    (error_for_status(404, "x"), Outcome.FINAL),
    (error_for_status(422, "x"), Outcome.FINAL),
    (deadline_error("d", 1.0), Outcome.DEADLINE),
])
def test_what_is_retried(err, outcome):
    assert classify(err, ReliabilityConfig()) is outcome


def test_timeouts_can_be_made_final_and_4xx_list_is_configurable():
    cfg = ReliabilityConfig(retry_on_timeout=False, retry_statuses=(408,))
    assert classify(UpstreamTimeout("slow"), cfg) is Outcome.FINAL
    assert classify(error_for_status(409, "x"), cfg) is Outcome.FINAL
    assert isinstance(error_for_status(400, "x"), InvalidRequest)
    assert classify(NotFound("x"), cfg) is Outcome.FINAL
    assert classify(RateLimited("x"), cfg) is Outcome.RATE_LIMITED


def test_config_is_strict():
    with pytest.raises(ValidationError):
        ReliabilityConfig(retries=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ReliabilityConfig(retry_statuses=(429,))
    with pytest.raises(ValidationError):
        ReliabilityConfig(retry_statuses=(500,))
    with pytest.raises(ValidationError):
        ReliabilityConfig(breaker={"failure_rate": 1.5})
    cfg = ReliabilityConfig.model_validate({"max_retries": 1, "deadline_s": None, "breaker": {"min_calls": 5}})
    assert cfg.max_retries == 1 and cfg.deadline_s is None and cfg.breaker.min_calls == 5
