"""The one buffered writer: a queue, one thread, batches; a Driver does the database's part.

The request path only ever calls `record()`, which appends to an in-memory queue and returns.
One background thread drains the queue and hands the driver batches, one transaction each.

When the database fails, a batch is retried (at most `max_attempts` times, and for at most
`retry_budget` seconds) and then handed to the `fallback` sink:

- a sink that does not replay (SpillFile, SQLite's) gets the rows to keep; while failures go on,
  each later batch gets one try before it goes there too, so the queue drains at disk speed;
- a sink that replays (SpoolSink, PostgreSQL's) takes every row as it comes while the database
  is down, and the writer tries the database only every so often (backing off from
  `reconnect_min` to `reconnect_max` seconds, and at once on flush() and close()) by replaying
  the sink oldest first; rows recorded meanwhile follow to the sink until the replay has caught
  up, so rows reach the database in the order they were recorded. Now and then (every
  `orphan_check_interval` seconds) it also replays rows left in the sink by processes that died.

Rows the database rejects (not the connection: the row itself) go to `rejects`, never to a sink
that would retry them for ever. Memory: the queue is unbounded, so record() never blocks and
never drops; a warning is logged whenever the backlog passes `backlog_warning` rows.

With a `journal` (journal.py; the SQLite and PostgreSQL ledgers have one unless told not to),
record() first appends the row to it, so a row is on local disk before record() returns and a
crash of the process loses none; the writer tells the journal when it is through with each row.
start() recovers what dead processes left in the journal's directory. Text a database refuses
(NUL, lone surrogates) is replaced by U+FFFD on record (codec.clean_row), never a lost row.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from typing import Any, Iterable, Sequence

from thrifty.errors import ConfigError
from thrifty.ledger.base import Ledger
from thrifty.ledger.codec import clean_row
from thrifty.ledger.driver import Driver
from thrifty.ledger.inbox import STOP, Inbox
from thrifty.ledger.journal import Journal
from thrifty.ledger.queries import RowFilter, select_count, select_rows, select_totals
from thrifty.ledger.savings import select_savings
from thrifty.ledger.schema import LedgerRow
from thrifty.ledger.sinks import Sink, SpillFile

log = logging.getLogger("thrifty.ledger")

_DOWN_LOG_EVERY_S = 60.0  # while the database stays down, a reminder this often, not one per try


class BufferedLedger(Ledger):
    """start/record/flush/close over a queue and one writer thread, composed with a Driver;
    the queries read through the same driver."""

    def __init__(self, driver: Driver, *, rejects: SpillFile, fallback: Sink | None = None,
                 batch_size: int = 256, flush_interval: float = 0.05, max_attempts: int = 5,
                 retry_backoff: float = 0.05, retry_budget: float | None = None,
                 backlog_warning: int = 100_000, reconnect_min: float = 0.25, reconnect_max: float = 5.0,
                 replay_batch_size: int = 1024, orphan_check_interval: float = 30.0,
                 offline_start: bool = True, journal: Journal | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if flush_interval < 0:
            raise ValueError("flush_interval must not be negative")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.driver = driver
        self.rejects = rejects
        self.fallback = fallback if fallback is not None else rejects
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.retry_budget = retry_budget
        self.backlog_warning = backlog_warning
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.replay_batch_size = replay_batch_size
        self.orphan_check_interval = orphan_check_interval
        self.offline_start = offline_start  # start() with the database unreachable, on a replaying sink
        self.journal = journal
        self._interrupted_holds: list[tuple[str, dict[str, Any]]] = []
        self._queue = Inbox()
        self._lock = threading.Lock()  # makes "closed?" and "enqueue" one step for record()
        self._lifecycle = threading.Lock()  # serialises start() and close()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._backlog_warned = False
        # Writer-thread state (set up by _prepare() before the thread starts).
        self._conn: Any = None
        # The last write failed, or kept rows wait to be replayed: rows go to a replaying
        # fallback first, or get one try each before a non-replaying one takes them.
        self._offline = False
        self._next_try = 0.0  # monotonic time of the next replay while offline
        self._delay = reconnect_min
        self._next_orphan_check = 0.0
        self._next_down_log = 0.0
        self._held: list[threading.Event] = []  # flush markers taken while replaying
        self._last_error: Exception | None = None

    @property
    def spill_path(self) -> str:
        """Where rows that will not be written are kept for a person (read_spill)."""
        return self.rejects.path

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        with self._lifecycle:
            if self._closed:
                raise RuntimeError("this ledger is closed")
            if self._thread is not None:
                return
            self._prepare()
            self._recover()
            self._thread = threading.Thread(target=self._run, name="thrifty-ledger-writer", daemon=True)
            self._thread.start()
            # A safety net for a process that exits without close(): the thread is a daemon.
            atexit.register(self.close)

    def _prepare(self) -> None:
        """Migrate, in the thread that calls start(); with the database down and a replaying
        sink, start offline instead (the gateway serves; rows wait on disk)."""
        now = time.monotonic()
        self._next_orphan_check = now + self.orphan_check_interval
        if self.fallback.pending():
            # Rows left by an earlier run go in first; rows recorded from now on follow them.
            self._offline, self._next_try = True, 0.0
        try:
            self.driver.migrate()
        except ConnectionError as exc:  # unreachable now
            if not (self.offline_start and self.fallback.replays):
                raise ConfigError("ledger", "url", f"cannot reach the {self.driver.name} ledger at "
                                                   f"{self.driver.target}: {exc}") from exc
            log.error("ledger: %s at %s is unreachable (%s); recording to %r until it answers",
                      self.driver.name, self.driver.target, exc, self.fallback)
            self._go_offline()
            self._next_down_log = now + _DOWN_LOG_EVERY_S

    def _recover(self) -> None:
        """Record again what dead processes left in the journal (see journal.py)."""
        if self.journal is None:
            return
        found = self.journal.adopt()
        try:
            rows = found.rows + found.interrupted
            if rows:
                self.record_many(rows)
            self.journal.keep_holds(found.holds)
            self._interrupted_holds.extend(found.holds)
        except BaseException:
            found.release(delete=False)
            raise
        found.release(delete=True)

    def record(self, row: LedgerRow) -> None:
        self.record_many((row,))

    def record_many(self, rows: Sequence[LedgerRow]) -> None:
        try:
            rows = [clean_row(r) if isinstance(r, LedgerRow) else r for r in rows]
            with self._lock:
                if not self._closed:
                    if self.journal is not None:
                        self.journal.rows([r for r in rows if isinstance(r, LedgerRow)])
                    for row in rows:
                        self._queue.put(row)
                    return
            self._leave(rows, "recorded after the ledger was closed")
        except Exception:  # the request path must not fail because of the ledger
            log.exception("ledger: could not record request %s",
                          ", ".join(str(getattr(r, "request_id", "?")) for r in rows))

    def begin(self, request_id: str, facts: dict[str, Any]) -> None:
        if self.journal is not None and not self._closed:
            try:
                self.journal.open_call(request_id, facts)
            except Exception:  # the request path must not fail because of the ledger
                log.exception("ledger: could not journal the start of request %s", request_id)

    def hold(self, reservation_id: str, held: dict[str, Any]) -> None:
        if self.journal is not None and not self._closed:
            try:
                self.journal.hold(reservation_id, held)
            except Exception:
                log.exception("ledger: could not journal budget hold %s", reservation_id)

    def take_interrupted_holds(self) -> list[tuple[str, dict[str, Any]]]:
        holds, self._interrupted_holds = self._interrupted_holds, []
        return holds

    def holds_settled(self, reservation_ids: Iterable[str]) -> None:
        if self.journal is not None:
            self.journal.settled(reservation_ids)

    def _done(self, items: list[Any]) -> None:
        """The writer is through with these rows: written, or kept by a sink."""
        if self.journal is not None:
            try:
                self.journal.done([r for r in items if isinstance(r, LedgerRow)])
            except Exception:  # the journal's bookkeeping must never stop the writer
                log.exception("ledger: journal bookkeeping failed")

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
                self._queue.put(STOP)
            thread = self._thread
            if thread is None:
                self._drain_unstarted()
            else:
                thread.join(timeout)
                atexit.unregister(self.close)
                if thread.is_alive():
                    # The writer is stuck in a write; take what it has not reached yet.
                    left = self._queue.take_all()
                    log.error("ledger: writer still busy after %ss; keeping %d queued rows aside", timeout, len(left))
                    if left:
                        self._leave(left, f"writer did not finish within {timeout}s of close()")
            if thread is None or not thread.is_alive():
                self.fallback.seal()  # no writer left here: the next start can replay what it kept
                if self.journal is not None:
                    self.journal.close()

    def _drain_unstarted(self) -> None:
        """close() of a ledger never started: write what was recorded, in this thread."""
        if self._queue.qsize() <= 1:  # nothing but the STOP
            self._queue.take_all()
            return
        try:
            self._prepare()
        except Exception as exc:
            log.error("ledger: cannot prepare the database on close(): %s", exc)
        self._run()

    def _leave(self, rows: list[Any], reason: str) -> None:
        rows = self._only_rows(rows)
        if rows:
            self.fallback.leave(rows, reason)
            self._done(rows)
        thread = self._thread
        if self._closed and (thread is None or not thread.is_alive()):
            self.fallback.seal()

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                batch, waiters, stop = self._queue.gather(self._next_item(), self.batch_size, self.flush_interval)
                try:
                    if batch:
                        self._write(batch)
                except Exception as exc:  # a bug of ours: keep the rows and keep the thread alive
                    log.exception("ledger: unexpected error writing %d rows", len(batch))
                    self.rejects.keep(batch, f"unexpected error: {exc!r}")
                finally:
                    self._done(batch)
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

    # -- writing: the database, or the fallback ------------------------------------------------

    def _write(self, rows: list[Any]) -> None:
        rows = self._only_rows(rows)
        if not rows:
            return
        replays = self.fallback.replays
        if self._offline and replays:
            self.fallback.keep(rows, "the database is unavailable")
            if time.monotonic() >= self._next_try:
                self._replay()
            return
        left = self._write_now(rows, 1 if self._offline else self.max_attempts)
        if left:
            self._fail_over(left)
        elif self._offline:
            self._offline, self._delay = False, self.reconnect_min
            log.warning("ledger: %s at %s takes rows again", self.driver.name, self.driver.target)
        elif replays and time.monotonic() >= self._next_orphan_check:
            self._adopt_orphans()

    def _write_now(self, rows: list[LedgerRow], attempts: int) -> list[LedgerRow]:
        """Write `rows`; return those not written because the database is unavailable."""
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                if self._conn is None:
                    self._conn = self.driver.connect()
                written = self.driver.write_batch(self._conn, rows)
            except Exception as exc:
                if not self._transient(exc):
                    log.warning("ledger: batch of %d rows rejected (%s); writing them one by one",
                                len(rows), _one_line(exc))
                    return self._isolate(rows)
                self._last_error = exc
                self._drop_connection()
                if attempt < attempts and (self.retry_budget is None
                                           or time.monotonic() - started < self.retry_budget):
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
        """Write rows one at a time; rejected ones go to `rejects`. Returns the rows not tried
        because the database became unavailable meanwhile."""
        for i, row in enumerate(rows):
            try:
                if self._conn is None:
                    self._conn = self.driver.connect()
                self._note_duplicates(1 - self.driver.write_batch(self._conn, [row]))
            except Exception as exc:
                if self._transient(exc):
                    self._last_error = exc
                    self._drop_connection()
                    return rows[i:]
                self.rejects.keep([row], f"{type(exc).__name__}: {_one_line(exc)}")
        return []

    def _fail_over(self, rows: list[LedgerRow]) -> None:
        """The database could not take `rows`: the fallback keeps them, and we go offline."""
        error = self._last_error
        self.fallback.keep(rows, f"{type(error).__name__}: {_one_line(error)}")
        self._go_offline()
        if self.fallback.replays:
            self._next_down_log = time.monotonic() + _DOWN_LOG_EVERY_S
            log.error("ledger: %s at %s cannot take rows (%s); recording to %r until it answers",
                      self.driver.name, self.driver.target, _one_line(error), self.fallback)

    def _transient(self, exc: Exception) -> bool:
        return isinstance(exc, ConnectionError) or self.driver.is_transient(exc)

    def _only_rows(self, items: list[Any]) -> list[LedgerRow]:
        bad = [r for r in items if not isinstance(r, LedgerRow)]
        if not bad:
            return items
        self.rejects.keep(bad, "not a LedgerRow")
        return [r for r in items if isinstance(r, LedgerRow)]

    def _go_offline(self) -> None:
        self._offline = True
        self._next_try = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.reconnect_max)

    def _note_duplicates(self, n: int) -> None:
        if n > 0:
            log.warning("ledger: %d row(s) had a request_id already in the ledger and were skipped", n)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                self.driver.disconnect(conn)
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

    # -- replaying a fallback that replays ----------------------------------------------------

    def _replay(self) -> None:
        """Write the fallback's rows to the database, oldest first; stop at the first failure."""
        was_offline = self._offline
        replayed = 0
        try:
            replayed, finished = self.fallback.replay(self._write_replayed, self.replay_batch_size,
                                                      between=self._absorb)
            if not finished:  # ours are being replayed by another process: try again soon
                self._next_try = time.monotonic() + self.reconnect_min
                return
        except ConnectionError as exc:
            now = time.monotonic()
            if replayed or not was_offline:
                log.warning("ledger: replay stopped: %s", exc)
            elif now >= self._next_down_log:
                self._next_down_log = now + _DOWN_LOG_EVERY_S
                log.warning("ledger: %s at %s still unavailable (%s); rows are kept in %r",
                            self.driver.name, self.driver.target, exc, self.fallback)
            self._go_offline()
            return
        except Exception:  # the fallback's disk, or a bug: keep it, try again later
            log.exception("ledger: replaying %r failed", self.fallback)
            self._go_offline()
            return
        finally:
            held, self._held = self._held, []
            for done in held:
                done.set()
        self._offline = False
        self._delay = self.reconnect_min
        self._next_orphan_check = time.monotonic() + self.orphan_check_interval
        if was_offline or replayed:
            log.warning("ledger: %s at %s takes rows; %d kept rows written to it",
                        self.driver.name, self.driver.target, replayed)

    def _write_replayed(self, rows: list[LedgerRow]) -> None:
        if self._write_now(rows, 1):
            raise ConnectionError(_one_line(self._last_error))

    def _absorb(self) -> None:
        """During a replay, move what was recorded meanwhile to the fallback, behind the rows
        being replayed: memory stays bounded and the order stays the order of recording."""
        if self._queue.qsize() < self.batch_size:
            return  # a short wait in memory; the catch-up must be able to finish
        items, waiters = self._queue.take_queued()
        self._held.extend(waiters)
        rows = self._only_rows(items)
        if rows:
            self.fallback.keep(rows, "recorded during a replay")
            self._done(rows)

    def _adopt_orphans(self) -> None:
        """Replay rows left in the fallback by processes that died."""
        self._next_orphan_check = time.monotonic() + self.orphan_check_interval
        if self.fallback.pending():
            self._replay()

    def _idle_wait(self) -> float | None:
        """How long the writer waits for a row before its idle work; None: for ever."""
        if not self.fallback.replays:
            return None
        due = self._next_try if self._offline else self._next_orphan_check
        return max(0.005, due - time.monotonic())

    def _idle(self) -> None:
        if self._offline:
            if time.monotonic() >= self._next_try:
                self._replay()
        elif time.monotonic() >= self._next_orphan_check:
            self._adopt_orphans()

    def _settle(self) -> None:
        # Runs before flush() returns and before the writer stops: flush() and close() try
        # the database now, whatever the back-off says.
        if self._offline and self.fallback.replays:
            self._replay()

    # -- queries (read through the driver, never through the writer's connection) -----------

    def rows(self, where: RowFilter | None = None) -> list[LedgerRow]:
        return select_rows(self.driver, where)

    def totals(self, group_by: str, where: RowFilter | None = None) -> list[dict[str, Any]]:
        return select_totals(self.driver, group_by, where)

    def savings(self, where: RowFilter | None = None, group_by: str | None = None) -> list[dict[str, Any]]:
        return select_savings(self.driver, where, group_by)

    def count(self, where: RowFilter | None = None) -> int:
        return select_count(self.driver, where)


def _one_line(exc: BaseException | None) -> str:
    return " ".join(str(exc).split()) if exc is not None else "unknown error"
