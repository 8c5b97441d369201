"""The SQLite ledger: the embedded default, one file in WAL mode.

WAL lets the queries in rows()/totals() read while the writer thread writes. `synchronous=NORMAL`
makes a commit cost no fsync (WAL is synced at checkpoints): a power cut can lose the last
commits, never corrupt the file, and a crash of the process loses nothing already committed.
"""

from __future__ import annotations

import decimal
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Iterator, Sequence
from urllib.parse import unquote, urlsplit

from thrifty.errors import ConfigError
from thrifty.ledger.base import BufferedLedger
from thrifty.ledger.schema import (CALL_COLUMNS, GROUP_COLUMNS, MIGRATIONS, MIGRATIONS_TABLE, LedgerRow,
                                   Migration, body_params, call_params, row_from_db, totals_from_rows)

log = logging.getLogger("thrifty.ledger")

_INSERT_CALL = (f"INSERT INTO calls ({', '.join(col for _, col in CALL_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in CALL_COLUMNS)}) ON CONFLICT (request_id) DO NOTHING")
_INSERT_BODY = ("INSERT INTO call_bodies (request_id, request_body, response_body) VALUES (?, ?, ?) "
                "ON CONFLICT (request_id) DO NOTHING")
_SELECT_ROWS = ("SELECT {cols}, b.request_body, b.response_body "
                "FROM (SELECT * FROM calls{cond}) AS c "
                "LEFT JOIN call_bodies AS b ON b.request_id = c.request_id "
                "ORDER BY c.started_at, c.request_id")
_SELECT_TOTALS = ("SELECT {col}, COUNT(*), decimal_sum(cost_usd), "
                  "SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END), SUM(prompt_tokens), "
                  "SUM(cached_tokens), SUM(cache_write_tokens), SUM(completion_tokens), "
                  "decimal_sum(baseline_cost_usd), decimal_sum(saved_prompt_cache_usd), "
                  "decimal_sum(saved_response_cache_usd) "
                  "FROM calls{cond} GROUP BY {col}")

# Additions at a precision no ledger reaches, and an error rather than a rounding if one did.
_EXACT = decimal.Context(prec=100, traps=[decimal.Inexact, decimal.InvalidOperation])


