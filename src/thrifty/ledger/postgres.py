"""The PostgreSQL ledger: one database shared by every gateway replica.

The same buffered writer as SQLite, composed with this driver and a SpoolSink: when the database
cannot be reached, rows go to a local spool (spool.py) as they come, not to memory, and are
replayed oldest first when it answers again (writer.py says how). The schema is the same
MIGRATIONS, applied unchanged under an advisory lock so that replicas starting together apply
each migration once. Inserts are idempotent on request_id, so a replay repeated after a crash or
a dropped connection writes nothing twice.

Text PostgreSQL refuses (NUL, lone surrogates) is replaced on record (codec.clean_row). Rows the
database still rejects (not the connection: the row itself) are not spooled, which would retry them for ever: they go to `<spool_dir>/rejected.jsonl`, readable
with `read_spill`.
"""

from __future__ import annotations

import hashlib
import os
import re
from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from thrifty.errors import ConfigError
from thrifty.ledger.codec import body_params, call_params, lever_params, unique_rows
from thrifty.ledger.driver import Dialect, Driver
from thrifty.ledger.journal import Journal
from thrifty.ledger.migrate import apply_migrations
from thrifty.ledger.schema import CALL_COLUMNS, LEVER_COLUMNS, LedgerRow
from thrifty.ledger.sinks import SpillFile, SpoolSink
from thrifty.ledger.spool import Spool
from thrifty.ledger.writer import BufferedLedger

_COLUMNS = ", ".join(col for _, col in CALL_COLUMNS)
# A batch is COPYed into a per-connection staging table, then moved with one INSERT: about twice
# the rows/s of a pipelined executemany. The staging table empties itself at each commit.
# RETURNING names the rows that were new: only theirs get bodies and levers.
_STAGE = "pg_temp.thrifty_calls_in"
_CREATE_STAGE = "CREATE TEMP TABLE IF NOT EXISTS thrifty_calls_in (LIKE calls) ON COMMIT DELETE ROWS"
_COPY_CALLS = f"COPY {_STAGE} ({_COLUMNS}) FROM STDIN"
_INSERT_CALLS = (f"INSERT INTO calls ({_COLUMNS}) SELECT {_COLUMNS} FROM {_STAGE} "
                 "ON CONFLICT (request_id) DO NOTHING RETURNING request_id")
# Straight into the table: a new row's levers cannot be there yet, and a row naming one lever
# twice fails its batch (the writer then sets that row aside), as it does on SQLite.
_COPY_LEVERS = f"COPY call_levers ({', '.join(LEVER_COLUMNS)}) FROM STDIN"
_INSERT_BODY = ("INSERT INTO call_bodies (request_id, request_body, response_body) VALUES (%s, %s, %s) "
                "ON CONFLICT (request_id) DO NOTHING")

# pg_advisory_xact_lock key for migrations: the first 8 bytes of sha256("thrifty.ledger.migrations").
_MIGRATION_LOCK = int.from_bytes(hashlib.sha256(b"thrifty.ledger.migrations").digest()[:8], "big", signed=True)

# SQLSTATE classes worth retrying: the connection (08), rollbacks (40: serialization, deadlock),
# resources (53: disk full, too many connections), operator intervention (57: shutdown, cancel),
# system errors (58). Anything else comes from the rows and would fail again.
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_TRANSIENT_STATES = frozenset({"55P03", "55006"})  # lock not available, object in use

# Connection settings unless the URL sets them: fail fast, and notice a dead server mid-write
# (keepalives when idle; tcp_user_timeout when unacknowledged data is outstanding).
_CONN_DEFAULTS = {"application_name": "thrifty-ledger", "keepalives": "1", "keepalives_idle": "10",
                  "keepalives_interval": "5", "keepalives_count": "3", "tcp_user_timeout": "10000"}
# A batch that takes longer than this is stuck (a lock, a stalled disk): give up and spool it.
_WRITE_TIMEOUT = "SET statement_timeout = '30s'"
# Retries of a batch stop after this long: while they go on, new rows wait in memory.
_RETRY_BUDGET_S = 1.0


