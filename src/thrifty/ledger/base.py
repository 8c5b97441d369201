"""The ledger interface, and the batching writer thread that every backend shares.

The request path only ever calls `record()`, which appends to an in-memory queue and returns.
One background thread drains the queue and writes rows in batches, one transaction per batch.
A backend supplies four hooks: migrate, connect, write one batch, and say which errors are
worth retrying.

Memory: the queue is unbounded, so `record()` never blocks and never drops. A row is about
1 KB (plus its bodies, when stored). The backlog only grows while writes are slower than
arrivals; when the database fails, a batch is retried a few times and then spilled to a JSON
Lines file, and while failures go on each later batch gets one try before it spills, so the
queue keeps draining at disk speed even with the database down. A warning is logged whenever the
backlog passes `backlog_warning` rows.

A backend with a spool of its own (PostgreSQL) overrides `_write` and the optional hooks
`_keep`, `_idle_wait`/`_idle` and `_settle` to send rows there instead, and to replay them.
"""

from __future__ import annotations

import atexit
import importlib
import inspect
import json
import logging
import os
import queue
import re
import threading
import time
from abc import ABC, abstractmethod
from types import MappingProxyType
from typing import Any, Sequence

from thrifty.errors import ConfigError
from thrifty.ledger.schema import LedgerRow, row_from_json, row_to_json

log = logging.getLogger("thrifty.ledger")

_STOP = object()  # queued by close(): the writer ends after the rows before it