class _DecimalSum:
    """SQL aggregate decimal_sum(text): the exact sum of money stored as text."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = _EXACT.add(self.total, Decimal(value))

    def finalize(self) -> str:
        return format(self.total, "f")


def apply_migrations(conn: sqlite3.Connection,
                     migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Apply the pending migrations in one transaction; return the names applied.

    BEGIN IMMEDIATE takes the write lock first, so two processes starting on the same file
    cannot both apply a migration. `conn` must be in autocommit mode (isolation_level=None).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(MIGRATIONS_TABLE)
        applied = {name for (name,) in conn.execute("SELECT name FROM _migrations")}
        done = []
        for m in migrations:
            if m.name in applied:
                continue
            for statement in m.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (m.name, time.time()))
            done.append(m.name)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    unknown = applied - {m.name for m in migrations}
    if unknown:
        log.warning("ledger: the database has migrations this version does not know (%s); "
                    "it was written by a newer Thrifty", ", ".join(sorted(unknown)))
    if done:
        log.info("ledger: applied migrations %s", ", ".join(done))
    return done


class SQLiteLedger(BufferedLedger):
    """The ledger in one SQLite file; rows not written end up in `<path>.spill.jsonl`."""

    def __init__(self, path: str | os.PathLike[str], *, batch_size: int = 256, flush_interval: float = 0.05,
                 max_attempts: int = 5, retry_backoff: float = 0.05, busy_timeout: float = 5.0) -> None:
        path = os.fspath(path)
        if not path or path == ":memory:" or path.startswith("file:"):
            # Each connection to :memory: is a different database, and the writer and the
            # queries use different connections.
            raise ConfigError("ledger", "url", f"{path!r} is not a file path; "
                                               "the SQLite ledger needs a file (a temporary one will do)")
        super().__init__(spill_path=path + ".spill.jsonl", batch_size=batch_size,
                         flush_interval=flush_interval, max_attempts=max_attempts,
                         retry_backoff=retry_backoff)
        self.path = path
        self.busy_timeout = busy_timeout

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> "SQLiteLedger":
        """`sqlite:///relative/path.db` or `sqlite:////absolute/path.db` (SQLAlchemy's reading)."""
        parts = urlsplit(url)
        if parts.netloc:
            raise ConfigError("ledger", "url", f"{url!r}: a sqlite URL has no host; write "
                                               "sqlite:///relative.db or sqlite:////absolute.db")
        if parts.query or parts.fragment:
            raise ConfigError("ledger", "url", f"{url!r}: a sqlite URL takes no query or fragment")
        path = unquote(parts.path)[1:]  # drop the "/" that ends "sqlite://"
        if not path:
            raise ConfigError("ledger", "url", f"{url!r} names no file; write sqlite:///PATH")
        return cls(os.path.expanduser(path), **kw)

    def __repr__(self) -> str:
        return f"SQLiteLedger({self.path!r})"

    # -- backend hooks --------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout)
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _migrate(self) -> None:
        try:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            conn = self._open()
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    log.warning("ledger: %s is in journal mode %r, not WAL; queries will wait for writes",
                                self.path, mode)
                apply_migrations(conn)
            finally:
                conn.close()
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError("ledger", "url", f"cannot open the SQLite ledger {self.path!r}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        return self._open()

    def _write_batch(self, conn: sqlite3.Connection, rows: list[LedgerRow]) -> int:
        calls = [call_params(row) for row in rows]
        bodies = [b for b in map(body_params, rows) if b is not None]
        conn.execute("BEGIN")
        try:
            written = conn.executemany(_INSERT_CALL, calls).rowcount
            if bodies:
                conn.executemany(_INSERT_BODY, bodies)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return written

    def _disconnect(self, conn: sqlite3.Connection) -> None:
        conn.close()

    def _is_transient(self, exc: Exception) -> bool:
        # Locked, busy, disk I/O, disk full, cannot open: worth another try. Integrity,
        # binding and conversion errors come from the rows and would fail again.
        return isinstance(exc, sqlite3.OperationalError)

    # -- queries ---------------------------------------------------------------------------

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A short-lived read-only connection of the calling thread's own."""
        if not os.path.exists(self.path):
            raise ConfigError("ledger", "url", f"no ledger at {self.path!r} (start() creates it)")
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout)
        try:
            conn.execute("PRAGMA query_only = ON")  # `where` is caller-supplied SQL
            conn.create_aggregate("decimal_sum", 1, _DecimalSum)
            yield conn
        finally:
            conn.close()

    def rows(self, where: str = "", params: Sequence[Any] = ()) -> list[LedgerRow]:
        """Written rows, oldest first. `where` is a condition on `calls` with `?` placeholders,
        e.g. `rows("tenant = ? AND started_at >= ?", ("acme", t0))`; the end user's column is
        `user_id`. Rows still queued are not seen: flush() first to read your own writes.
        """
        sql = _SELECT_ROWS.format(cols=", ".join(f"c.{col}" for _, col in CALL_COLUMNS),
                                  cond=_condition(where))
        with self._reader() as conn:
            return [row_from_db(r[:-2], r[-2], r[-1]) for r in conn.execute(sql, tuple(params))]

    def totals(self, group_by: str, where: str = "", params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Per value of `group_by`: calls, the exact sum of known costs (`unpriced_calls` says
        how many had no price) and token sums; most expensive first."""
        col = GROUP_COLUMNS.get(group_by)
        if col is None:
            raise ValueError(f"cannot group by {group_by!r}; choose one of {', '.join(GROUP_COLUMNS)}")
        sql = _SELECT_TOTALS.format(col=col, cond=_condition(where))
        with self._reader() as conn:
            found = conn.execute(sql, tuple(params)).fetchall()
        return totals_from_rows(found)

    def count(self) -> int:
        with self._reader() as conn:
            return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


def _condition(where: str) -> str:
    return f" WHERE {where}" if where.strip() else ""
