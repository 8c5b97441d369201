"""Where the writer puts rows the database does not take.

Two kinds, composed into the writer rather than built into it:

- SpillFile: JSON Lines for a person to load back (`read_spill`). Rows the database rejects
  always go to one (they would fail again), and it is the last resort when all else fails.
  As the fallback of an embedded database (SQLite), it also takes rows that could not be
  written while the database failed.
- SpoolSink: an ordered on-disk spool (spool.py) that the writer replays into the database
  when it answers again. A shared database (PostgreSQL) uses it as its fallback.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Callable

from thrifty.ledger.codec import row_from_json, row_to_json
from thrifty.ledger.schema import LedgerRow
from thrifty.ledger.spool import Spool

log = logging.getLogger("thrifty.ledger")


class Sink(ABC):
    """Keeps rows the database cannot take now. Must not lose them, nor raise."""

    # Whether the writer writes kept rows back to the database itself (replay). If so, rows
    # recorded while it holds some are kept behind them, so the order of recording survives.
    replays = False

    @abstractmethod
    def keep(self, rows: list[Any], reason: str) -> None:
        """Keep `rows` (which could not be written because of `reason`)."""

    def leave(self, rows: list[Any], reason: str) -> None:
        """Keep rows that the writer will not reach (recorded after close(), or left when
        close() timed out): they wait for the next start(), or for a person."""
        self.keep(rows, reason)

    def seal(self) -> None:
        """Make what was kept so far available to another process (or the next start)."""

    def pending(self) -> bool:
        """Whether rows wait here to be replayed (this process's, or an earlier one's)."""
        return False

    def replay(self, write: Callable[[list[LedgerRow]], None], batch_size: int,
               between: Callable[[], None]) -> tuple[int, bool]:
        """Hand kept rows to `write`, oldest first; return (rows replayed, whether none of
        this process's are left). An exception from `write` stops it and propagates."""
        return 0, True


class SpillFile(Sink):
    """Rows appended to a JSON Lines file, each with when and why; never replayed by itself."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SpillFile({self.path!r})"

    def keep(self, rows: list[Any], reason: str) -> None:
        stamp = time.time()
        lines = [_spill_line(row, stamp, reason) for row in rows]
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with self._lock, open(self.path, "a", encoding="utf-8") as f:
                f.writelines(lines)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            # Last resort: the log is the only place left to keep them.
            log.critical("ledger: %d row(s) could not be written (%s) NOR spilled to %s (%s); "
                         "the rows follow", len(rows), reason, self.path, exc)
            for line in lines:
                log.critical("ledger row: %s", line.rstrip())
            return
        log.error("ledger: %d row(s) NOT written to the database (%s); appended to %s "
                  "(load them back with thrifty.ledger.read_spill)", len(rows), reason, self.path)


class SpoolSink(Sink):
    """Rows kept in a Spool, in order, until the writer replays them into the database.

    Quiet on each batch (the writer says once that the database is down); when the disk
    refuses, rows go to `rejects` rather than nowhere.
    """

    replays = True

    def __init__(self, spool: Spool, rejects: SpillFile) -> None:
        self.spool = spool
        self.rejects = rejects

    def __repr__(self) -> str:
        return f"SpoolSink({self.spool.directory!r})"

    def keep(self, rows: list[Any], reason: str) -> None:
        try:
            self.spool.append(rows)
        except OSError as exc:  # disk full or read-only: the rejected file (or the log) is all that is left
            self.rejects.keep(rows, f"the spool {self.spool.directory} refused them ({exc}) "
                                    f"while the database was unavailable: {reason}")

    def leave(self, rows: list[Any], reason: str) -> None:
        self.keep(rows, reason)
        log.warning("ledger: %d row(s) %s; kept in the spool %s for the next start()",
                    len(rows), reason, self.spool.directory)

    def seal(self) -> None:
        self.spool.seal()

    def pending(self) -> bool:
        return bool(self.spool.segments())

    def replay(self, write: Callable[[list[LedgerRow]], None], batch_size: int,
               between: Callable[[], None]) -> tuple[int, bool]:
        done = 0
        while True:
            self.spool.seal()  # this process's rows so far become replayable
            n = self.spool.replay(write, batch_size, between=between)
            done += n
            if not self.spool.has_own():
                return done, True
            if n == 0:  # ours are being replayed by another process: not finished here
                return done, False


def _spill_line(row: Any, stamp: float, reason: str) -> str:
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
            except (ValueError, TypeError, ArithmeticError, KeyError) as exc:
                log.warning("ledger: %s line %d is not a ledger row (%s); skipped", path, n, exc)
    return out
