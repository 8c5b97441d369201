"""Cost per successful output on a constructed ledger whose answer is worked out by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from thrifty.ledger import LedgerRow, RowFilter, SQLiteLedger
from thrifty.ledger import breakdowns
from thrifty.ledger.outcomes import record_outcome, select_outcomes

from tests.ledger_pg.conftest import dbname, postgres_url, schema, url  # noqa: F401 (fixtures)


def _row(rid: str, t: float, cost: str, *, feature: str = "chat", user: str | None = "u1",
         h: str | None = None, status: int = 200, error: str | None = None, tier: str = "big") -> LedgerRow:
    return LedgerRow(request_id=rid, started_at=t, finished_at=t + 1, tenant="acme", feature=feature, user=user,
                     task=None, call_site=None, surface="openai", provider="p", requested_model="m",
                     served_model="m", tier=tier, status=status, error_type=error, cost_usd=Decimal(cost),
                     request_hash=h)


ROWS = [
    _row("r1", 1000, "0.010", h="h1"),            # asked again by u1 100 s later: regenerated
    _row("r2", 1100, "0.010", h="h1"),            # the next repeat is 3900 s later: outside the window
    _row("r3", 1200, "0", status=500, error="upstream"),  # errored
    _row("r4", 2000, "0.020", h="h4"),            # the client says bad
    _row("r5", 5000, "0.030", h="h1"),
    _row("r6.1", 5500, "0.001", tier="small", error="escalated: empty"),  # a discarded attempt
    _row("r6", 5500, "0.009"),                    # the answer from the tier above is fine
    _row("r7", 6000, "0.005", user="u2", h="h2"),  # repeated, but the client said ok
    _row("r8", 6100, "0.005", user="u2", h="h2"),
    _row("r9", 7000, "0.001", user=None, h="h3"),  # no user: a repeat says nothing
    _row("r10", 7010, "0.001", user=None, h="h3"),
    _row("s1", 1000, "0.100", feature="search", user="u9", h="h1"),  # same request, another user
]


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request, tmp_path):
    if request.param == "sqlite":
        led = SQLiteLedger(str(tmp_path / "ledger.db"))
    else:  # the same SQL on PostgreSQL (skipped with a reason when it is not running)
        from thrifty.ledger.postgres import PostgresLedger

        led = PostgresLedger(request.getfixturevalue("url"), spool_dir=str(tmp_path / "spool"))
    led.start()
    for r in ROWS:
        led.record(r)
    led.flush()
    record_outcome(led.driver, "r4", "bad", "wrong total", at=3000)
    record_outcome(led.driver, "r7", "ok", at=6200)
    yield led
    led.close()


def _by_key(groups):
    return {g["key"]: g for g in groups}


def test_cost_per_successful_output_counts_every_spend_over_the_outputs_that_worked(ledger):
    chat = _by_key(select_outcomes(ledger.driver, None, "feature"))["chat"]
    assert chat["outputs"] == 10 and chat["attempts"] == 1 and chat["escalated_attempts"] == 1
    assert chat["failed"] == {"errored": 1, "bad": 1, "regenerated": 1}
    assert chat["successful"] == 7
    assert chat["spend_usd"] == Decimal("0.092")  # the discarded attempt's 0.001 included
    assert chat["cost_per_call_usd"] == Decimal("0.009200000000")
    assert chat["cost_per_success_usd"] == Decimal("0.013142857143")  # 0.092 / 7


def test_the_same_request_from_another_user_is_no_regeneration(ledger):
    search = _by_key(select_outcomes(ledger.driver, None, "feature"))["search"]
    assert search["outputs"] == search["successful"] == 1
    assert search["cost_per_success_usd"] == search["cost_per_call_usd"] == Decimal("0.1")


def test_the_window_is_a_setting(ledger):
    chat = _by_key(select_outcomes(ledger.driver, None, "feature", window_s=4000))["chat"]
    assert chat["failed"]["regenerated"] == 2  # r2 -> r5 (3900 s) now counts too
    assert chat["successful"] == 6


def test_a_time_range_still_sees_the_repeat_that_came_after_it(ledger):
    (only,) = select_outcomes(ledger.driver, RowFilter(since=900, until=1050, feature="chat"))
    assert only["outputs"] == 1 and only["failed"]["regenerated"] == 1 and only["cost_per_success_usd"] is None


def test_a_later_verdict_supersedes_an_earlier_one(ledger):
    record_outcome(ledger.driver, "r4", "ok", at=4000)
    chat = _by_key(select_outcomes(ledger.driver, None, "feature"))["chat"]
    assert chat["failed"]["bad"] == 0 and chat["successful"] == 8


def test_tier_groups_put_the_discarded_attempt_on_the_tier_that_failed(ledger):
    tiers = _by_key(select_outcomes(ledger.driver, RowFilter(feature="chat"), "tier"))
    assert tiers["small"]["outputs"] == 0 and tiers["small"]["spend_usd"] == Decimal("0.001")
    assert tiers["small"]["cost_per_success_usd"] is None


def test_a_bad_outcome_name_is_refused(ledger):
    with pytest.raises(ValueError):
        record_outcome(ledger.driver, "r1", "meh")


def test_the_breakdowns_read_the_same_rows(ledger):
    bucket, points = breakdowns.spend_over_time(ledger.driver, None)
    assert bucket == 3600 and sum(p["usd"] for p in points) == Decimal("0.192")  # 0.092 + search's 0.100
    assert [(p["t"], p["usd"], p["calls"]) for p in points] == [  # hour 0: r1-r4 and s1; hour 1: the rest
        (0, Decimal("0.140"), 5), (3600, Decimal("0.052"), 6)]
    tiers = {t["tier"]: t for t in breakdowns.escalation_by_tier(ledger.driver, RowFilter(feature="chat"))}
    assert (tiers["small"]["calls"], tiers["small"]["escalated"]) == (1, 1)  # r6 started on small
    assert tiers["big"]["escalated"] == 0 and tiers["big"]["calls"] == 9


def test_request_types_come_from_stored_bodies_and_attempts_follow_their_call(tmp_path):
    from thrifty.api.dashboard import _request_type

    body = '{"model": "m", "messages": [{"role": "user", "content": "Classify this review as positive or negative: great"}]}'
    rows = [_row("c1", 10, "0.004"), _row("c1.1", 9, "0.001", error="escalated: empty"), _row("c2", 20, "0.002")]
    rows[0].request_body = body
    led = SQLiteLedger(str(tmp_path / "ledger.db"))
    led.start()
    try:
        for r in rows:
            led.record(r)
        led.flush()
        found = {g["key"]: g for g in breakdowns.request_types(led.driver, None, _request_type)}
    finally:
        led.close()
    assert _request_type("openai", {"messages": [{"role": "user", "content": "Classify this review as positive "
                                                  "or negative: great"}]}) == "classification"
    assert (found["classification"]["usd"], found["classification"]["calls"]) == (Decimal("0.005"), 1)
    assert (found["unknown"]["usd"], found["unknown"]["calls"]) == (Decimal("0.002"), 1)
