"""The PostgreSQL ledger: one database shared by every gateway replica.

Writes are batched off the request path by BufferedLedger's writer thread, as for SQLite, and
the schema is the same MIGRATIONS, applied unchanged under an advisory lock so that replicas
starting together apply each migration once.

When the database cannot be reached, rows go to a local spool (spool.py) as they come, not to
memory: while the database is down the writer appends each batch to disk and tries the database
again only every so often (backing off from `reconnect_min` to `reconnect_max` seconds, and at
once on flush() and close()). When it answers again the spool is replayed oldest first, and the
rows recorded meanwhile follow it to disk until the replay has caught up, so rows reach the
database in the order they were recorded. Inserts are idempotent on request_id, so a replay
repeated after a crash or a dropped connection writes nothing twice.

Rows the database rejects (not the connection: the row, e.g. a NUL character in a string) are
not spooled, which would retry them for ever: they go to `<spool_dir>/rejected.jsonl`, readable
with `read_spill`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from typing import Any, Sequence
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from thrifty.errors import ConfigError
from thrifty.ledger.base import BufferedLedger
from thrifty.ledger.schema import (CALL_COLUMNS, GROUP_COLUMNS, MIGRATIONS, MIGRATIONS_TABLE, LedgerRow,
                                   Migration, body_params, call_params, row_from_db, totals_from_rows)
from thrifty.ledger.spool import Spool

log = logging.getLogger("thrifty.ledger")

_COLUMNS = ", ".join(col for _, col in CALL_COLUMNS)
# A batch is COPYed into a per-connection staging table, then moved with one INSERT: about twice
# the rows/s of a pipelined executemany. The staging table empties itself at each commit.
_STAGE = "pg_temp.thrifty_calls_in"
_CREATE_STAGE = "CREATE TEMP TABLE IF NOT EXISTS thrifty_calls_in (LIKE calls) ON COMMIT DELETE ROWS"
_COPY_CALLS = f"COPY {_STAGE} ({_COLUMNS}) FROM STDIN"
_INSERT_CALLS = (f"INSERT INTO calls ({_COLUMNS}) SELECT {_COLUMNS} FROM {_STAGE} "
                 "ON CONFLICT (request_id) DO NOTHING")
_INSERT_BODY = ("INSERT INTO call_bodies (request_id, request_body, response_body) VALUES (%s, %s, %s) "
                "ON CONFLICT (request_id) DO NOTHING")
# COLLATE "C": byte order, as SQLite compares text, whatever the database's locale.
_SELECT_ROWS = ("SELECT {cols}, b.request_body, b.response_body "
                "FROM (SELECT * FROM calls{cond}) AS c "
                "LEFT JOIN call_bodies AS b ON b.request_id = c.request_id "
                'ORDER BY c.started_at, c.request_id COLLATE "C"')
_SELECT_TOTALS = ("SELECT {col}, COUNT(*), {cost}, "
                  "SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END), SUM(prompt_tokens), "
                  "SUM(cached_tokens), SUM(cache_write_tokens), SUM(completion_tokens), "
                  "{baseline}, {saved_pc}, {saved_rc} "
                  "FROM calls{cond} GROUP BY {col}")
_MONEY_SUM = "COALESCE(SUM({}::numeric), 0)"  # NUMERIC: exact, however many digits

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

# `?` placeholders (as for SQLite), string literals and quoted names, and `%` outside them.
_WHERE_TOKEN = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*")|(\?)|(%)""")


class _Unavailable(Exception):
    """The database cannot take rows now (down, or migrations could not be applied)."""


