"""The journal: a row is on local disk when record() returns, so no crash of the process loses it.

The ledger's queue is memory; the journal is its write-ahead log. Each gateway process appends
JSON lines to segments of its own (a Spool's: `<origin>-<seq>.jsonl`, opened under flock) in
one directory, with one os.write per call:

- an *open* line when a call starts (once its tenant is known): `{"_open": id, "t": ..., ...}`;
- a *hold* line when the budgets reserve for it: `{"_hold": reservation id, "r": Enforcer.held(r)}`,
  needed until the reservation is settled or released;
- its *rows* (the call's and its discarded attempts'), as `codec.row_to_json` lines numbered
  `"_n"`, and now and then, from the writer thread, `{"_done": n}`: every row up to n is written.

A write reaches the kernel's page cache, which outlives the process: `kill -9` loses nothing.
Only a power cut or a kernel crash can lose the last lines, unless `fsync=True`
(`ledger.journal_fsync`), which syncs each write at the cost of a disk flush per call.

A segment is deleted once every row in it was handled by the writer (committed to the database,
or kept by a sink that is itself durable: spool, spill file) and every call opened in it has its
row; a segment grows to `segment_bytes` before the next one starts. A clean close() leaves no
file behind.

Recovery (`adopt`, at start): each process also holds an flock on `<origin>.lock` for as long
as it lives. Segments whose origin lock can be taken belong to a process that is gone: their
rows are recorded again (the databases write one row per request_id, so a row already written is
skipped; those up to the last `_done` are not even tried), every call opened without a row becomes an *interrupted* row (status 0, error_type
"interrupted", cost NULL: what the provider billed is not known), and the budget holds not
settled are handed back to be settled at their worst case (recorder.settle_interrupted). What is recovered is
journaled again by the adopting process before the dead one's files are deleted, so a crash during
recovery loses nothing either (the next start recovers it again, idempotently). Dead processes'
journals are taken at start only: a replica or worker that dies is recovered when one starts.
As with the spool, one directory must serve one database, on local disk.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import orjson

from thrifty.ledger.codec import clean_text, row_from_json, row_to_json
from thrifty.ledger.schema import LedgerRow
from thrifty.ledger.spool import SEGMENT, Spool, sync_dir, try_lock

log = logging.getLogger("thrifty.ledger")

# An interrupted call: no answer was completed, so no HTTP status was sent for it to the end.
INTERRUPTED_STATUS = 0
INTERRUPTED = "interrupted"
SEGMENT_BYTES = 1 << 20
_MAP_SLACK = 256 << 10  # a mapped segment's room past SEGMENT_BYTES, for the write that crosses it


@dataclass
class Recovered:
    """What dead processes left: rows to record again, interrupted rows, holds to settle."""

    rows: list[LedgerRow] = field(default_factory=list)
    interrupted: list[LedgerRow] = field(default_factory=list)
    holds: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (reservation id, Enforcer.held)
    files: list[str] = field(default_factory=list)  # the dead processes' segments and lock files
    _locks: list[int] = field(default_factory=list, repr=False)

    def release(self, delete: bool) -> None:
        """Delete the dead processes' files (once what they held is journaled again) and let
        their locks go."""
        if delete:
            for path in self.files:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        for fd in self._locks:
            os.close(fd)
        self._locks.clear()


class Journal:
    """Thread-safe: record paths append, the ledger's writer thread says what is done."""

    def __init__(self, directory: str, *, fsync: bool = False, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.spool = Spool(directory, sync=fsync, mapped_bytes=segment_bytes + _MAP_SLACK)
        self._lock = threading.Lock()
        self._pending: dict[int, int] = {}  # segment -> lines whose work is not done yet
        self._rows: dict[str, tuple[int, int]] = {}  # id of a row not yet handled -> (segment, number)
        self._numbered = 0  # rows journaled so far; each row line carries its number as "_n"
        self._done_to = 0  # every row numbered up to this one is done (journaled as {"_done": n})
        self._done_early: set[int] = set()  # done, but after a row still waiting
        self._open: dict[str, list[int]] = {}  # id of a call without its row -> its lines' segments
        self._holds: dict[str, list[int]] = {}  # reservation id of a budget hold -> its lines' segments
        self._size = 0  # bytes in the open segment
        self._seq: int | None = None  # the open segment
        self._lock_fd: int | None = None
        self._failed = False  # the disk refused a write: said once, until one succeeds

    def __repr__(self) -> str:
        return f"Journal({self.directory!r})"

    # -- the request path ------------------------------------------------------------------

    def open_call(self, request_id: str, facts: dict[str, Any]) -> None:
        """A call started: if the process dies before its row, it is recorded as interrupted."""
        seq = self._write(_dumps({"_open": request_id, **facts}), 1)
        if seq is not None:
            with self._lock:
                self._open.setdefault(request_id, []).append(seq)

    def hold(self, reservation_id: str, held: dict[str, Any]) -> None:
        """The budgets hold `held` (Enforcer.held) until settled() names `reservation_id`."""
        seq = self._write(_dumps({"_hold": reservation_id, "r": held}), 1)
        if seq is not None:
            with self._lock:
                self._holds.setdefault(reservation_id, []).append(seq)

    def rows(self, rows: Sequence[LedgerRow]) -> None:
        """Journal `rows` (one write); each counts until done() says the writer handled it."""
        lines = [row_to_json(r) for r in rows]
        try:
            with self._lock:
                first = self._numbered
                for n, line in enumerate(lines, first + 1):
                    line["_n"] = n
                seq = self._write_locked(b"".join(_dumps(line) for line in lines), len(rows))
                self._numbered = first + len(rows)
                finished = []
                for n, r in enumerate(rows, first + 1):
                    rid = r.request_id
                    if rid in self._rows:  # the same id twice: the first one's line stands for both
                        self._pending[seq] -= 1
                        self._done_early.add(n)
                        continue
                    self._rows[rid] = (seq, n)
                    finished.extend(self._open.pop(rid, ()))
                self._release(finished)
        except OSError as exc:
            self._refused(exc)

    # -- the writer's side -----------------------------------------------------------------

    def done(self, rows: Iterable[LedgerRow]) -> None:
        """The writer is through with `rows` (committed, or kept by a durable sink)."""
        with self._lock:
            seqs = []
            for r in rows:
                found = self._rows.pop(r.request_id, None)
                if found is not None:
                    seqs.append(found[0])
                    self._done_early.add(found[1])
            self._mark_done()
            self._release(seqs)

    def settled(self, reservation_ids: Iterable[str]) -> None:
        """These holds are settled or released: their lines are no longer needed."""
        with self._lock:
            seqs = []
            for rid in reservation_ids:
                seqs.extend(self._holds.pop(rid, ()))
            self._release(seqs)

    def close(self) -> None:
        """Seal; when nothing is pending, delete this process's files (a clean stop leaves none)."""
        with self._lock:
            self.spool.seal()
            self._seq = None
            clean = not any(self._pending.values())
            if clean:
                for seq in list(self._pending):
                    self.spool.remove(seq)
                self._pending.clear()
            if self._lock_fd is not None:
                if clean:
                    try:
                        os.unlink(self._lock_path(self.spool.origin))
                    except FileNotFoundError:
                        pass
                os.close(self._lock_fd)
                self._lock_fd = None
        if clean:
            try:
                os.rmdir(self.directory)
            except OSError:  # not empty (others' files), or not there
                pass

    def pending(self) -> int:
        """Lines of this process whose work is not done (for tests and the benchmark)."""
        with self._lock:
            return sum(self._pending.values())

    # -- recovery --------------------------------------------------------------------------

    def adopt(self) -> Recovered:
        """Take the files of every dead process in the directory (see the module docstring).

        The caller records `rows` and `interrupted` (journaling them here), journals `holds`
        with keep_holds(), then calls `release(delete=True)`."""
        out = Recovered()
        by_origin: dict[str, list[str]] = {}
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return out
        for name in names:
            m = SEGMENT.match(name)
            if m and m.group(1) != self.spool.origin:
                by_origin.setdefault(m.group(1), []).append(name)
        for origin, segments in by_origin.items():
            fd = self._take_dead(origin)
            if fd is None:
                continue
            out._locks.append(fd)
            out.files.extend(os.path.join(self.directory, n) for n in segments)
            out.files.append(self._lock_path(origin))
            self._read_origin(origin, segments, out)
        if out.files:
            log.warning("ledger: journal %s: recovering %d row(s), %d interrupted call(s) and %d budget "
                        "hold(s) left by %d stopped process(es)", self.directory, len(out.rows),
                        len(out.interrupted), len(out.holds), len(out._locks))
        return out

    def keep_holds(self, holds: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Journal adopted holds again, so they survive until settled() (or the next start)."""
        for rid, held in holds:
            self.hold(rid, held)

    def _take_dead(self, origin: str) -> int | None:
        path = self._lock_path(origin)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if try_lock(fd) and os.fstat(fd).st_nlink > 0:
            return fd
        os.close(fd)  # alive (or being adopted by another process)
        return None

    def _read_origin(self, origin: str, segments: list[str], out: Recovered) -> None:
        opens: dict[str, dict[str, Any]] = {}
        rows: dict[str, tuple[int, LedgerRow]] = {}
        done_to, ended = 0, 0.0
        for name in segments:
            path = os.path.join(self.directory, name)
            try:
                ended = max(ended, os.stat(path).st_mtime)
                with open(path, "rb") as f:
                    data = f.read()
                lines = data[:data.find(b"\0")].splitlines() if b"\0" in data else data.splitlines()
            except FileNotFoundError:
                continue
            for line in lines:
                if not line.strip():
                    continue
                try:
                    entry = orjson.loads(line)
                    if "_open" in entry:
                        opens[entry["_open"]] = entry
                    elif "_hold" in entry:
                        out.holds.append((entry["_hold"], entry["r"]))
                    elif "_done" in entry:
                        done_to = max(done_to, int(entry["_done"]))
                    else:
                        row = row_from_json(entry)
                        rows.setdefault(row.request_id, (int(entry.get("_n", 0)), row))
                except (ValueError, TypeError, ArithmeticError, KeyError) as exc:
                    # Only a line torn by the crash (the last one) is expected here.
                    log.error("ledger: journal %s: a line that is not an entry was skipped (%s): %r",
                              name, exc, line[:2000])
        # Rows numbered up to done_to were written (or kept by a sink) before the process died.
        out.rows.extend(row for n, row in rows.values() if n > done_to)
        out.interrupted.extend(interrupted_row(e, ended) for rid, e in opens.items() if rid not in rows)

    # -- internals ---------------------------------------------------------------------------

    def _lock_path(self, origin: str) -> str:
        return os.path.join(self.directory, f"{origin}.lock")

    def _write(self, data: bytes, lines: int) -> int | None:
        """Append `data` (`lines` lines that count until done); the segment, None if the disk
        refused (logged: the row still goes to the database, it is just not journaled)."""
        try:
            with self._lock:
                return self._write_locked(data, lines)
        except OSError as exc:
            self._refused(exc)
            return None

    def _write_locked(self, data: bytes, lines: int) -> int:
        if self._lock_fd is None:
            self._lock_own()
        if self._seq is not None and self._size >= self.segment_bytes:
            self._rotate()
        seq = self.spool.write(data)
        if seq != self._seq:
            self._seq, self._size = seq, 0
        self._size += len(data)
        self._pending[seq] = self._pending.get(seq, 0) + lines
        self._failed = False
        return seq

    def _refused(self, exc: OSError) -> None:
        if not self._failed:
            self._failed = True
            log.error("ledger: journal %s refused a write (%s); rows are recorded without it "
                      "until it takes writes again", self.directory, exc)

    def _mark_done(self) -> None:
        """Journal how far the rows are done, so a recovery records again only those after it
        (one short line per batch, from the writer thread; lock held)."""
        done, early = self._done_to, self._done_early
        while done + 1 in early:
            done += 1
            early.discard(done)
        if done == self._done_to:
            return
        self._done_to = done
        try:
            self._write_locked(b'{"_done":%d}\n' % done, 0)
        except OSError as exc:  # recovery then only records some rows again: they are skipped
            self._refused(exc)

    def _lock_own(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(self._lock_path(self.spool.origin), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if not try_lock(fd):  # the origin is unique per process: cannot happen
            os.close(fd)
            raise OSError(f"journal lock {self.spool.origin} is held elsewhere")
        self._lock_fd = fd
        sync_dir(self.directory)

    def _rotate(self) -> None:
        old, self._seq = self._seq, None
        self.spool.seal()
        if old is not None and not self._pending.get(old):
            self._pending.pop(old, None)
            self.spool.remove(old)

    def _release(self, seqs: Iterable[int]) -> None:
        """Lines in `seqs` are done (lock held): delete the segments left with nothing to do."""
        for seq in seqs:
            left = self._pending.get(seq, 0) - 1
            if left < 0:  # not ours to count (cannot happen; never worth a crash)
                continue
            self._pending[seq] = left
            if left == 0 and seq != self._seq:
                del self._pending[seq]
                self.spool.remove(seq)
        if self._seq is not None and self._size >= self.segment_bytes and not self._pending.get(self._seq):
            self._rotate()


def interrupted_row(entry: dict[str, Any], ended_at: float) -> LedgerRow:
    """The row of a call whose process died before it had one: cost unknown (NULL), status 0."""
    started = float(entry["t"])
    finished = max(started, ended_at)
    return LedgerRow(request_id=entry["_open"], started_at=started, finished_at=finished,
                     tenant=entry.get("tenant"), feature=entry.get("feature"), user=entry.get("user"),
                     task=entry.get("task"), call_site=entry.get("call_site"),
                     surface=entry.get("surface") or "", provider=None, requested_model=None,
                     served_model=None, tier=None, status=INTERRUPTED_STATUS, error_type=INTERRUPTED,
                     latency_ms=(finished - started) * 1000.0, cost_usd=None)


def _dumps(entry: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # a lone surrogate (orjson writes UTF-8 only), or a value that is no JSON
        try:
            return orjson.dumps(_cleaned(entry), default=str, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError as exc:
            log.error("ledger: journal: entry %r not journaled (%s)", entry.get("request_id"), exc)
            return b""


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {_cleaned(k): _cleaned(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cleaned(v) for v in value]
    return value
