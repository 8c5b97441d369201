"""PostgreSQL gets the very same MIGRATIONS as SQLite, once, however many processes start at once."""

from __future__ import annotations

import sqlite3
import threading

import psycopg

from thrifty.ledger import MIGRATIONS, SQLiteLedger
from thrifty.ledger import apply_migrations as _apply
from thrifty.ledger.postgres import POSTGRES, PostgresLedger

from tests.ledger_pg.conftest import _connect


def apply_migrations(conn, migrations=MIGRATIONS):
    return _apply(conn, POSTGRES, migrations)


def _pg_columns(db, schema: str, table: str) -> list[tuple]:
    return [(name, kind.upper(), nullable == "NO") for name, kind, nullable in db.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position", (schema, table))]


def _sqlite_columns(conn: sqlite3.Connection, table: str) -> list[tuple]:
    return [(name, kind, bool(notnull)) for _, name, kind, notnull, _, _ in conn.execute(f"PRAGMA table_info({table})")]


def test_the_schema_has_the_same_columns_as_sqlite(url, db, schema, tmp_path):
    PostgresLedger(url, spool_dir=str(tmp_path / "spool")).start()
    lite = SQLiteLedger(str(tmp_path / "ledger.db"))
    lite.start()
    lite.close()
    conn = sqlite3.connect(tmp_path / "ledger.db")
    for table in ("calls", "call_bodies", "call_levers", "batch_files", "batch_jobs", "batch_lines",
                  "batch_submissions"):
        # Names, order, declared types and NOT NULL: the same statements made the same tables.
        assert _pg_columns(db, schema, table) == _sqlite_columns(conn, table)
    pk = db.execute("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                    "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'calls'::regclass AND i.indisprimary").fetchall()
    assert pk == [("request_id",)]
    pk = db.execute("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                    "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'call_levers'::regclass AND i.indisprimary "
                    "ORDER BY a.attnum").fetchall()
    assert pk == [("request_id",), ("lever",)]
    indexes = {name for (name,) in db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s "
                                              "AND indexname LIKE 'idx_%%'", (schema,))}
    assert indexes == {name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_%'")}
    assert [n for (n,) in db.execute("SELECT name FROM _migrations ORDER BY name")] == [m.name for m in MIGRATIONS]


def test_processes_starting_at_once_apply_migrations_once(url, db, tmp_path):
    n = 8
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    ledgers = [PostgresLedger(url, spool_dir=str(tmp_path / f"spool{i}")) for i in range(n)]

    def start(led: PostgresLedger) -> None:
        barrier.wait()
        try:
            led.start()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(led,)) for led in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for led in ledgers:
        led.close()
    assert errors == []
    assert db.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)
    with _connect(url) as conn:
        assert apply_migrations(conn) == []


def test_an_older_database_gets_only_the_missing_migrations(url, db, tmp_path):
    with _connect(url) as conn:
        assert apply_migrations(conn, MIGRATIONS[:1]) == ["0001_calls"]
    led = PostgresLedger(url, spool_dir=str(tmp_path / "spool"))
    led.start()
    led.close()
    assert [n for (n,) in db.execute("SELECT name FROM _migrations ORDER BY name")] == [m.name for m in MIGRATIONS]


def test_a_failing_migration_applies_nothing(url, db):
    from thrifty.ledger import Migration

    broken = (*MIGRATIONS, Migration("9999_broken", ("CREATE TABLE x (a INTEGER)", "NOT SQL")))
    with _connect(url) as conn:
        try:
            apply_migrations(conn, broken)
        except psycopg.errors.SyntaxError:
            pass
        else:
            raise AssertionError("the broken migration was accepted")
    assert db.execute("SELECT to_regclass('calls'), to_regclass('x')").fetchone() == (None, None)