@contextmanager
def _advisory(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """A transaction holding the migrations' advisory lock (released at its end)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        yield conn


# COLLATE "C": byte order, as SQLite compares text, whatever the database's locale.
# NUMERIC: exact, however many digits.
POSTGRES = Dialect(mark="%s", money_sum="COALESCE(SUM(({})::numeric), 0)", text_order=' COLLATE "C"',
                   migration_transaction=_advisory)


class PostgresDriver(Driver):
    dialect = POSTGRES
    name = "PostgreSQL"

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            detail = _one_line(exc)
            password = _password(url)
            if password:  # the message may quote the URL
                detail = detail.replace(password, "***")
            raise ConfigError("ledger", "url", f"not a PostgreSQL URL: {detail}") from None
        self.params = dict(params)  # as given: what names the database (and the default spool)
        self.target = (f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"
                       f"/{params.get('dbname') or params.get('user') or ''}")
        params.setdefault("connect_timeout", str(max(1, round(connect_timeout))))
        for key, value in _CONN_DEFAULTS.items():
            params.setdefault(key, value)
        self._conninfo = make_conninfo(**params)
        self._migrated = False  # set by migrate(), or by the first connect() after an offline start

    def _connect_raw(self, autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(self._conninfo, autocommit=autocommit)

    def migrate(self) -> None:
        try:
            with self._connect_raw() as conn:
                apply_migrations(conn, POSTGRES)
            self._migrated = True
        except psycopg.OperationalError as exc:
            raise ConnectionError(_one_line(exc)) from exc
        except psycopg.Error as exc:
            raise ConfigError("ledger", "url", f"cannot prepare the PostgreSQL ledger at {self.target}: "
                                               f"{_one_line(exc)}") from exc

    def connect(self) -> psycopg.Connection:
        conn = self._connect_raw()
        try:
            if not self._migrated:
                apply_migrations(conn, POSTGRES)
                self._migrated = True
            conn.execute(_WRITE_TIMEOUT)
            conn.execute(_CREATE_STAGE)
        except psycopg.Error as exc:
            conn.close()
            if self.is_transient(exc):
                raise
            raise ConnectionError(f"the ledger tables are not usable: {_one_line(exc)}") from exc
        return conn

    def write_batch(self, conn: psycopg.Connection, rows: list[LedgerRow]) -> int:
        rows = unique_rows(rows)  # one of each id staged, so RETURNING maps back to rows
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(_COPY_CALLS) as copy:
                for row in rows:
                    copy.write_row(call_params(row))
            cur.execute(_INSERT_CALLS)
            new = {rid for (rid,) in cur.fetchall()}
            fresh = [r for r in rows if r.request_id in new]
            levers = lever_params(fresh)
            if levers:
                with cur.copy(_COPY_LEVERS) as copy:
                    for values in levers:
                        copy.write_row(values)
            bodies = body_params(fresh)
            if bodies:
                cur.executemany(_INSERT_BODY, bodies)
        return len(fresh)

    def is_transient(self, exc: Exception) -> bool:
        if isinstance(exc, (psycopg.InterfaceError, OSError)):
            return True
        if isinstance(exc, psycopg.Error):
            state = exc.sqlstate
            if state is None:  # no answer from the server: the connection failed or was lost
                return isinstance(exc, psycopg.OperationalError)
            return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
        return False

    @contextmanager
    def reader(self) -> Iterator[psycopg.Connection]:
        with self._connect_raw(autocommit=False) as conn:
            conn.read_only = True  # a query never writes, whatever its bug
            # One snapshot for every statement of the query.
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            yield conn


class PostgresLedger(BufferedLedger):
    """The buffered writer over PostgreSQL; rows the database cannot take now wait in a local spool.

    `url` is a libpq URL, `postgresql://user:password@host:5432/dbname?sslmode=require`.
    `spool_dir` must be local to this machine and serve only this database; by default it is
    under $XDG_STATE_HOME (~/.local/state)/thrifty/ledger-spool/, named after the database.
    `offline_start=False` makes start() raise ConfigError when the database cannot be reached,
    instead of starting with the spool. Rows recorded but not yet committed (or spooled) wait in
    the journal, `<spool_dir>/journal/` unless `journal_dir` says otherwise (journal.py).
    """

    def __init__(self, url: str, *, spool_dir: str | None = None, batch_size: int = 256,
                 flush_interval: float = 0.05, max_attempts: int = 3, retry_backoff: float = 0.05,
                 connect_timeout: float = 5.0, reconnect_min: float = 0.25, reconnect_max: float = 5.0,
                 replay_batch_size: int = 1024, offline_start: bool = True, sync_spool: bool = True,
                 orphan_check_interval: float = 30.0, journal: bool = True, journal_dir: str | None = None,
                 journal_fsync: bool = False) -> None:
        driver = PostgresDriver(url, connect_timeout=connect_timeout)
        self.url = url
        self.target = driver.target
        self.spool_dir = os.fspath(spool_dir) if spool_dir else _default_spool_dir(driver.params)
        self.spool = Spool(self.spool_dir, sync=sync_spool)
        rejects = SpillFile(os.path.join(self.spool_dir, "rejected.jsonl"))
        super().__init__(driver, rejects=rejects, fallback=SpoolSink(self.spool, rejects),
                         batch_size=batch_size, flush_interval=flush_interval, max_attempts=max_attempts,
                         retry_backoff=retry_backoff, retry_budget=_RETRY_BUDGET_S,
                         reconnect_min=reconnect_min, reconnect_max=reconnect_max,
                         replay_batch_size=replay_batch_size, orphan_check_interval=orphan_check_interval,
                         offline_start=offline_start,
                         journal=Journal(journal_dir or os.path.join(self.spool_dir, "journal"),
                                         fsync=journal_fsync) if journal else None)

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> "PostgresLedger":
        if not re.match(r"^postgres(?:ql)?://", url, re.IGNORECASE):
            raise ConfigError("ledger", "url", f"{url!r} is not a postgresql:// URL")
        return cls("postgresql://" + url.split("://", 1)[1], **kw)

    def __repr__(self) -> str:
        return f"PostgresLedger({self.target!r}, spool_dir={self.spool_dir!r})"


def _default_spool_dir(params: dict[str, Any]) -> str:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    # Whatever decides which tables the rows land in is part of the name: a spool replayed into
    # another database (or schema) would put rows where they do not belong.
    ident = "\0".join(str(params.get(k) or "") for k in ("host", "port", "dbname", "user", "options"))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{params.get('dbname') or 'db'}@{params.get('host') or 'localhost'}")
    return os.path.join(state, "thrifty", "ledger-spool", f"{name}-{hashlib.sha256(ident.encode()).hexdigest()[:10]}")


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        m = re.match(r"^[^:]+://[^:@/]*:([^@/]*)@", url)
        return m.group(1) if m else None


def _one_line(exc: BaseException | None) -> str:
    return " ".join(str(exc).split()) if exc is not None else "unknown error"