def apply_migrations(conn: psycopg.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Apply the pending migrations in one transaction; return the names applied.

    The transaction-scoped advisory lock makes processes starting at once take turns: the first
    applies what is pending, the others then find nothing left to do.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(MIGRATIONS_TABLE)
        applied = {name for (name,) in conn.execute("SELECT name FROM _migrations")}
        done = []
        for m in migrations:
            if m.name in applied:
                continue
            for statement in m.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (%s, %s)", (m.name, time.time()))
            done.append(m.name)
    unknown = applied - {m.name for m in migrations}
    if unknown:
        log.warning("ledger: the database has migrations this version does not know (%s); "
                    "it was written by a newer Thrifty", ", ".join(sorted(unknown)))
    if done:
        log.info("ledger: applied migrations %s", ", ".join(done))
    return done


class PostgresLedger(BufferedLedger):
    """The ledger in PostgreSQL; rows the database cannot take now wait in a local spool.

    `url` is a libpq URL, `postgresql://user:password@host:5432/dbname?sslmode=require`.
    `spool_dir` must be local to this machine and serve only this database; by default it is
    under $XDG_STATE_HOME (~/.local/state)/thrifty/ledger-spool/, named after the database.
    `offline_start=False` makes start() raise ConfigError when the database cannot be reached,
    instead of starting with the spool.
    """

    def __init__(self, url: str, *, spool_dir: str | None = None, batch_size: int = 256,
                 flush_interval: float = 0.05, max_attempts: int = 3, retry_backoff: float = 0.05,
                 connect_timeout: float = 5.0, reconnect_min: float = 0.25, reconnect_max: float = 5.0,
                 replay_batch_size: int = 1024, offline_start: bool = True, sync_spool: bool = True,
                 orphan_check_interval: float = 30.0) -> None:
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            detail = _one_line(exc)
            password = _password(url)
            if password:  # the message may quote the URL
                detail = detail.replace(password, "***")
            raise ConfigError("ledger", "url", f"not a PostgreSQL URL: {detail}") from None
        self.url = url
        self.target = (f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"
                       f"/{params.get('dbname') or params.get('user') or ''}")
        self.spool_dir = os.fspath(spool_dir) if spool_dir else _default_spool_dir(params)
        super().__init__(spill_path=os.path.join(self.spool_dir, "rejected.jsonl"), batch_size=batch_size,
                         flush_interval=flush_interval, max_attempts=max_attempts,
                         retry_backoff=retry_backoff)
        params.setdefault("connect_timeout", str(max(1, round(connect_timeout))))
        for key, value in _CONN_DEFAULTS.items():
            params.setdefault(key, value)
        self._conninfo = make_conninfo(**params)
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.replay_batch_size = replay_batch_size
        self.offline_start = offline_start
        self.orphan_check_interval = orphan_check_interval
        self.spool = Spool(self.spool_dir, sync=sync_spool)
        # Writer-thread state (set up by _migrate() before the thread starts).
        self._migrated = False
        self._spooling = False  # rows go to the spool, not the database, until it is replayed
        self._next_try = 0.0  # monotonic time of the next replay attempt while spooling
        self._delay = reconnect_min
        self._next_orphan_check = 0.0
        self._held: list[threading.Event] = []  # flush markers taken while replaying
        self._next_down_log = 0.0
        self._last_error: Exception | None = None

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> "PostgresLedger":
        if not re.match(r"^postgres(?:ql)?://", url, re.IGNORECASE):
            raise ConfigError("ledger", "url", f"{url!r} is not a postgresql:// URL")
        return cls("postgresql://" + url.split("://", 1)[1], **kw)

    def __repr__(self) -> str:
        return f"PostgresLedger({self.target!r}, spool_dir={self.spool_dir!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self, timeout: float = 30.0) -> None:
        super().close(timeout)
        thread = self._thread
        if thread is None or not thread.is_alive():
            self.spool.close()  # seals this process's segment, so the next start can replay it

    def _connect_raw(self, autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(self._conninfo, autocommit=autocommit)

    def _migrate(self) -> None:
        if self.spool.segments():
            # Rows left by an earlier run go in first; rows recorded from now on follow them.
            self._spooling = True
            self._next_try = 0.0
        try:
            with self._connect_raw() as conn:
                apply_migrations(conn)
            self._migrated = True
        except psycopg.OperationalError as exc:
            if not self.offline_start:
                raise ConfigError("ledger", "url", f"cannot reach the PostgreSQL ledger at {self.target}: "
                                                   f"{_one_line(exc)}") from exc
            log.error("ledger: PostgreSQL at %s is unreachable (%s); recording to the spool %s until it answers",
                      self.target, _one_line(exc), self.spool_dir)
            self._go_offline()
            self._next_down_log = time.monotonic() + 60.0
        except psycopg.Error as exc:
            raise ConfigError("ledger", "url", f"cannot prepare the PostgreSQL ledger at {self.target}: "
                                               f"{_one_line(exc)}") from exc

    # -- backend hooks -----------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        conn = self._connect_raw()
        try:
            if not self._migrated:
                apply_migrations(conn)
                self._migrated = True
            conn.execute(_WRITE_TIMEOUT)
            conn.execute(_CREATE_STAGE)
        except psycopg.Error as exc:
            conn.close()
            if self._is_transient(exc):
                raise
            raise _Unavailable(f"the ledger tables are not usable: {_one_line(exc)}") from exc
        return conn

    def _write_batch(self, conn: psycopg.Connection, rows: list[LedgerRow]) -> int:
        calls = [call_params(row) for row in rows]
        bodies = [b for b in map(body_params, rows) if b is not None]
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(_COPY_CALLS) as copy:
                for values in calls:
                    copy.write_row(values)
            cur.execute(_INSERT_CALLS)
            written = cur.rowcount
            if bodies:
                cur.executemany(_INSERT_BODY, bodies)
        return written

    def _disconnect(self, conn: psycopg.Connection) -> None:
        conn.close()

    def _is_transient(self, exc: Exception) -> bool:
        if isinstance(exc, (_Unavailable, psycopg.InterfaceError, OSError)):
            return True
        if isinstance(exc, psycopg.Error):
            state = exc.sqlstate
            if state is None:  # no answer from the server: the connection failed or was lost
                return isinstance(exc, psycopg.OperationalError)
            return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
        return False

    # -- the writer: database or spool -------------------------------------------------------

    def _write(self, rows: list[LedgerRow]) -> None:
        rows = self._only_rows(rows)
        if not rows:
            return
        if self._spooling:
            self._to_spool(rows)
            if time.monotonic() >= self._next_try:
                self._replay()
            return
        left = self._write_now(rows, self.max_attempts)
        if left:
            self._to_spool(left)
            self._go_offline()
            self._next_down_log = time.monotonic() + 60.0
            log.error("ledger: PostgreSQL at %s cannot take rows (%s); recording to the spool %s until it answers",
                      self.target, _one_line(self._last_error), self.spool_dir)
        elif time.monotonic() >= self._next_orphan_check:
            self._adopt_orphans()

    def _write_now(self, rows: list[LedgerRow], attempts: int) -> list[LedgerRow]:
        """Write `rows`; return those not written because the database is unavailable."""
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                if self._conn is None:
                    self._conn = self._connect()
                written = self._write_batch(self._conn, rows)
            except Exception as exc:
                if not self._is_transient(exc):
                    log.warning("ledger: batch of %d rows rejected (%s); writing them one by one",
                                len(rows), _one_line(exc))
                    return self._isolate(rows)
                self._last_error = exc
                self._drop_connection()
                if attempt < attempts and time.monotonic() - started < _RETRY_BUDGET_S:
                    log.warning("ledger: writing %d rows failed (attempt %d of %d): %s",
                                len(rows), attempt, attempts, _one_line(exc))
                    time.sleep(self.retry_backoff * 2 ** (attempt - 1))
                    continue
                break
            else:
                self._note_duplicates(len(rows) - written)
                return []
        return rows

    def _isolate(self, rows: list[LedgerRow]) -> list[LedgerRow]:
        """Write rows one at a time; rejected ones go to the rejected file, never the spool."""
        for i, row in enumerate(rows):
            try:
                if self._conn is None:
                    self._conn = self._connect()
                self._note_duplicates(1 - self._write_batch(self._conn, [row]))
            except Exception as exc:
                if self._is_transient(exc):
                    self._last_error = exc
                    self._drop_connection()
                    return rows[i:]
                self._spill([row], f"{type(exc).__name__}: {_one_line(exc)}")
        return []

    def _spill(self, rows: list[Any], reason: str) -> None:
        try:
            os.makedirs(self.spool_dir, exist_ok=True)
        except OSError:
            pass  # _spill logs the rows when it cannot write them
        super()._spill(rows, reason)

    def _only_rows(self, items: list[Any]) -> list[LedgerRow]:
        bad = [r for r in items if not isinstance(r, LedgerRow)]
        if not bad:
            return items
        self._spill(bad, "not a LedgerRow")
        return [r for r in items if isinstance(r, LedgerRow)]

    def _to_spool(self, rows: list[LedgerRow]) -> None:
        try:
            self.spool.append(rows)
        except OSError as exc:  # disk full or read-only: the rejected file (or the log) is all that is left
            self._spill(rows, f"the spool {self.spool_dir} refused them ({exc}) while the database was unavailable")

    def _go_offline(self) -> None:
        self._spooling = True
        self._next_try = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.reconnect_max)

    # -- replay ------------------------------------------------------------------------------

    def _replay(self) -> None:
        """Write the spool to the database, oldest first; stop at the first failure."""
        was_spooling = self._spooling
        replayed = 0
        try:
            while True:
                self.spool.seal()  # this process's rows so far become replayable
                n = self.spool.replay(self._write_replayed, self.replay_batch_size, between=self._absorb)
                replayed += n
                if not self.spool.has_own():
                    break
                if n == 0:  # ours are being replayed by another process: try again later
                    self._next_try = time.monotonic() + self.reconnect_min
                    return
        except _Unavailable as exc:
            now = time.monotonic()
            if replayed or not was_spooling:
                log.warning("ledger: replay stopped after %d rows: %s", replayed, exc)
            elif now >= self._next_down_log:  # a reminder now and then, not one per attempt
                self._next_down_log = now + 60.0
                log.warning("ledger: PostgreSQL at %s still unavailable (%s); rows are kept in %s",
                            self.target, exc, self.spool_dir)
            self._go_offline()
            return
        except Exception:  # the spool's disk, or a bug: keep spooling, try again later
            log.exception("ledger: replaying the spool %s failed", self.spool_dir)
            self._go_offline()
            return
        finally:
            held, self._held = self._held, []
            for done in held:
                done.set()
        self._spooling = False
        self._delay = self.reconnect_min
        self._next_orphan_check = time.monotonic() + self.orphan_check_interval
        if was_spooling or replayed:
            log.warning("ledger: PostgreSQL at %s takes rows; %d spooled rows written to it",
                        self.target, replayed)

    def _write_replayed(self, rows: list[LedgerRow]) -> None:
        if self._write_now(self._only_rows(rows), 1):
            raise _Unavailable(_one_line(self._last_error))

    def _absorb(self) -> None:
        """During a replay, move what was recorded meanwhile to the spool, behind the rows
        being replayed: memory stays bounded and the order stays the order of recording."""
        if self._queue.qsize() < self.batch_size:
            return  # a short wait in memory; the catch-up must be able to finish
        items, waiters = self._take_queued()
        self._held.extend(waiters)
        self._to_spool(self._only_rows(items))

    def _adopt_orphans(self) -> None:
        """Replay spools left in our directory by processes that died."""
        self._next_orphan_check = time.monotonic() + self.orphan_check_interval
        if self.spool.segments():
            self._replay()

    def _idle_wait(self) -> float | None:
        due = self._next_try if self._spooling else self._next_orphan_check
        return max(0.005, due - time.monotonic())

    def _idle(self) -> None:
        if self._spooling:
            if time.monotonic() >= self._next_try:
                self._replay()
        elif time.monotonic() >= self._next_orphan_check:
            self._adopt_orphans()

    def _settle(self) -> None:
        # flush() and close() try the database now, whatever the back-off says.
        if self._spooling:
            self._replay()

    def _keep(self, rows: list[LedgerRow], reason: str) -> None:
        rows = self._only_rows(rows)
        self._to_spool(rows)
        thread = self._thread
        if self._closed and (thread is None or not thread.is_alive()):
            self.spool.seal()  # no writer left here: let the next start take them
        log.warning("ledger: %d row(s) %s; kept in the spool %s for the next start()",
                    len(rows), reason, self.spool_dir)

    # -- queries -----------------------------------------------------------------------------

    def _reader(self) -> psycopg.Connection:
        """A short-lived read-only connection (`where` is caller-supplied SQL)."""
        conn = self._connect_raw(autocommit=False)
        conn.read_only = True  # each query runs in a READ ONLY transaction
        return conn

    def rows(self, where: str = "", params: Sequence[Any] = ()) -> list[LedgerRow]:
        """Written rows, oldest first. `where` is a condition on `calls` with `?` placeholders,
        as for SQLite, e.g. `rows("tenant = ? AND started_at >= ?", ("acme", t0))`. Rows still
        queued or spooled are not seen: flush() first to read your own writes.
        """
        sql = _SELECT_ROWS.format(cols=", ".join(f"c.{col}" for _, col in CALL_COLUMNS),
                                  cond=_condition(where))
        with self._reader() as conn:
            found = conn.execute(sql, tuple(params)).fetchall()
        return [row_from_db(r[:-2], r[-2], r[-1]) for r in found]

    def totals(self, group_by: str, where: str = "", params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Per value of `group_by`: calls, the exact sum of known costs (`unpriced_calls` says
        how many had no price) and token sums; most expensive first. Same results as SQLite."""
        col = GROUP_COLUMNS.get(group_by)
        if col is None:
            raise ValueError(f"cannot group by {group_by!r}; choose one of {', '.join(GROUP_COLUMNS)}")
        sql = _SELECT_TOTALS.format(
            col=col, cond=_condition(where), cost=_MONEY_SUM.format("cost_usd"),
            baseline=_MONEY_SUM.format("baseline_cost_usd"), saved_pc=_MONEY_SUM.format("saved_prompt_cache_usd"),
            saved_rc=_MONEY_SUM.format("saved_response_cache_usd"))
        with self._reader() as conn:
            found = conn.execute(sql, tuple(params)).fetchall()
        return totals_from_rows(found)

    def count(self) -> int:
        with self._reader() as conn:
            return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


def _condition(where: str) -> str:
    """` WHERE <where>` with SQLite-style `?` placeholders turned into psycopg's `%s`."""
    if not where.strip():
        return ""

    def token(m: re.Match[str]) -> str:
        if m.group(1):
            return m.group(1).replace("%", "%%")
        return "%s" if m.group(2) else "%%"

    return " WHERE " + _WHERE_TOKEN.sub(token, where)


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
