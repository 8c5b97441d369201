"""The ledger schema is pinned: any change must come as an appended migration."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import sqlite3
from decimal import Decimal

import pytest

from thrifty.ledger import MIGRATIONS, SQLITE, LedgerRow, Migration, SQLiteLedger
from thrifty.ledger import apply_migrations as _apply
from thrifty.ledger.schema import CALL_COLUMNS, LEVER_COLUMNS, money_to_text

# (name, declared type, not null, default, primary key) as PRAGMA table_info reports them.
CALLS = [
    ("request_id", "TEXT", 1, None, 1),
    ("started_at", "DOUBLE PRECISION", 1, None, 0),
    ("finished_at", "DOUBLE PRECISION", 1, None, 0),
    ("tenant", "TEXT", 0, None, 0),
    ("feature", "TEXT", 0, None, 0),
    ("user_id", "TEXT", 0, None, 0),
    ("task", "TEXT", 0, None, 0),
    ("call_site", "TEXT", 0, None, 0),
    ("surface", "TEXT", 1, None, 0),
    ("provider", "TEXT", 0, None, 0),
    ("requested_model", "TEXT", 0, None, 0),
    ("served_model", "TEXT", 0, None, 0),
    ("tier", "TEXT", 0, None, 0),
    ("status", "INTEGER", 1, None, 0),
    ("error_type", "TEXT", 0, None, 0),
    ("prompt_tokens", "INTEGER", 1, "0", 0),
    ("cached_tokens", "INTEGER", 1, "0", 0),
    ("cache_write_tokens", "INTEGER", 1, "0", 0),
    ("cache_write_1h_tokens", "INTEGER", 1, "0", 0),
    ("completion_tokens", "INTEGER", 1, "0", 0),
    ("reasoning_tokens", "INTEGER", 1, "0", 0),
    ("cost_usd", "TEXT", 0, None, 0),
    ("latency_ms", "DOUBLE PRECISION", 1, "0", 0),
    ("ttft_ms", "DOUBLE PRECISION", 0, None, 0),
    ("stream", "INTEGER", 1, "0", 0),
    ("retries", "INTEGER", 1, "0", 0),
    ("cache", "TEXT", 1, "'miss'", 0),
    ("request_hash", "TEXT", 0, None, 0),
    ("baseline_cost_usd", "TEXT", 0, None, 0),
    ("saved_prompt_cache_usd", "TEXT", 0, None, 0),
    ("saved_response_cache_usd", "TEXT", 0, None, 0),
    ("accounting", "INTEGER", 0, None, 0),
    ("baseline_model", "TEXT", 0, None, 0),
    ("provider_discount_usd", "TEXT", 0, None, 0),
    ("lane", "TEXT", 1, "'interactive'", 0),
]
CALL_BODIES = [
    ("request_id", "TEXT", 1, None, 1),
    ("request_body", "TEXT", 0, None, 0),
    ("response_body", "TEXT", 0, None, 0),
]
CALL_LEVERS = [
    ("request_id", "TEXT", 1, None, 1),
    ("lever", "TEXT", 1, None, 2),
    ("saved_usd", "TEXT", 0, None, 0),
    ("estimated", "INTEGER", 1, "0", 0),
    ("note", "TEXT", 0, None, 0),
]
CALL_OUTCOMES = [
    ("request_id", "TEXT", 1, None, 0),
    ("outcome", "TEXT", 1, None, 0),
    ("reason", "TEXT", 0, None, 0),
    ("at", "DOUBLE PRECISION", 1, None, 0),
]
INDEXES = {
    "idx_calls_started_at": ["started_at"],
    "idx_calls_tenant": ["tenant", "started_at"],
    "idx_calls_feature": ["feature", "started_at"],
}

# Applied migrations are history: databases in the field have run them. Append new ones (and a
# line here); never edit one of these. The checksum catches an edit to an existing migration.
PINNED = [
    ("0001_calls", "0ac56abaadee47fdc1d5964742bf7e2d5f4df04dde147a85960e7233bab5092f"),
    ("0002_call_bodies", "8a9e08beb74343c221b0f9a8ba5ea1bb198513b8fa7d18e1ceb22aa9a7b663f2"),
    ("0003_lever_savings", "f93419f5a24767409c96035ca3ad8700be77d4a33c4f466e00c44d832eb8973c"),
    ("0004_call_levers", "d5bd6b265d118f369b8d3a07c5734748f5fc1f3383ec09683858915e8b0de186"),
    ("0005_batch_lane", "de190358c7e6735d4627f96f8dfba778f32c9e690eae85d04079401763e357f7"),
    ("0006_call_outcomes", "f51802d6125eeba7d9c24b05e0898366b52847a8f70c7136cfaa1f9e6d7412a7"),
    ("0007_shadow_outcomes", "fccb371bc05867549ade2321ba1f7501cb667f139cb2079eae11fb96c8422c5d"),
]


def apply_migrations(conn, migrations=MIGRATIONS):
    return _apply(conn, SQLITE, migrations)


def _checksum(m: Migration) -> str:
    return hashlib.sha256("\n;\n".join(m.statements).encode()).hexdigest()


def _table(conn: sqlite3.Connection, name: str) -> list[tuple]:
    return [tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({name})")]


def _indexes(conn: sqlite3.Connection, table: str) -> dict[str, list[str]]:
    out = {}
    for _, name, *_rest in conn.execute(f"PRAGMA index_list({table})"):
        if not name.startswith("sqlite_autoindex"):
            out[name] = [r[2] for r in conn.execute(f"PRAGMA index_info({name})")]
    return out


def _schema(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()


@pytest.fixture
def conn(tmp_path):
    c = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    yield c
    c.close()


def test_calls_table_is_exactly_the_pinned_schema(tmp_path):
    ledger = SQLiteLedger(str(tmp_path / "ledger.db"))
    ledger.start()
    ledger.close()
    c = sqlite3.connect(tmp_path / "ledger.db")
    assert _table(c, "calls") == CALLS
    assert _table(c, "call_bodies") == CALL_BODIES
    assert _table(c, "call_levers") == CALL_LEVERS
    assert _table(c, "call_outcomes") == CALL_OUTCOMES
    assert _indexes(c, "call_outcomes") == {"idx_call_outcomes_request": ["request_id", "at"]}
    assert _indexes(c, "calls") == INDEXES
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r[0] for r in c.execute("SELECT name FROM _migrations ORDER BY name")] == [m.name for m in MIGRATIONS]


def test_existing_migrations_are_never_edited():
    assert [(m.name, _checksum(m)) for m in MIGRATIONS[:len(PINNED)]] == PINNED
    assert len(MIGRATIONS) >= len(PINNED), "a migration was removed"


def test_new_migrations_are_appended_with_increasing_numbers():
    names = [m.name for m in MIGRATIONS]
    assert len(set(names)) == len(names)
    numbers = [int(n.split("_", 1)[0]) for n in names]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_every_row_field_has_a_column(conn):
    apply_migrations(conn)
    columns = {name for name, *_ in _table(conn, "calls")} | {name for name, *_ in _table(conn, "call_bodies")}
    mapped = dict(CALL_COLUMNS) | {"request_body": "request_body", "response_body": "response_body"}
    mapped["levers"] = "request_id"  # rows of call_levers, keyed by the call
    assert [name for name, *_ in _table(conn, "call_levers")] == list(LEVER_COLUMNS)
    fields = [f.name for f in dataclasses.fields(LedgerRow)]
    assert sorted(mapped) == sorted(fields), "a LedgerRow field has no column mapping"
    assert set(mapped.values()) <= columns, "a LedgerRow field has no column: add a migration"


def test_migrations_are_idempotent(conn):
    assert apply_migrations(conn) == [m.name for m in MIGRATIONS]
    before = _schema(conn)
    assert apply_migrations(conn) == []
    assert apply_migrations(conn) == []
    assert _schema(conn) == before
    assert conn.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


def test_an_older_database_gets_only_the_missing_migrations(conn):
    assert apply_migrations(conn, MIGRATIONS[:1]) == [MIGRATIONS[0].name]
    conn.execute("INSERT INTO calls (request_id, started_at, finished_at, surface, status) "
                 "VALUES ('old', 1, 2, 'openai', 200)")
    assert apply_migrations(conn) == [m.name for m in MIGRATIONS[1:]]
    assert _table(conn, "calls") == CALLS
    assert conn.execute("SELECT request_id FROM calls").fetchall() == [("old",)]


def test_rows_written_before_0004_read_back_as_the_old_accounting(tmp_path):
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path, isolation_level=None)
    apply_migrations(conn, MIGRATIONS[:3])
    conn.execute("INSERT INTO calls (request_id, started_at, finished_at, surface, status, cost_usd, "
                 "baseline_cost_usd, saved_prompt_cache_usd) VALUES ('old', 1, 2, 'openai', 200, '0.1', '0.3', '0.2')")
    conn.close()
    with SQLiteLedger(str(path)) as ledger:  # start() applies 0004
        (old,) = ledger.rows()
    assert old.accounting is None and old.levers == () and old.baseline_model is None
    assert old.saved_prompt_cache_usd == Decimal("0.2") and old.provider_discount_usd is None
    assert LedgerRow(**{**{f.name: getattr(old, f.name) for f in dataclasses.fields(old)},
                        "accounting": 2}).accounting == 2
    assert LedgerRow("new", 1, 2, None, None, None, None, None, "openai", None, None, None, None,
                     200, None).accounting == 2  # rows made now use the current definition


def test_a_failing_migration_applies_nothing(conn):
    broken = MIGRATIONS + (Migration("9999_broken", ("CREATE TABLE extra (a TEXT)", "THIS IS NOT SQL")),)
    with pytest.raises(sqlite3.OperationalError):
        apply_migrations(conn, broken)
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == []
    assert not conn.in_transaction
    assert apply_migrations(conn) == [m.name for m in MIGRATIONS]


def test_a_database_from_a_newer_version_is_reported(conn, caplog):
    apply_migrations(conn)
    conn.execute("INSERT INTO _migrations (name, applied_at) VALUES ('9000_future', 0)")
    with caplog.at_level(logging.WARNING, logger="thrifty.ledger"):
        assert apply_migrations(conn) == []
    assert "9000_future" in caplog.text


def test_two_ledgers_starting_on_one_file(tmp_path):
    a, b = SQLiteLedger(str(tmp_path / "l.db")), SQLiteLedger(str(tmp_path / "l.db"))
    a.start()
    b.start()
    a.close()
    b.close()
    c = sqlite3.connect(tmp_path / "l.db")
    assert c.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


@pytest.mark.parametrize("value, text", [
    (None, None),
    (Decimal("0.000125"), "0.000125"),
    (Decimal("1E-7"), "0.0000001"),
    (Decimal("0.10"), "0.10"),  # trailing zeros are kept: the text is the value as priced
    (Decimal("1.2E+3"), "1200"),
    (Decimal("-0.5"), "-0.5"),
    (Decimal("NaN"), None),
    (Decimal("Infinity"), None),
])
def test_money_is_stored_as_exact_plain_text(value, text):
    assert money_to_text(value) == text
    if text is not None:
        assert Decimal(text) == value
