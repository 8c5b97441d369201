"""The SQLite ledger: batched off-request-path writes, nothing lost, exact money."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from decimal import Decimal

import pytest

from thrifty.errors import ConfigError
from thrifty.ledger import Ledger, RowFilter, SQLiteLedger, open_ledger, read_spill

from tests.ledger_util import WatchedDriver, make_row


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "ledger.db")


@pytest.fixture
def ledger(db):
    led = SQLiteLedger(db)
    led.start()
    yield led
    led.close()


def recording(path, *, fail: int = 0, error: Exception | None = None, gate=None, **kw) -> SQLiteLedger:
    """A SQLite ledger whose driver counts write attempts and fails the first `fail` of them
    with `error` (a disk I/O error unless told)."""
    led = SQLiteLedger(path, **kw)
    led.driver = WatchedDriver(led.driver, fail=fail, gate=gate,
                               error=error or sqlite3.OperationalError("disk I/O error"))
    return led


def test_a_row_comes_back_as_written(ledger):
    row = make_row(1)
    ledger.record(row)
    ledger.flush()
    assert ledger.rows() == [row]
    assert ledger.count() == 1


def test_many_threads_all_rows_present_after_flush(ledger):
    n_threads, per_thread = 8, 1500
    stop_reading = threading.Event()
    read_errors: list[Exception] = []

    def writer(t: int) -> None:
        for i in range(per_thread):
            ledger.record(make_row(f"{t}-{i}"))

    def reader() -> None:  # WAL: queries run while the writer writes
        while not stop_reading.is_set():
            try:
                ledger.count()
            except Exception as exc:
                read_errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    read_thread = threading.Thread(target=reader)
    read_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ledger.flush()
    stop_reading.set()
    read_thread.join()
    assert read_errors == []
    assert ledger.count() == n_threads * per_thread
    ids = {r.request_id for r in ledger.rows()}
    assert ids == {f"req-{t}-{i}" for t in range(n_threads) for i in range(per_thread)}


def test_rows_are_written_in_batches(db):
    led = recording(db, batch_size=256)
    for i in range(1000):
        led.record(make_row(i))  # queued before the writer starts
    led.start()
    led.flush()
    assert led.driver.attempts == [256, 256, 256, 232]
    assert led.count() == 1000
    led.close()


def test_record_does_not_wait_for_the_writer(db):
    gate = threading.Event()
    led = recording(db, gate=gate)
    led.start()
    for i in range(5000):
        led.record(make_row(i))  # would hang here if record() waited for the stuck write
    assert led.count() == 0
    gate.set()
    led.flush()
    assert led.count() == 5000
    led.close()


def test_close_drains_the_queue(db):
    led = SQLiteLedger(db)
    led.start()
    for i in range(3000):
        led.record(make_row(i))
    led.close()
    assert SQLiteLedger(db).count() == 3000
    assert not os.path.exists(led.spill_path)


def test_close_of_a_ledger_never_started_writes_what_was_recorded(db):
    led = SQLiteLedger(db)
    for i in range(10):
        led.record(make_row(i))
    led.close()
    assert SQLiteLedger(db).count() == 10


def test_close_of_an_idle_unstarted_ledger_creates_nothing(db):
    SQLiteLedger(db).close()
    assert not os.path.exists(db)


def test_close_is_idempotent_and_flush_after_close_returns(ledger):
    ledger.record(make_row(1))
    ledger.close()
    ledger.close()
    ledger.flush()
    assert ledger.count() == 1


def test_flush_before_start_is_an_error(db):
    with pytest.raises(RuntimeError):
        SQLiteLedger(db).flush()


def test_record_after_close_never_raises_and_keeps_the_row(ledger, caplog):
    ledger.close()
    with caplog.at_level(logging.ERROR, logger="thrifty.ledger"):
        ledger.record(make_row("late"))
    assert [r.request_id for r in read_spill(ledger.spill_path)] == ["req-late"]
    assert "NOT written" in caplog.text


def test_totals_sum_money_exactly(ledger):
    costs = [Decimal("0.1")] * 10 + [Decimal("0.000000123")] * 1000 + [Decimal("12345.678901234567890123")]
    for i, cost in enumerate(costs):
        ledger.record(make_row(i, cost_usd=cost, feature="search"))
    ledger.record(make_row("unpriced", cost_usd=None, feature="search"))
    ledger.record(make_row("other", cost_usd=Decimal("0.30"), feature="chat"))
    ledger.flush()
    expected = sum(costs, Decimal(0))
    assert expected == Decimal("12346.678901234567890123") + Decimal("0.000123")
    by_feature = {t["key"]: t for t in ledger.totals("feature")}
    search = by_feature["search"]
    assert isinstance(search["cost_usd"], Decimal)
    assert search["cost_usd"] == expected
    assert search["calls"] == len(costs) + 1
    assert search["unpriced_calls"] == 1
    assert search["prompt_tokens"] == 100 * (len(costs) + 1)
    assert search["cached_tokens"] == 20 * (len(costs) + 1)
    assert search["cache_write_tokens"] == 5 * (len(costs) + 1)
    assert search["completion_tokens"] == 50 * (len(costs) + 1)
    assert by_feature["chat"]["cost_usd"] == Decimal("0.30")
    assert [t["key"] for t in ledger.totals("feature")] == ["search", "chat"]  # most expensive first


def test_ten_dimes_make_exactly_one_dollar(ledger):
    for i in range(10):
        ledger.record(make_row(i, cost_usd=Decimal("0.1")))
    ledger.flush()
    (total,) = ledger.totals("tenant")
    assert total["cost_usd"] == Decimal("1")
    assert sum([0.1] * 10) != 1.0  # why floats are not used


def test_money_round_trips_to_the_digit(ledger):
    ledger.record(make_row(1, cost_usd=Decimal("0.10")))
    ledger.record(make_row(2, cost_usd=Decimal("1E-9")))
    ledger.flush()
    assert [str(r.cost_usd) for r in ledger.rows()] == ["0.10", "1E-9"]
    assert ledger.rows()[1].cost_usd == Decimal("0.000000001")


def test_totals_group_by_user_and_filter(ledger):
    ledger.record(make_row(1, user="alice", tenant="a"))
    ledger.record(make_row(2, user="alice", tenant="b"))
    ledger.record(make_row(3, user=None, tenant="a"))
    ledger.flush()
    assert {t["key"]: t["calls"] for t in ledger.totals("user")} == {"alice": 2, None: 1}
    assert {t["key"]: t["calls"] for t in ledger.totals("user", RowFilter(tenant="a"))} == {"alice": 1, None: 1}
    with pytest.raises(ValueError, match="cannot group by"):
        ledger.totals("cost_usd; DROP TABLE calls")


def test_rows_where(ledger):
    for i in range(5):
        ledger.record(make_row(i, tenant="a" if i % 2 else "b"))
    ledger.flush()
    assert [r.request_id for r in ledger.rows(RowFilter(tenant="a", since=1_700_000_001.0))] == ["req-1", "req-3"]
    assert [r.request_id for r in ledger.rows(RowFilter(tenant="a", since=1_700_000_001.5))] == ["req-3"]
    assert [r.request_id for r in ledger.rows(RowFilter(user="u1"))] == [f"req-{i}" for i in range(5)]
    assert ledger.count(RowFilter(tenant="b")) == 3


def test_queries_use_a_read_only_connection(ledger):
    ledger.record(make_row(1))
    ledger.flush()
    with ledger.driver.reader() as conn, pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM calls")
    assert ledger.count() == 1


def test_bodies_are_stored_only_when_provided(ledger, db):
    ledger.record(make_row(1))
    ledger.record(make_row(2, request_body='{"messages": []}'))
    ledger.record(make_row(3, request_body='{"q": 1}', response_body='{"a": "ü"}'))
    ledger.flush()
    c = sqlite3.connect(db)
    assert c.execute("SELECT request_id, request_body, response_body FROM call_bodies ORDER BY 1").fetchall() \
        == [("req-2", '{"messages": []}', None), ("req-3", '{"q": 1}', '{"a": "ü"}')]
    bodies = {r.request_id: (r.request_body, r.response_body) for r in ledger.rows()}
    assert bodies == {"req-1": (None, None), "req-2": ('{"messages": []}', None),
                      "req-3": ('{"q": 1}', '{"a": "ü"}')}


def test_a_transient_failure_is_retried(db):
    led = recording(db, fail=2, retry_backoff=0)
    led.start()
    led.record(make_row(1))
    led.flush()
    assert led.driver.attempts == [1, 1, 1]
    assert led.count() == 1
    assert not os.path.exists(led.spill_path)
    led.close()


def test_a_database_that_keeps_failing_spills_rows_loudly(db, caplog):
    led = recording(db, fail=10**9, max_attempts=3, retry_backoff=0)
    led.start()
    rows = [make_row(i, cost_usd=Decimal("0.000000000000000001")) for i in range(3)]
    with caplog.at_level(logging.ERROR, logger="thrifty.ledger"):
        for r in rows:
            led.record(r)
        led.flush()
        assert len(led.driver.attempts) == 3  # bounded retries for the first batch
        led.record(make_row("next"))
        led.flush()
    assert len(led.driver.attempts) == 4  # while the database stays down, one try per batch
    assert "NOT written" in caplog.text and led.spill_path in caplog.text
    spilled = read_spill(led.spill_path)
    assert spilled == rows + [make_row("next")]
    assert spilled[0].cost_usd == Decimal("0.000000000000000001")
    led.close()
    # Once the database works again, the spill file can be recorded back.
    again = SQLiteLedger(db)
    again.start()
    for r in spilled:
        again.record(r)
    again.flush()
    assert sorted(again.rows(), key=lambda r: r.request_id) == sorted(spilled, key=lambda r: r.request_id)
    again.close()


def test_a_bad_row_does_not_sink_its_batch(db):
    led = SQLiteLedger(db)
    bad = make_row("bad", tenant=object())  # cannot be bound to a column
    for r in [make_row(1), bad, make_row(2)]:
        led.record(r)
    led.start()
    led.flush()
    assert [r.request_id for r in led.rows()] == ["req-1", "req-2"]
    assert [r.request_id for r in read_spill(led.spill_path)] == ["req-bad"]
    led.close()


def test_a_request_id_is_written_once(ledger, caplog):
    with caplog.at_level(logging.WARNING, logger="thrifty.ledger"):
        ledger.record(make_row(1, cost_usd=Decimal("1")))
        ledger.record(make_row(1, cost_usd=Decimal("2")))
        ledger.flush()
    assert [r.cost_usd for r in ledger.rows()] == [Decimal("1")]
    assert "already in the ledger" in caplog.text
    assert not os.path.exists(ledger.spill_path)


def test_the_writer_survives_a_bug(db):
    class Buggy(WatchedDriver):
        def write_batch(self, conn, rows):
            if any(r.request_id == "req-boom" for r in rows):
                raise RuntimeError("boom")
            return super().write_batch(conn, rows)

        def is_transient(self, exc):  # a bug in the driver: the error escapes the write path
            if "boom" in str(exc):
                raise ValueError("the driver tripped over it")
            return super().is_transient(exc)

    led = SQLiteLedger(db)
    led.driver = Buggy(led.driver)
    led.start()
    led.record(make_row("boom"))
    led.flush()
    led.record(make_row(1))
    led.flush()
    assert [r.request_id for r in led.rows()] == ["req-1"]
    assert [r.request_id for r in read_spill(led.spill_path)] == ["req-boom"]
    assert "unexpected error" in open(led.spill_path).read()
    led.close()


def test_something_that_is_not_a_row_does_not_stop_the_writer(ledger, caplog):
    ledger.record("not a row")  # type: ignore[arg-type]
    ledger.flush()
    ledger.record(make_row(1))
    ledger.flush()
    assert ledger.count() == 1
    with caplog.at_level(logging.WARNING, logger="thrifty.ledger"):
        assert read_spill(ledger.spill_path) == []
    assert "not a ledger row" in caplog.text
    assert "not a row" in open(ledger.spill_path).read()


def test_start_on_an_unusable_path_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot open the SQLite ledger"):
        SQLiteLedger(str(tmp_path / "file" / "ledger.db")).start()


def test_start_creates_the_directory(tmp_path):
    with SQLiteLedger(str(tmp_path / "a" / "b" / "ledger.db")) as led:
        led.record(make_row(1))
    assert SQLiteLedger(str(tmp_path / "a" / "b" / "ledger.db")).count() == 1


def test_querying_a_missing_ledger_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no ledger"):
        SQLiteLedger(str(tmp_path / "nothing.db")).count()
    assert not (tmp_path / "nothing.db").exists()


# -- open_ledger -------------------------------------------------------------------------------

def test_open_ledger_relative_sqlite_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    led = open_ledger("sqlite:///data/ledger.db")
    assert isinstance(led, SQLiteLedger) and isinstance(led, Ledger)
    assert led.path == "data/ledger.db"
    with led:
        led.record(make_row(1))
    assert (tmp_path / "data" / "ledger.db").exists()


@pytest.mark.parametrize("url, path", [
    ("sqlite:////var/lib/thrifty/ledger.db", "/var/lib/thrifty/ledger.db"),
    ("SQLITE:////x.db", "/x.db"),
    ("sqlite:///my%20ledger.db", "my ledger.db"),
    ("ledger.db", "ledger.db"),
    ("/srv/ledger.db", "/srv/ledger.db"),
    ("./rel/ledger.db", "./rel/ledger.db"),
])
def test_open_ledger_paths(url, path):
    led = open_ledger(url)
    assert isinstance(led, SQLiteLedger)
    assert led.path == path
    assert led.spill_path == path + ".spill.jsonl"


def test_open_ledger_expands_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert open_ledger("~/l.db").path == str(tmp_path / "l.db")
    assert open_ledger("sqlite:///~/l.db").path == str(tmp_path / "l.db")


@pytest.mark.parametrize("url, message", [
    ("mongodb://localhost/db", "unsupported scheme 'mongodb'"),
    ("mysql://localhost/db", "unsupported scheme 'mysql'"),
    ("", "empty"),
    ("   ", "empty"),
    (":memory:", "not a file path"),
    ("sqlite:///:memory:", "not a file path"),
    ("sqlite://", "names no file"),
    ("sqlite:///", "names no file"),
    ("sqlite://localhost/ledger.db", "no host"),
    ("sqlite:///ledger.db?mode=ro", "no query"),
])
def test_open_ledger_errors(url, message):
    with pytest.raises(ConfigError, match=message) as info:
        open_ledger(url)
    assert "sqlite" in str(info.value).lower()
    assert info.value.key == "url"
