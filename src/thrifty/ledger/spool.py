"""The spool: ledger rows kept on local disk while the database cannot take them.

A spool is a directory of segment files, JSON Lines of `schema.row_to_json`, named
`<origin>-<seq>.jsonl`. The origin is one per Spool object (a start time, the pid and a random
tag), so every process writes segments of its own and names sort oldest first.

Rules that keep every row, whatever crashes when:

- A segment is appended to only while its writer holds an exclusive `flock` on it; `seal()`
  closes it (and so releases the lock), and a sealed segment is never appended to again.
- A row is acknowledged only after its bytes are written (and fsynced, unless `sync=False`).
- Replay takes the segment's lock first (a segment still locked is someone's open segment, or
  another process replaying it, and is skipped together with the later segments of its origin,
  so each origin's rows reach the database in the order they were spooled). The file is deleted
  only after every row in it was handed to `write` and `write` returned. A process that dies in
  between leaves the file, and its rows are replayed again by whoever comes next: writes must be
  idempotent (the ledger's are: one row per request_id).
- A line torn by a crash in the middle of an append is the only thing ever skipped (it is
  logged whole); the segment's later lines are still read.

Segments of every origin in the directory are replayed, so a spool left by a process that died
is picked up by the next one using the same directory. One directory must serve one database.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import mmap
import os
import re
import secrets
import threading
import time
from typing import Callable, Iterator, Sequence

from thrifty.ledger.codec import row_from_json, row_to_json
from thrifty.ledger.schema import LedgerRow

log = logging.getLogger("thrifty.ledger")

SEGMENT = _SEGMENT = re.compile(r"^(\d{20}-\d+-[0-9a-f]{6})-(\d{12})\.jsonl$")


class Spool:
    """Append rows, replay them in order, delete what was replayed. Thread-safe."""

    def __init__(self, directory: str, *, sync: bool = True, mapped_bytes: int = 0) -> None:
        self.directory = directory
        self.sync = sync
        # mapped_bytes > 0: each segment is a file of that size mapped into memory (MAP_SHARED),
        # and write() copies into it: no system call per write, so the writing thread keeps the
        # GIL (an os.write hands it to whichever thread waits, the ledger writer's, at the cost
        # of tens of microseconds here). The pages belong to the kernel's page cache, which
        # outlives the process: kill -9 loses nothing. A segment left by a crash ends in zero
        # bytes (no line holds a raw NUL: JSON escapes it); seal() cuts them off.
        self.mapped_bytes = mapped_bytes
        self._map: mmap.mmap | None = None
        self._at = 0  # bytes written into the mapped segment
        # Sorts by start time first, so older processes' rows are replayed first.
        self.origin = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}"
        self._seq = 0
        self._fd: int | None = None  # this spool's open segment, its flock held
        self._lock = threading.Lock()  # guards _fd and _seq
        # Bytes of a segment already replayed by this object, so a replay cut short by the
        # database resumes where it stopped instead of from the top (a restart starts over).
        self._done_bytes: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"Spool({self.directory!r})"

    # -- writing ---------------------------------------------------------------------------

    def append(self, rows: Sequence[LedgerRow]) -> None:
        """Append `rows` to this spool's open segment (opened on first use); durable on return.

        Raises OSError when the disk refuses; the rows are then not in the spool.
        """
        if not rows:
            return
        self.write("".join(json.dumps(row_to_json(r), ensure_ascii=False) + "\n" for r in rows).encode())

    def write(self, data: bytes) -> int:
        """Append whole lines (`data`) to the open segment; return that segment's number.

        The journal (journal.py) writes its own lines through this; raises OSError as append().
        """
        with self._lock:
            if self.mapped_bytes:
                return self._write_mapped(data)
            if self._fd is None:
                self._fd = self._new_segment()
            try:
                _write_all(self._fd, data)
                if self.sync:
                    os.fsync(self._fd)
            except OSError:
                # Part of a line may be on disk: start a fresh segment rather than append after it.
                self._seal_locked()
                raise
            return self._seq

    def _write_mapped(self, data: bytes) -> int:
        m = self._map
        if m is not None and self._at + len(data) > len(m):
            self._seal_locked()
            m = None
        if m is None:
            self._fd = self._new_segment()
            try:
                size = max(self.mapped_bytes, len(data))
                os.ftruncate(self._fd, size)
                m = self._map = mmap.mmap(self._fd, size)
            except (OSError, ValueError) as exc:
                self._seal_locked()
                raise OSError(f"cannot map a journal segment in {self.directory}: {exc}") from exc
            self._at = 0
        end = self._at + len(data)
        m[self._at:end] = data
        self._at = end
        if self.sync:
            m.flush()
        return self._seq

    def open_segment(self) -> int | None:
        """The number of the segment being appended to, None when none is open."""
        with self._lock:
            return self._seq if self._fd is not None else None

    def segment_path(self, seq: int, origin: str | None = None) -> str:
        return os.path.join(self.directory, f"{origin or self.origin}-{seq:012d}.jsonl")

    def remove(self, seq: int) -> None:
        """Delete one of this spool's segments (sealing it first if it is the open one)."""
        with self._lock:
            if self._fd is not None and seq == self._seq:
                self._seal_locked()
        try:
            os.unlink(self.segment_path(seq))
        except FileNotFoundError:
            pass

    def seal(self) -> None:
        """Close the open segment so it can be replayed; the next append opens a new one."""
        with self._lock:
            self._seal_locked()

    def close(self) -> None:
        self.seal()

    def _seal_locked(self) -> None:
        fd, self._fd = self._fd, None
        m, self._map = self._map, None
        if m is not None:
            m.close()
            if fd is not None:
                try:
                    os.ftruncate(fd, self._at)  # the zero tail a mapped segment was sized with
                except OSError:
                    pass  # readers stop at the first zero byte anyway
        if fd is not None:
            os.close(fd)

    def _new_segment(self) -> int:
        os.makedirs(self.directory, exist_ok=True)
        while True:
            self._seq += 1
            path = self.segment_path(self._seq)
            mode = os.O_RDWR if self.mapped_bytes else os.O_WRONLY | os.O_APPEND  # a mapping needs O_RDWR
            fd = os.open(path, mode | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            # A replayer may see the new empty file and take it before we lock it; it then
            # deletes it, so only a file still linked after we got the lock is ours to use.
            if _try_lock(fd) and os.fstat(fd).st_nlink > 0:
                _sync_dir(self.directory)
                return fd
            os.close(fd)

    # -- reading ---------------------------------------------------------------------------

    def segments(self) -> list[str]:
        """Segment file names in replay order (every origin, oldest first)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if _SEGMENT.match(n))

    def has_own(self) -> bool:
        """Whether rows appended through this object are still on disk (open or sealed)."""
        prefix = self.origin + "-"
        return any(n.startswith(prefix) for n in self.segments())

    def read(self) -> Iterator[LedgerRow]:
        """Every row in the spool, in replay order, without taking or deleting anything."""
        for name in self.segments():
            try:
                with open(os.path.join(self.directory, name), "rb") as f:
                    for rows, _ in _batches(f, name, 0, 1024):
                        yield from rows
            except FileNotFoundError:  # replayed meanwhile
                continue

    def replay(self, write: Callable[[list[LedgerRow]], None], batch_size: int = 1024, *,
               between: Callable[[], None] | None = None) -> int:
        """Hand every sealed segment's rows to `write`, oldest first, in batches; return how many.

        A segment is deleted once all its rows were written. When `write` raises, replay stops
        there and the exception propagates; what was not written stays in the spool. `between`
        runs after each batch (the ledger moves newly recorded rows to the spool there).
        """
        done = 0
        blocked: set[str] = set()  # origins with a segment held elsewhere: their later ones wait
        for name in self.segments():
            origin = _SEGMENT.match(name).group(1)  # type: ignore[union-attr]
            if origin in blocked:
                continue
            path = os.path.join(self.directory, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # another process finished it
                continue
            try:
                if not _try_lock(fd):
                    blocked.add(origin)
                    continue
                if os.fstat(fd).st_nlink == 0:
                    continue
                with os.fdopen(os.dup(fd), "rb") as f:
                    offset = self._done_bytes.get(name, 0)
                    for rows, end in _batches(f, name, offset, batch_size):
                        if rows:
                            write(rows)
                            done += len(rows)
                        self._done_bytes[name] = end
                        if between is not None:
                            between()
                # Deleted while still locked, so no one else can be reading it for replay.
                os.unlink(path)
                _sync_dir(self.directory)
                self._done_bytes.pop(name, None)
            finally:
                os.close(fd)
        return done


def _batches(f, name: str, offset: int, size: int) -> Iterator[tuple[list[LedgerRow], int]]:
    """(rows, byte offset after them) from binary file `f`, starting at `offset`."""
    f.seek(offset)
    pos, rows = offset, []
    while True:
        line = f.readline()
        if not line:
            break
        pos += len(line)
        if line.strip():
            try:
                rows.append(row_from_json(json.loads(line)))
            except (ValueError, TypeError, ArithmeticError, KeyError) as exc:
                log.error("ledger: spool %s: a line that is not a row was skipped (%s): %r", name, exc, line)
        if len(rows) >= size:
            yield rows, pos
            rows = []
    yield rows, pos


def try_lock(fd: int) -> bool:
    """Take an exclusive flock on `fd` without waiting; False when another holds it."""
    return _try_lock(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _sync_dir(directory: str) -> None:
    """Make a created or deleted name durable (a deleted one coming back only repeats rows)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


sync_dir = _sync_dir
