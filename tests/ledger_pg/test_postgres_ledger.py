"""The PostgreSQL ledger: batched writes off the request path, exact money, the same answers as SQLite."""

from __future__ import annotations

import logging
import os
import threading
from decimal import Decimal

import psycopg
import pytest

from thrifty.errors import ConfigError
from thrifty.ledger import NULL, Ledger, RowFilter, SQLiteLedger, open_ledger, read_spill
from thrifty.ledger.postgres import PostgresLedger
from thrifty.ledger.schema import GROUP_COLUMNS

from tests.ledger_pg.rows import Logged, make_row


@pytest.fixture
def ledger(url, tmp_path):
    led = PostgresLedger(url, spool_dir=str(tmp_path / "spool"))
    led.start()
    yield led
    led.close()


def test_a_row_comes_back_as_written(ledger):
    row = make_row(1, baseline_cost_usd=Decimal("0.0002"), saved_prompt_cache_usd=Decimal("0.000077"))
    ledger.record(row)
    ledger.flush()
    assert ledger.rows() == [row]
    assert ledger.count() == 1


def test_many_threads_all_rows_present_after_flush(ledger):
    n_threads, per_thread = 8, 500

    def writer(t: int) -> None:
        for i in range(per_thread):
            ledger.record(make_row(f"{t}-{i}"))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ledger.flush()
    assert ledger.count() == n_threads * per_thread


def test_rows_are_written_in_batches(url, tmp_path):
    led = Logged(url, spool_dir=str(tmp_path / "spool"), batch_size=256)
    for i in range(1000):
        led.record(make_row(i))  # queued before the writer starts
    led.start()
    led.flush()
    assert led.attempts == [256, 256, 256, 232]
    assert led.count() == 1000
    led.close()


def test_record_does_not_wait_for_the_writer(url, tmp_path):
    gate = threading.Event()
    led = Logged(url, spool_dir=str(tmp_path / "spool"), gate=gate)
    led.start()
    for i in range(3000):
        led.record(make_row(i))  # would hang here if record() waited for the held write
    assert led.count() == 0
    gate.set()
    led.flush()
    assert led.count() == 3000
    led.close()


def test_close_drains_the_queue_and_a_closed_ledger_still_answers_queries(url, tmp_path):
    led = PostgresLedger(url, spool_dir=str(tmp_path / "spool"))
    led.start()
    for i in range(2000):
        led.record(make_row(i))
    led.close()
    assert led.count() == 2000
    assert list(led.spool.read()) == []


def test_close_of_a_ledger_never_started_writes_what_was_recorded(url, tmp_path):
    led = PostgresLedger(url, spool_dir=str(tmp_path / "spool"))
    for i in range(10):
        led.record(make_row(i))
    led.close()
    assert led.count() == 10


def test_a_transient_failure_is_retried(url, tmp_path):
    led = Logged(url, spool_dir=str(tmp_path / "spool"), fail=2, retry_backoff=0)
    led.start()
    led.record(make_row(1))
    led.flush()
    assert led.attempts == [1, 1, 1]
    assert led.written == ["req-1"]
    assert list(led.spool.read()) == []
    led.close()


def test_a_request_id_is_written_once(ledger, caplog):
    with caplog.at_level(logging.WARNING, logger="thrifty.ledger"):
        ledger.record(make_row(1, cost_usd=Decimal("1")))
        ledger.record(make_row(1, cost_usd=Decimal("2")))
        ledger.flush()
    assert [r.cost_usd for r in ledger.rows()] == [Decimal("1")]
    assert "already in the ledger" in caplog.text


def test_text_postgres_refuses_is_cleaned_and_the_row_kept(ledger, db):
    # PostgreSQL text cannot hold NUL, and no driver can encode a lone surrogate.
    ledger.record(make_row("nul", tenant="nul\x00byte", user="u\x00", feature="f\ud800x",
                           request_body='{"q": "\x00"}', error_type="e\x00"))
    ledger.flush()
    (row,) = ledger.rows()
    assert (row.tenant, row.user, row.feature, row.error_type, row.request_body) == \
        ("nul\ufffdbyte", "u\ufffd", "f\ufffdx", "e\ufffd", '{"q": "\ufffd"}')
    assert not os.path.exists(ledger.spill_path)


def test_a_row_the_database_rejects_goes_aside_not_to_the_spool(ledger):
    bad = make_row("bad", started_at=float("nan"), tenant=object())  # cannot be sent as a column
    for r in [make_row(1), bad, make_row(2), "not a row"]:
        ledger.record(r)
    ledger.flush()
    assert [r.request_id for r in ledger.rows()] == ["req-1", "req-2"]
    assert [r.request_id for r in read_spill(ledger.spill_path)] == ["req-bad"]
    assert "not a row" in open(ledger.spill_path).read()
    assert list(ledger.spool.read()) == []
    ledger.record(make_row(3))  # and the writer goes on writing to the database
    ledger.flush()
    assert ledger.count() == 3


