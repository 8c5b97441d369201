"""The circuit breaker's state machine and the 429 cool-down, on a fake clock."""

from __future__ import annotations

from thrifty.providers.reliability import BreakerConfig, Breakers


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def breakers(**kw):
    clock = FakeClock()
    cfg = BreakerConfig(**{"window_s": 10.0, "min_calls": 4, "failure_rate": 0.5, "cooldown_s": 5.0, **kw})
    return Breakers(cfg, clock=clock), clock


def test_stays_closed_below_the_minimum_number_of_calls():
    b, _ = breakers()
    for _ in range(3):
        b.failure("a")
    assert b.state("a") == "closed" and b.is_healthy("a") and b.allow("a")


def test_opens_on_the_failure_rate_over_the_window():
    b, _ = breakers()
    b.success("a"); b.success("a"); b.failure("a")
    assert b.state("a") == "closed"  # 1/3, and too few calls
    b.failure("a")  # 2/4 = 50%
    assert b.state("a") == "open"
    assert not b.is_healthy("a") and not b.allow("a")
    assert b.is_healthy("b")  # per deployment


def test_a_low_failure_rate_keeps_it_closed():
    b, _ = breakers()
    for _ in range(10):
        b.success("a")
    for _ in range(4):
        b.failure("a")
    assert b.state("a") == "closed"  # 4/14


def test_old_outcomes_slide_out_of_the_window():
    b, clock = breakers()
    for _ in range(3):
        b.failure("a")
    clock.advance(11.0)  # past the 10 s window
    b.failure("a")
    assert b.state("a") == "closed"  # only one failure counted now
    assert b._by_name["a"].window(clock()) == (1, 1)


def test_half_open_after_cooldown_then_closed_by_a_successful_probe():
    b, clock = breakers()
    for _ in range(4):
        b.failure("a")
    assert b.state("a") == "open"
    clock.advance(4.9)
    assert not b.allow("a")
    clock.advance(0.2)
    assert b.state("a") == "half_open" and b.is_healthy("a")
    assert b.allow("a")  # the probe
    assert not b.allow("a") and not b.is_healthy("a")  # one probe at a time
    b.success("a")
    assert b.state("a") == "closed" and b.allow("a")
    b.failure("a")  # a fresh window: one failure does not reopen it
    assert b.state("a") == "closed"


def test_a_failed_probe_opens_it_again_for_a_full_cooldown():
    b, clock = breakers()
    for _ in range(4):
        b.failure("a")
    clock.advance(5.0)
    assert b.allow("a")
    b.failure("a")
    assert b.state("a") == "open"
    clock.advance(4.0)
    assert not b.allow("a")
    clock.advance(1.0)
    assert b.allow("a")


def test_a_lost_probe_is_given_up_after_a_cooldown():
    b, clock = breakers(half_open_probes=1)
    for _ in range(4):
        b.failure("a")
    clock.advance(5.0)
    assert b.allow("a")  # this probe's outcome never comes back (client went away)
    clock.advance(5.0)
    assert b.allow("a")


def test_rate_limit_cooldown_is_separate_from_the_breaker():
    b, clock = breakers()
    b.cool("a", 30.0)
    assert not b.is_healthy("a") and not b.allow("a")
    assert b.state("a") == "closed" and b.cooling_for("a") == 30.0
    clock.advance(30.0)
    assert b.is_healthy("a") and b.cooling_for("a") == 0.0


def test_disabled_breaker_counts_nothing():
    b, _ = breakers(enabled=False)
    for _ in range(10):
        b.failure("a")
    assert b.state("a") == "closed" and b.allow("a")
