"""Savings per lever in the SQLite ledger: levers stored with their call, read back, spilled and
summed exactly; rows of the old accounting kept out of the sums and counted."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal

import pytest

from thrifty.contract import LEVERS, LeverSaving
from thrifty.ledger import RowFilter, SQLiteLedger, read_spill
from thrifty.ledger.codec import row_to_json

from tests.ledger_util import WatchedDriver, check_savings, make_row, savings_rows


@pytest.fixture
def ledger(tmp_path):
    led = SQLiteLedger(str(tmp_path / "ledger.db"))
    led.start()
    yield led
    led.close()


def test_levers_come_back_with_their_row(ledger):
    row = make_row(1, baseline_cost_usd=Decimal("0.0005"), baseline_model="gpt-4o",
                   provider_discount_usd=Decimal("0.0001"),
                   levers=(LeverSaving("prompt_cache", Decimal("0.000077"), note="prompt_cache_key set"),
                           LeverSaving("routing", Decimal("0.0003")),
                           LeverSaving("shaping", None, estimated=True, note="max_tokens capped")))
    ledger.record(row)
    ledger.record(make_row(2))
    ledger.flush()
    first, second = ledger.rows()
    assert first == row and second.levers == ()
    assert first.accounting == 2 and first.saved_prompt_cache_usd is None
    assert [s.lever for s in first.levers] == ["routing", "shaping", "prompt_cache"]  # the order they act
    assert isinstance(first.levers[0].saved_usd, Decimal) and first.levers[1].saved_usd is None


def test_levers_are_kept_in_the_order_they_act():
    row = make_row(1, levers=[LeverSaving("zz_custom", Decimal(1)), LeverSaving("batch", Decimal(1)),
                              LeverSaving("exact_cache", Decimal(1))])
    assert isinstance(row.levers, tuple)
    assert [s.lever for s in row.levers] == ["exact_cache", "batch", "zz_custom"]
    assert LEVERS.index("exact_cache") < LEVERS.index("batch")


def test_levers_are_rows_of_call_levers_with_exact_money(ledger):
    ledger.record(make_row(1, levers=(LeverSaving("routing", Decimal("1E-18"), estimated=True),
                                      LeverSaving("batch", Decimal("NaN")))))
    ledger.flush()
    c = sqlite3.connect(ledger.path)
    assert c.execute("SELECT * FROM call_levers ORDER BY lever").fetchall() == [
        ("req-1", "batch", None, 0, None), ("req-1", "routing", "0.000000000000000001", 1, None)]


def test_a_request_id_written_again_adds_no_levers(ledger):
    ledger.record(make_row(1, levers=(LeverSaving("routing", Decimal("0.1")),)))
    ledger.flush()
    ledger.record(make_row(1, levers=(LeverSaving("exact_cache", Decimal("9")),)))  # a later batch
    ledger.record(make_row(2, levers=(LeverSaving("routing", Decimal("1")),)))
    ledger.record(make_row(2, levers=(LeverSaving("shaping", Decimal("2")),)))  # the same batch
    ledger.flush()
    assert {r.request_id: [s.lever for s in r.levers] for r in ledger.rows()} == {
        "req-1": ["routing"], "req-2": ["routing"]}


def test_a_row_naming_a_lever_twice_is_set_aside_and_the_others_written(ledger):
    twice = make_row("twice", levers=(LeverSaving("routing", Decimal(1)), LeverSaving("routing", Decimal(2))))
    for r in (make_row(1), twice, make_row(2, levers=(LeverSaving("batch", Decimal("0.5")),))):
        ledger.record(r)
    ledger.flush()
    assert [r.request_id for r in ledger.rows()] == ["req-1", "req-2"]
    assert read_spill(ledger.spill_path) == [twice]


def test_levers_survive_the_spill_file(tmp_path):
    led = SQLiteLedger(str(tmp_path / "l.db"), max_attempts=1)
    led.driver = WatchedDriver(led.driver, fail=10**9, error=sqlite3.OperationalError("disk I/O error"))
    led.start()
    rows = savings_rows()
    for r in rows:
        led.record(r)
    led.flush()
    led.close()
    spilled = read_spill(led.spill_path)
    assert spilled == rows
    assert [r.accounting for r in spilled] == [r.accounting for r in rows]  # None stays None
    again = SQLiteLedger(str(tmp_path / "l.db"))
    with again:
        for r in spilled:
            again.record(r)
    assert again.rows() == rows


def test_a_spilled_line_from_before_accounting_reads_as_the_old_one(tmp_path):
    line = row_to_json(make_row(1, baseline_cost_usd=Decimal("0.3"), saved_prompt_cache_usd=Decimal("0.2")))
    for key in ("accounting", "levers", "baseline_model", "provider_discount_usd"):
        del line[key]
    path = tmp_path / "old.spill.jsonl"
    path.write_text(json.dumps({**line, "_reason": "disk I/O error"}) + "\n")
    (old,) = read_spill(str(path))
    assert old.accounting is None and old.levers == () and old.saved_prompt_cache_usd == Decimal("0.2")


def test_savings_sum_exactly_with_estimates_apart_and_legacy_rows_counted(ledger):
    for r in savings_rows():
        ledger.record(r)
    ledger.flush()
    check_savings(ledger)


def test_savings_of_a_thousand_dimes_is_exact(ledger):
    for i in range(1000):
        ledger.record(make_row(i, cost_usd=Decimal("0.1"), baseline_cost_usd=Decimal("0.2"),
                               levers=(LeverSaving("routing", Decimal("0.1")),)))
    ledger.flush()
    (s,) = ledger.savings()
    assert s["saved_usd"] == s["levers"]["routing"]["saved_usd"] == Decimal("100") and s["calls"] == 1000


def test_savings_group_by_is_a_whitelist(ledger):
    ledger.record(make_row(1))
    ledger.flush()
    assert [g["key"] for g in ledger.savings(group_by="requested_model")] == ["fast"]
    with pytest.raises(ValueError, match="cannot group by"):
        ledger.savings(group_by="feature; DROP TABLE calls")
    with pytest.raises(TypeError, match="RowFilter"):
        ledger.savings("feature = 'x'")


def test_savings_only_counts_the_window(ledger):
    for r in savings_rows():
        ledger.record(r)
    ledger.flush()
    (early,) = ledger.savings(RowFilter(until=1_700_000_000.0 + 3.5))  # s1, s2, s3
    assert early["calls"] == 3 and early["saved_usd"] == Decimal("0.700000000000000002")
    (late,) = ledger.savings(RowFilter(since=1_700_000_000.0 + 6))  # s6..s10
    assert late["calls"] == 3 and late["legacy_calls"] == 2