def test_bodies_are_stored_only_when_provided(ledger, db):
    ledger.record(make_row(1))
    ledger.record(make_row(2, request_body='{"messages": []}'))
    ledger.record(make_row(3, request_body='{"q": 1}', response_body='{"a": "ü"}'))
    ledger.flush()
    assert db.execute("SELECT request_id, request_body, response_body FROM call_bodies ORDER BY 1").fetchall() \
        == [("req-2", '{"messages": []}', None), ("req-3", '{"q": 1}', '{"a": "ü"}')]
    assert {r.request_id: (r.request_body, r.response_body) for r in ledger.rows()} == {
        "req-1": (None, None), "req-2": ('{"messages": []}', None), "req-3": ('{"q": 1}', '{"a": "ü"}')}


# -- queries: the same answers as SQLite ------------------------------------------------------

def _mixed_rows():
    models = ["gpt-4o-mini", "claude-sonnet-4-5", None]
    costs = [Decimal("0.1"), Decimal("0.000000123"), None, Decimal("12345.678901234567890123"),
             Decimal("1E-18"), Decimal("0.10"), Decimal("-0.5")]
    rows = []
    for i in range(120):
        rows.append(make_row(
            i, feature=["search", "chat", None, "50% off"][i % 4], user=f"u{i % 5}" if i % 7 else None,
            tenant=["acme", "globex"][i % 2], served_model=models[i % 3], task=f"t{i % 3}",
            cost_usd=costs[i % len(costs)], baseline_cost_usd=costs[(i + 1) % len(costs)],
            saved_prompt_cache_usd=costs[(i + 2) % len(costs)], saved_response_cache_usd=None,
            prompt_tokens=i * 7, completion_tokens=i, stream=bool(i % 2),
            started_at=1_700_000_000.0 + (i // 3) * 0.001,  # ties, broken by request_id
            ttft_ms=None if i % 6 == 0 else i / 3, request_body='{"i": %d}' % i if i % 10 == 0 else None))
    # Ids whose order differs between byte order and a locale's collation.
    for rid in ["req-B", "req-a", "req-_x", "req-Ä", "req-%?"]:
        rows.append(make_row(rid, started_at=1_700_000_000.0))
    return rows


@pytest.fixture
def both(ledger, tmp_path):
    lite = SQLiteLedger(str(tmp_path / "ledger.db"))
    lite.start()
    for r in _mixed_rows():
        ledger.record(r)
        lite.record(r)
    ledger.flush()
    lite.flush()
    yield ledger, lite
    lite.close()


def test_rows_and_count_match_sqlite(both):
    pg, lite = both
    assert pg.count() == lite.count() == 125
    assert pg.rows() == lite.rows()
    assert [r.request_id for r in pg.rows()] == [r.request_id for r in lite.rows()]


@pytest.mark.parametrize("group_by", sorted(GROUP_COLUMNS))
def test_totals_match_sqlite(both, group_by):
    pg, lite = both
    assert pg.totals(group_by) == lite.totals(group_by)


@pytest.mark.parametrize("where, n", [
    (RowFilter(tenant="acme", since=1_700_000_000.01), 45),
    (RowFilter(feature="50% off"), 30),
    (RowFilter(request_ids=("req-1", "req-req-%?", "req-req-B")), 3),
    (RowFilter(request_ids=()), 0),
    (RowFilter(user=NULL), 18),
    (RowFilter(feature=NULL, tenant="acme"), 30),
    (RowFilter(stream=True, priced=True), 57),
    (RowFilter(priced=False), 17),
    (RowFilter(request_id_prefix="req-1"), 31),  # req-1, req-10..19, req-100..119
    (RowFilter(request_id_prefix="req-req-%"), 1),  # no wildcards: only the id that starts so
    (RowFilter(request_id_prefix="REQ-"), 0),  # case counts (SQLite's LIKE would ignore it)
    (RowFilter(request_id_prefix="req-req-Ä"), 1),
    (RowFilter(served_model="gpt-4o-mini", until=1_700_000_000.02), 25),
    (RowFilter(request_id="req-req-a", status=200, cache="miss", surface="openai"), 1),
])
def test_filters_match_sqlite(both, where, n):
    pg, lite = both
    assert len(lite.rows(where)) == lite.count(where) == n
    assert pg.rows(where) == lite.rows(where)
    assert pg.count(where) == n
    assert pg.totals("feature", where) == lite.totals("feature", where)


def test_totals_sum_money_exactly(ledger):
    costs = [Decimal("0.1")] * 10 + [Decimal("0.000000123")] * 1000 + [Decimal("12345.678901234567890123")]
    for i, cost in enumerate(costs):
        ledger.record(make_row(i, cost_usd=cost))
    ledger.record(make_row("unpriced", cost_usd=None))
    ledger.flush()
    [t] = ledger.totals("tenant")
    assert t["cost_usd"] == sum(costs, Decimal(0)) == Decimal("12346.678901234567890123") + Decimal("0.000123")
    assert isinstance(t["cost_usd"], Decimal)
    assert t["calls"] == 1012 and t["unpriced_calls"] == 1


def test_ten_dimes_make_exactly_one_dollar(ledger):
    for i in range(10):
        ledger.record(make_row(i, cost_usd=Decimal("0.1")))
    ledger.flush()
    assert ledger.totals("feature")[0]["cost_usd"] == Decimal("1")


def test_queries_run_read_only(ledger, db):
    ledger.record(make_row(1))
    ledger.flush()
    with ledger.driver.reader() as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("DELETE FROM calls")
    assert ledger.count() == 1


def test_sql_fragments_are_refused(ledger):
    with pytest.raises(TypeError, match="RowFilter"):
        ledger.rows("tenant = 'acme'")


def test_totals_refuses_an_unknown_column(ledger):
    with pytest.raises(ValueError, match="cannot group by"):
        ledger.totals("cost_usd; DROP TABLE calls")


# -- open_ledger and start-up -----------------------------------------------------------------

@pytest.mark.parametrize("url", ["postgresql://root@127.0.0.1:5432/thrifty", "postgres://u:p@db.example:6543/x",
                                 "POSTGRESQL://root@127.0.0.1/thrifty?sslmode=disable"])
def test_open_ledger_takes_postgres_urls_without_connecting(url, tmp_path):
    led = open_ledger(url, spool_dir=str(tmp_path / "spool"))
    assert isinstance(led, PostgresLedger) and isinstance(led, Ledger)
    assert "p@" not in repr(led)  # no password in what gets logged


def test_open_ledger_passes_options_and_leaves_out_unset_ones(tmp_path):
    led = open_ledger("postgresql://root@127.0.0.1/x", spool_dir=str(tmp_path), batch_size=512)
    assert led.batch_size == 512 and led.spool_dir == str(tmp_path)
    assert isinstance(open_ledger(str(tmp_path / "l.db"), spool_dir=None), SQLiteLedger)
    with pytest.raises(ConfigError, match="not an option of the sqlite ledger"):
        open_ledger(str(tmp_path / "l.db"), spool_dir="x")


def test_the_default_spool_depends_on_the_database():
    a = PostgresLedger("postgresql://root@127.0.0.1:5432/one")
    b = PostgresLedger("postgresql://root@127.0.0.1:5432/two")
    c = PostgresLedger("postgresql://root@127.0.0.1:5432/one?options=-csearch_path%3Dother")
    assert len({a.spool_dir, b.spool_dir, c.spool_dir}) == 3
    assert PostgresLedger("postgresql://root@127.0.0.1:5432/one?connect_timeout=9").spool_dir == a.spool_dir


@pytest.mark.parametrize("url, message", [
    ("postgresql://u:s3cret@[broken/db", "not a PostgreSQL URL"),
    ("postgresql://h/db?nonsense=1", "not a PostgreSQL URL"),
])
def test_bad_urls_are_config_errors_that_show_no_password(url, message):
    with pytest.raises(ConfigError, match=message) as info:
        open_ledger(url)
    assert info.value.key == "url"
    assert "s3cret" not in str(info.value)


def test_start_with_the_database_down_spools_unless_told_not_to(proxy, proxied_url, tmp_path):
    proxy.down()
    with pytest.raises(ConfigError, match="cannot reach the PostgreSQL ledger"):
        PostgresLedger(proxied_url, spool_dir=str(tmp_path / "a"), offline_start=False).start()
    led = PostgresLedger(proxied_url, spool_dir=str(tmp_path / "b"))
    led.start()  # the gateway serves; rows wait on disk
    led.record(make_row(1))
    led.flush()
    assert [r.request_id for r in led.spool.read()] == ["req-1"]
    proxy.up()
    led.flush()  # the database answers: migrations, then the spool
    assert led.count() == 1
    assert list(led.spool.read()) == []
    led.close()


def test_a_missing_database_is_reported_at_start(postgres_url, tmp_path):
    url = postgres_url.rsplit("/", 1)[0] + "/thrifty_no_such_db_here"
    with pytest.raises(ConfigError, match="does not exist"):
        PostgresLedger(url, spool_dir=str(tmp_path / "s"), offline_start=False).start()
