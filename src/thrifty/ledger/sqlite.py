"""The SQLite ledger: the embedded default, one file in WAL mode.

WAL lets queries read while the writer thread writes. `synchronous=NORMAL` makes a commit cost no
fsync (WAL is synced at checkpoints): a power cut can lose the last commits, never corrupt the
file, and a crash of the process loses nothing already committed. Rows not written end up in
`<path>.spill.jsonl` (the fallback and the rejected rows alike), for read_spill. Rows recorded
but not yet committed wait in the journal `<path>.journal/` (journal.py), so a kill -9 of the
process loses none.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

from thrifty.errors import ConfigError
from thrifty.ledger.codec import body_params, call_params, lever_params, unique_rows
from thrifty.ledger.driver import Dialect, Driver
from thrifty.ledger.journal import Journal
from thrifty.ledger.migrate import apply_migrations
from thrifty.ledger.schema import CALL_COLUMNS, EXACT, LEVER_COLUMNS, LedgerRow
from thrifty.ledger.sinks import SpillFile
from thrifty.ledger.writer import BufferedLedger

log = logging.getLogger("thrifty.ledger")

# No ON CONFLICT: write_batch inserts only ids it found new, under the write lock, so a
# conflict here would be a bug, and should fail loudly rather than be skipped.
_INSERT_CALL = (f"INSERT INTO calls ({', '.join(col for _, col in CALL_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in CALL_COLUMNS)})")
_INSERT_BODY = "INSERT INTO call_bodies (request_id, request_body, response_body) VALUES (?, ?, ?)"
_INSERT_LEVER = (f"INSERT INTO call_levers ({', '.join(LEVER_COLUMNS)}) "
                 f"VALUES ({', '.join('?' for _ in LEVER_COLUMNS)})")
_KNOWN_CHUNK = 900  # ids per "already written?" query: under the oldest builds' 999 variables


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A transaction that takes the file's write lock first (BEGIN IMMEDIATE): two processes
    cannot both start one, and none fails half-way on a lock upgrade. `conn` is in autocommit
    mode (isolation_level=None)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


SQLITE = Dialect(mark="?", money_sum="decimal_sum({})", text_order="", migration_transaction=_immediate)


class _DecimalSum:
    """SQL aggregate decimal_sum(text): the exact sum of money stored as text ("0" for none)."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = EXACT.add(self.total, Decimal(value))

    def finalize(self) -> str:
        return format(self.total, "f")


class SQLiteDriver(Driver):
    dialect = SQLITE
    name = "SQLite"

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self.path = self.target = path
        self.busy_timeout = busy_timeout

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout)
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def migrate(self) -> None:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            conn = self._open()
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    log.warning("ledger: %s is in journal mode %r, not WAL; queries will wait for writes",
                                self.path, mode)
                apply_migrations(conn, SQLITE)
            finally:
                conn.close()
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError("ledger", "url", f"cannot open the SQLite ledger {self.path!r}: {exc}") from exc

    def connect(self) -> sqlite3.Connection:
        return self._open()

    def write_batch(self, conn: sqlite3.Connection, rows: list[LedgerRow]) -> int:
        rows = unique_rows(rows)
        with _immediate(conn):
            known = _known_ids(conn, [r.request_id for r in rows])
            fresh = [r for r in rows if r.request_id not in known]
            conn.executemany(_INSERT_CALL, [call_params(r) for r in fresh])
            conn.executemany(_INSERT_BODY, body_params(fresh))
            conn.executemany(_INSERT_LEVER, lever_params(fresh))
        return len(fresh)

    def is_transient(self, exc: Exception) -> bool:
        # Locked, busy, disk I/O, disk full, cannot open: worth another try. Integrity,
        # binding and conversion errors come from the rows and would fail again.
        return isinstance(exc, sqlite3.OperationalError)

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        if not os.path.exists(self.path):
            raise ConfigError("ledger", "url", f"no ledger at {self.path!r} (start() creates it)")
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout)
        try:
            conn.execute("PRAGMA query_only = ON")  # a query never writes, whatever its bug
            conn.create_aggregate("decimal_sum", 1, _DecimalSum)
            conn.execute("BEGIN")  # one read transaction: one snapshot for all its statements
            yield conn
        finally:
            conn.close()


def _known_ids(conn: sqlite3.Connection, ids: list[Any]) -> set[Any]:
    known: set[Any] = set()
    for i in range(0, len(ids), _KNOWN_CHUNK):
        chunk = ids[i:i + _KNOWN_CHUNK]
        sql = f"SELECT request_id FROM calls WHERE request_id IN ({', '.join('?' * len(chunk))})"
        known.update(rid for (rid,) in conn.execute(sql, chunk))
    return known


class SQLiteLedger(BufferedLedger):
    """The buffered writer over one SQLite file, spilling to `<path>.spill.jsonl`."""

    def __init__(self, path: str | os.PathLike[str], *, batch_size: int = 256, flush_interval: float = 0.05,
                 max_attempts: int = 5, retry_backoff: float = 0.05, busy_timeout: float = 5.0,
                 journal: bool = True, journal_dir: str | None = None, journal_fsync: bool = False) -> None:
        path = os.fspath(path)
        if not path or path == ":memory:" or path.startswith("file:"):
            # Each connection to :memory: is a different database, and the writer and the
            # queries use different connections.
            raise ConfigError("ledger", "url", f"{path!r} is not a file path; "
                                               "the SQLite ledger needs a file (a temporary one will do)")
        super().__init__(SQLiteDriver(path, busy_timeout=busy_timeout), rejects=SpillFile(path + ".spill.jsonl"),
                         batch_size=batch_size, flush_interval=flush_interval, max_attempts=max_attempts,
                         retry_backoff=retry_backoff,
                         journal=Journal(journal_dir or path + ".journal", fsync=journal_fsync) if journal else None)
        self.path = path

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
