"""The database goes away and comes back: rows wait in the spool, on disk, and arrive in order,
none lost and none twice. The shared server is never stopped: the ledger reaches it through a
proxy that cuts and refuses connections."""

from __future__ import annotations

import time

from thrifty.ledger.spool import Spool

from tests.ledger_pg.rows import Logged, first_seen, make_row


def wait_for(check, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not met after {timeout}s"
        time.sleep(0.02)


def in_db(db) -> list[str]:
    return [r for (r,) in db.execute("SELECT request_id FROM calls")]


def spooled(spool_dir: str) -> list[str]:
    return [r.request_id for r in Spool(spool_dir).read()]


def test_down_then_back_every_row_arrives_once_in_order(proxy, proxied_url, db, tmp_path):
    spool_dir = str(tmp_path / "spool")
    led = Logged(proxied_url, spool_dir=spool_dir, batch_size=16, replay_batch_size=50,
                 reconnect_min=0.05, reconnect_max=0.2)
    led.start()
    ids = []

    def record(n: int) -> None:
        for _ in range(n):
            ids.append(f"req-{len(ids)}")
            led.record(make_row(len(ids) - 1))

    record(100)
    led.flush()
    assert len(in_db(db)) == 100

    proxy.down()
    record(500)
    # No flush: rows go to the spool as they come; they do not wait in memory.
    wait_for(lambda: len(spooled(spool_dir)) == 500, what="500 rows in the spool")
    assert led._queue.qsize() == 0
    assert spooled(spool_dir) == ids[100:]
    led.flush()  # tries the database, which is still down: flush returns, rows stay on disk
    assert len(in_db(db)) == 100

    proxy.up()
    record(300)  # recorded while the spool is replayed: they must come after it
    wait_for(lambda: len(in_db(db)) == 900, what="the spool replayed with no flush")
    led.flush()
    assert first_seen(led.written) == ids
    assert sorted(in_db(db)) == sorted(ids)
    assert spooled(spool_dir) == []
    assert led.rows() == [make_row(i) for i in range(900)]
    led.close()


def test_the_connection_drops_during_traffic(proxy, proxied_url, db, tmp_path):
    led = Logged(proxied_url, spool_dir=str(tmp_path / "spool"), batch_size=8,
                 reconnect_min=0.02, reconnect_max=0.1)
    led.start()
    for i in range(2000):
        led.record(make_row(i))
        if i % 400 == 399:  # cut every connection, now and then, and come back at once
            proxy.down()
            proxy.up()
    led.flush()
    ids = [f"req-{i}" for i in range(2000)]
    assert first_seen(led.written) == ids
    assert sorted(in_db(db)) == sorted(ids)
    led.close()


def test_close_while_down_keeps_every_row_for_the_next_start(proxy, proxied_url, db, tmp_path):
    spool_dir = str(tmp_path / "spool")
    led = Logged(proxied_url, spool_dir=spool_dir)
    led.start()
    proxy.down()
    for i in range(300):
        led.record(make_row(i))
    led.close()  # the database is down: close() leaves everything in the spool
    led.record(make_row("late"))  # after close(): also kept
    ids = [f"req-{i}" for i in range(300)] + ["req-late"]
    assert spooled(spool_dir) == ids
    assert in_db(db) == []

    proxy.up()
    again = Logged(proxied_url, spool_dir=spool_dir)
    again.record(make_row("new"))  # recorded before start: written after the spool
    again.start()
    again.flush()
    assert first_seen(again.written) == ids + ["req-new"]
    assert sorted(in_db(db)) == sorted(ids + ["req-new"])
    assert spooled(spool_dir) == []
    again.close()


def test_a_replay_cut_short_is_finished_by_the_next_start_without_duplicates(url, db, tmp_path):
    spool_dir = str(tmp_path / "spool")
    rows = [make_row(i) for i in range(200)]
    # A process spooled 200 rows and died half-way through replaying them: the first 120 are
    # in the database, and its spool segment is still there.
    old = Spool(spool_dir)
    old.append(rows)
    old.close()
    first = Logged(url, spool_dir=str(tmp_path / "other"))
    for r in rows[:120]:
        first.record(r)
    first.close()

    led = Logged(url, spool_dir=spool_dir)
    led.start()
    led.flush()
    assert led.written == [r.request_id for r in rows]  # all replayed; the first 120 changed nothing
    assert led.count() == 200
    assert led.rows() == rows
    assert spooled(spool_dir) == []
    led.close()


def test_two_processes_spooling_to_one_directory_each_keep_their_rows(proxy, proxied_url, db, tmp_path):
    spool_dir = str(tmp_path / "spool")
    a = Logged(proxied_url, spool_dir=spool_dir, reconnect_min=0.05, reconnect_max=0.1)
    b = Logged(proxied_url, spool_dir=spool_dir, reconnect_min=0.05, reconnect_max=0.1)
    a.start()
    b.start()
    proxy.down()
    for i in range(200):
        (a if i % 2 else b).record(make_row(i))
    a.flush()
    b.flush()
    assert sorted(spooled(spool_dir)) == sorted(f"req-{i}" for i in range(200))
    proxy.up()
    a.flush()
    b.flush()
    assert sorted(in_db(db)) == sorted(f"req-{i}" for i in range(200))
    assert spooled(spool_dir) == []
    assert set(a.written + b.written) == {f"req-{i}" for i in range(200)}
    a.close()
    b.close()


def test_a_gateway_killed_while_the_database_is_down_loses_nothing(proxy, proxied_url, db, tmp_path):
    import os
    import subprocess
    import sys

    spool_dir = str(tmp_path / "spool")
    proxy.down()
    code = (
        "import os, sys\n"
        "from thrifty.ledger.postgres import PostgresLedger\n"
        "from tests.ledger_pg.rows import make_row\n"
        "led = PostgresLedger(sys.argv[1], spool_dir=sys.argv[2])\n"
        "led.start()\n"
        "for i in range(500):\n"
        "    led.record(make_row(i))\n"
        "led.flush()\n"
        "os._exit(9)  # killed: no close(), no atexit\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", code, proxied_url, spool_dir], cwd=root, timeout=120,
                   env={**os.environ, "PYTHONPATH": root}, check=False)
    assert spooled(spool_dir) == [f"req-{i}" for i in range(500)]

    proxy.up()
    led = Logged(proxied_url, spool_dir=spool_dir)
    led.start()
    led.flush()
    assert led.written == [f"req-{i}" for i in range(500)]
    assert led.count() == 500 and spooled(spool_dir) == []
    led.close()


def test_a_database_that_stops_answering_costs_memory_only_for_a_connect_timeout(proxy, proxied_url, db, tmp_path):
    spool_dir = str(tmp_path / "spool")
    led = Logged(proxied_url, spool_dir=spool_dir, connect_timeout=2, reconnect_min=0.5, reconnect_max=1)
    led.start()
    led.record(make_row("before"))
    led.flush()
    proxy.hang()  # connections are cut; new ones are accepted and never answered
    started = time.monotonic()
    for i in range(300):
        led.record(make_row(i))
        time.sleep(0.005)
    wait_for(lambda: len(spooled(spool_dir)) == 300, timeout=30, what="300 rows in the spool")
    assert time.monotonic() - started < 15  # not stuck behind a hung connection
    assert led._queue.qsize() == 0
    proxy.up()
    led.flush(timeout=15)
    assert first_seen(led.written) == ["req-before"] + [f"req-{i}" for i in range(300)]
    assert len(in_db(db)) == 301
    led.close()