class Ledger(ABC):
    """Where every call is recorded. `record()` is the only method used on the request path."""

    @abstractmethod
    def start(self) -> None:
        """Create or upgrade the schema and start writing. Raises ConfigError if it cannot."""

    @abstractmethod
    def record(self, row: LedgerRow) -> None:
        """Queue `row` for writing. Never blocks on I/O and never raises."""

    @abstractmethod
    def flush(self, timeout: float = 5.0) -> None:
        """Block until every row recorded so far is written (or spilled)."""

    @abstractmethod
    def close(self) -> None:
        """Write everything still queued, then stop. Rows recorded afterwards are spilled."""

    @abstractmethod
    def rows(self, where: str = "", params: Sequence[Any] = ()) -> list[LedgerRow]:
        """Written rows, oldest first; `where` is an SQL condition on the `calls` columns."""

    @abstractmethod
    def totals(self, group_by: str, where: str = "", params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Calls, exact cost and tokens per value of `group_by`, most expensive first."""

    @abstractmethod
    def count(self) -> int:
        """How many rows are written."""

    def __enter__(self) -> "Ledger":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BufferedLedger(Ledger):
    """start/record/flush/close over a queue and one writer thread; backends add the I/O.

    The writer thread owns its connection: it opens it, uses it and closes it, so a backend's
    driver never sees a connection shared between threads.
    """

    def __init__(self, *, spill_path: str, batch_size: int = 256, flush_interval: float = 0.05,
                 max_attempts: int = 5, retry_backoff: float = 0.05,
                 backlog_warning: int = 100_000) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if flush_interval < 0:
            raise ValueError("flush_interval must not be negative")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.spill_path = spill_path
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.backlog_warning = backlog_warning
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()  # makes "closed?" and "enqueue" one step for record()
        self._lifecycle = threading.Lock()  # serialises start() and close()
        self._spill_lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._conn: Any = None  # touched only by the thread running _run()
        self._degraded = False
        self._backlog_warned = False

    # -- backend hooks --------------------------------------------------------------------

    @abstractmethod
    def _migrate(self) -> None:
        """Apply pending migrations (called once, in the thread that calls start())."""

    @abstractmethod
    def _connect(self) -> Any:
        """Open the writer's connection."""

    @abstractmethod
    def _write_batch(self, conn: Any, rows: list[LedgerRow]) -> int:
        """Insert `rows` in one transaction (rolled back on error); return how many were new."""

    @abstractmethod
    def _disconnect(self, conn: Any) -> None:
        """Close the writer's connection."""

    @abstractmethod
    def _is_transient(self, exc: Exception) -> bool:
        """Whether retrying the same batch might succeed (locked, I/O, connection lost)."""

    def _keep(self, rows: list[LedgerRow], reason: str) -> None:
        """Keep rows that are fine but will not be written now (recorded after close(), or
        left when close() timed out). A backend with a spool of its own puts them there."""
        self._spill(rows, reason)

    def _idle_wait(self) -> float | None:
        """How long the writer waits for a row before running `_idle()`; None: for ever."""
        return None

    def _idle(self) -> None:
        """Work for the writer thread when no row came within `_idle_wait()` seconds."""

    def _settle(self) -> None:
        """Runs in the writer after the rows before a flush() or close() are handled, before
        flush() returns: a backend can finish pending work there. Must not raise."""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        with self._lifecycle:
            if self._closed:
                raise RuntimeError("this ledger is closed")
            if self._thread is not None:
                return
            self._migrate()
            self._thread = threading.Thread(target=self._run, name="thrifty-ledger-writer", daemon=True)
            self._thread.start()
            # A safety net for a process that exits without close(): the thread is a daemon.
            atexit.register(self.close)

    def record(self, row: LedgerRow) -> None:
        try:
            with self._lock:
                if not self._closed:
                    self._queue.put(row)
                    return
            self._keep([row], "recorded after the ledger was closed")
        except Exception:  # the request path must not fail because of the ledger
            log.exception("ledger: could not record request %s", getattr(row, "request_id", "?"))

    def flush(self, timeout: float = 5.0) -> None:
        done = threading.Event()
        with self._lock:
            closed = self._closed
            if not closed:
                if self._thread is None:
                    raise RuntimeError("start() the ledger before flush()")
                self._queue.put(done)
        if closed:  # close() drains everything; at most wait for it to finish
            thread = self._thread
            if thread is not None:
                thread.join(timeout)
            return
        if not done.wait(timeout):
            raise TimeoutError(f"ledger flush not done after {timeout}s "
                               f"({self._queue.qsize()} items still queued)")

    def close(self, timeout: float = 30.0) -> None:
        with self._lifecycle:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                self._queue.put(_STOP)
            thread = self._thread
            if thread is None:
                self._drain_unstarted()
                return
            thread.join(timeout)
            atexit.unregister(self.close)
            if thread.is_alive():
                # The writer is stuck in a write; take what it has not reached yet.
                left = self._take_all()
                log.error("ledger: writer still busy after %ss; spilling %d queued rows", timeout, len(left))
                if left:
                    self._keep(left, f"writer did not finish within {timeout}s of close()")

    def _drain_unstarted(self) -> None:
        """close() of a ledger never started: write what was recorded, in this thread."""
        if self._queue.qsize() <= 1:  # nothing but the _STOP
            self._take_all()
            return
        try:
            self._migrate()
        except Exception as exc:
            log.error("ledger: cannot prepare the database on close(): %s", exc)
        self._run()

    def _take_all(self) -> list[LedgerRow]:
        rows = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return rows
            if isinstance(item, threading.Event):
                item.set()
            elif item is not _STOP:
                rows.append(item)

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                batch, waiters, stop = self._gather(self._next_item())
                try:
                    if batch:
                        self._write(batch)
                except Exception as exc:  # a bug of ours: keep the rows and keep the thread alive
                    log.exception("ledger: unexpected error writing %d rows", len(batch))
                    self._spill(batch, f"unexpected error: {exc!r}")
                finally:
                    if waiters or stop:
                        try:
                            self._settle()
                        except Exception:
                            log.exception("ledger: error finishing a flush")
                    for done in waiters:
                        done.set()
                self._watch_backlog()
        finally:
            self._drop_connection()

    def _next_item(self) -> Any:
        while True:
            wait = self._idle_wait()
            if wait is None:
                return self._queue.get()
            try:
                return self._queue.get(timeout=wait)
            except queue.Empty:
                try:
                    self._idle()
                except Exception:
                    log.exception("ledger: error in the writer's idle work")

    def _take_queued(self) -> tuple[list[Any], list[threading.Event]]:
        """What is queued now, without waiting: items to write, and flush markers. The stop
        marker stays queued for _run() (it is always last: close() queues nothing after it)."""
        items: list[Any] = []
        waiters: list[threading.Event] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return items, waiters
            if item is _STOP:
                self._queue.put(_STOP)
                return items, waiters
            if isinstance(item, threading.Event):
                waiters.append(item)
            else:
                items.append(item)

    def _gather(self, item: Any) -> tuple[list[LedgerRow], list[threading.Event], bool]:
        """A batch: up to batch_size rows, waiting at most flush_interval after the first.

        A flush marker or the stop sentinel ends the batch at once.
        """
        batch: list[LedgerRow] = []
        deadline = 0.0
        while True:
            if item is _STOP:
                return batch, [], True
            if isinstance(item, threading.Event):
                return batch, [item], False
            batch.append(item)
            if len(batch) >= self.batch_size:
                return batch, [], False
            if len(batch) == 1:
                deadline = time.monotonic() + self.flush_interval
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                return batch, [], False

    def _write(self, rows: list[LedgerRow]) -> None:
        # While the database keeps failing, one try per batch: retrying every batch would let
        # the backlog grow without bound.
        attempts = 1 if self._degraded else self.max_attempts
        last_error: Exception | None = None
        for attempt in range(1, attempts + 1):
            try:
                if self._conn is None:
                    self._conn = self._connect()
                written = self._write_batch(self._conn, rows)
            except Exception as exc:
                if not self._is_transient(exc):
                    # Something in the rows themselves: find the culprits, keep the rest.
                    log.warning("ledger: batch of %d rows rejected (%s); writing them one by one",
                                len(rows), exc)
                    self._write_one_by_one(rows)
                    return
                log.warning("ledger: writing %d rows failed (attempt %d of %d): %s",
                            len(rows), attempt, attempts, exc)
                self._drop_connection()
                if attempt < attempts:
                    time.sleep(self.retry_backoff * 2 ** (attempt - 1))
                last_error = exc
            else:
                self._note_duplicates(len(rows) - written)
                if self._degraded:
                    log.warning("ledger: database writes work again")
                    self._degraded = False
                return
        self._degraded = True
        self._spill(rows, f"{type(last_error).__name__}: {last_error}")

    def _write_one_by_one(self, rows: list[LedgerRow]) -> None:
        for row in rows:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                self._note_duplicates(1 - self._write_batch(self._conn, [row]))
            except Exception as exc:
                if self._is_transient(exc):
                    self._drop_connection()
                self._spill([row], f"{type(exc).__name__}: {exc}")

    def _note_duplicates(self, n: int) -> None:
        if n > 0:
            log.warning("ledger: %d row(s) had a request_id already in the ledger and were skipped", n)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                self._disconnect(conn)
            except Exception as exc:
                log.debug("ledger: error closing the connection: %s", exc)

    def _watch_backlog(self) -> None:
        backlog = self._queue.qsize()
        if backlog > self.backlog_warning and not self._backlog_warned:
            self._backlog_warned = True
            log.warning("ledger: %d rows waiting to be written; the database is slower than traffic",
                        backlog)
        elif backlog < self.backlog_warning // 2:
            self._backlog_warned = False

    # -- the spill file ----------------------------------------------------------------------

    def _spill(self, rows: list[LedgerRow], reason: str) -> None:
        """Append rows that could not be written to the spill file, for read_spill() later."""
        stamp = time.time()
        lines = [_spill_line(row, stamp, reason) for row in rows]
        try:
            with self._spill_lock, open(self.spill_path, "a", encoding="utf-8") as f:
                f.writelines(lines)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            # Last resort: the log is the only place left to keep them.
            log.critical("ledger: %d row(s) could not be written (%s) NOR spilled to %s (%s); "
                         "the rows follow", len(rows), reason, self.spill_path, exc)
            for line in lines:
                log.critical("ledger row: %s", line.rstrip())
            return
        log.error("ledger: %d row(s) NOT written to the database (%s); appended to %s "
                  "(load them back with thrifty.ledger.read_spill)", len(rows), reason, self.spill_path)


def _spill_line(row: LedgerRow, stamp: float, reason: str) -> str:
    try:
        data = {**row_to_json(row), "_spilled_at": stamp, "_reason": reason}
    except Exception:  # not a LedgerRow at all: keep what can be kept
        data = {"_repr": repr(row), "_spilled_at": stamp, "_reason": reason}
    return json.dumps(data, default=str, ensure_ascii=False) + "\n"


def read_spill(path: str) -> list[LedgerRow]:
    """The rows of a spill file. Recording them again is safe: a request_id is written once.

    Lines that are not a row (a corrupt line, or something that never was a LedgerRow) are
    logged and skipped.
    """
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(row_from_json(json.loads(line)))
            except (ValueError, TypeError, ArithmeticError) as exc:
                log.warning("ledger: %s line %d is not a ledger row (%s); skipped", path, n, exc)
    return out


# URL scheme -> "module:Class" of a backend with a `from_url(url)` classmethod. Imported only
# when used, so a backend's driver is needed only by those who choose it.
_BACKENDS = MappingProxyType({
    "sqlite": "thrifty.ledger.sqlite:SQLiteLedger",
    "postgresql": "thrifty.ledger.postgres:PostgresLedger",
    "postgres": "thrifty.ledger.postgres:PostgresLedger",
})
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_ledger(url_or_path: str, **options: Any) -> Ledger:
    """The ledger for `sqlite:///relative.db`, `sqlite:////absolute.db`, a plain file path, or
    `postgresql://user@host:5432/dbname`; `options` go to the backend's constructor (those
    that are None are left out, so a config can pass every option it has, set or not).

    Nothing is opened until start(). An unknown scheme is a ConfigError.
    """
    if not isinstance(url_or_path, str) or not url_or_path.strip():
        raise ConfigError("ledger", "url", "is empty; use sqlite:///PATH or a file path")
    m = _URL.match(url_or_path)
    scheme = m.group(1).lower() if m else "sqlite"
    target = _BACKENDS.get(scheme)
    if target is None:
        raise ConfigError("ledger", "url", f"unsupported scheme {scheme!r} in {url_or_path!r}; "
                                           f"supported: {', '.join(sorted(_BACKENDS))} "
                                           "(sqlite:///PATH, postgresql://USER@HOST:PORT/DB), "
                                           "or a plain file path")
    module, cls_name = target.split(":")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except ImportError as exc:  # the backend's driver is an optional install
        raise ConfigError("ledger", "url", f"the {scheme} ledger needs a package that is not "
                                           f"installed ({exc.name}): {exc}") from exc
    options = {k: v for k, v in options.items() if v is not None}
    unknown = set(options) - set(inspect.signature(cls).parameters)
    if unknown:
        raise ConfigError("ledger", sorted(unknown)[0], f"is not an option of the {scheme} ledger")
    if m:
        return cls.from_url(url_or_path, **options)
    return cls(os.path.expanduser(url_or_path), **options)
