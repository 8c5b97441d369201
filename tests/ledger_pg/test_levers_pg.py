"""Savings per lever in the PostgreSQL ledger: levers written in the calls row's COPY
transaction, through the spool while the database is down, and the same savings as SQLite."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from thrifty.contract import LeverSaving
from thrifty.ledger import NULL, RowFilter, SQLiteLedger, read_spill
from thrifty.ledger.postgres import PostgresLedger
from thrifty.ledger.schema import GROUP_COLUMNS
from thrifty.ledger.spool import Spool

from tests.ledger_util import check_savings, make_row, savings_rows


@pytest.fixture
def ledger(url, tmp_path):
    led = PostgresLedger(url, spool_dir=str(tmp_path / "spool"))
    led.start()
    yield led
    led.close()


@pytest.fixture
def both(ledger, tmp_path):
    lite = SQLiteLedger(str(tmp_path / "ledger.db"))
    lite.start()
    for r in savings_rows():
        ledger.record(r)
        lite.record(r)
    ledger.flush()
    lite.flush()
    yield ledger, lite
    lite.close()


def test_levers_come_back_with_their_row(ledger, db):
    rows = savings_rows()
    for r in rows:
        ledger.record(r)
    ledger.flush()
    assert ledger.rows() == rows
    assert db.execute("SELECT saved_usd, estimated, note FROM call_levers WHERE request_id = 'req-s2'").fetchall() \
        == [("0.000000000000000002", 1, "max_tokens capped")]


def test_savings_sum_exactly_on_postgres(both):
    pg, _ = both
    check_savings(pg)


@pytest.mark.parametrize("group_by", [None, *sorted(GROUP_COLUMNS)])
def test_savings_match_sqlite(both, group_by):
    pg, lite = both
    assert pg.savings(group_by=group_by) == lite.savings(group_by=group_by)


@pytest.mark.parametrize("where", [RowFilter(feature="chat"), RowFilter(priced=False), RowFilter(cache="exact"),
                                   RowFilter(since=1_700_000_005.0, user="u1"), RowFilter(task=NULL)])
def test_filtered_savings_match_sqlite(both, where):
    pg, lite = both
    assert pg.savings(where, "feature") == lite.savings(where, "feature")
    assert pg.savings(where) == lite.savings(where)


def test_a_request_id_written_again_adds_no_levers(ledger):
    ledger.record(make_row(1, levers=(LeverSaving("routing", Decimal("0.1")),)))
    ledger.flush()
    ledger.record(make_row(1, levers=(LeverSaving("exact_cache", Decimal("9")),)))
    ledger.record(make_row(2, levers=(LeverSaving("routing", Decimal("1")),)))
    ledger.record(make_row(2, cost_usd=Decimal("5"), levers=(LeverSaving("shaping", Decimal("2")),)))
    ledger.flush()
    assert {r.request_id: ([s.lever for s in r.levers], r.cost_usd) for r in ledger.rows()} == {
        "req-1": (["routing"], Decimal("0.000123")), "req-2": (["routing"], Decimal("0.000123"))}


def test_a_row_naming_a_lever_twice_is_set_aside_not_spooled(ledger):
    twice = make_row("twice", levers=(LeverSaving("routing", Decimal(1)), LeverSaving("routing", Decimal(2))))
    for r in (make_row(1), twice, make_row(2, levers=(LeverSaving("batch", Decimal("0.5")),))):
        ledger.record(r)
    ledger.flush()
    assert [r.request_id for r in ledger.rows()] == ["req-1", "req-2"]
    assert read_spill(ledger.spill_path) == [twice]
    assert list(ledger.spool.read()) == []


def test_levers_wait_in_the_spool_while_the_database_is_down(proxy, proxied_url, tmp_path):
    spool_dir = str(tmp_path / "spool")
    led = PostgresLedger(proxied_url, spool_dir=spool_dir, reconnect_min=0.05, reconnect_max=0.2)
    led.start()
    proxy.down()
    rows = savings_rows()
    for r in rows:
        led.record(r)
    deadline = time.monotonic() + 15
    while len(list(Spool(spool_dir).read())) < len(rows):
        assert time.monotonic() < deadline, "rows not spooled"
        time.sleep(0.02)
    assert list(Spool(spool_dir).read()) == rows  # levers and the legacy accounting, on disk
    proxy.up()
    led.flush(timeout=15)
    assert led.rows() == rows
    check_savings(led)
    led.close()
