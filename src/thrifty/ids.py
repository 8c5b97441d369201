"""Random ids (request ids, reservation ids) from the OS's CSPRNG, drawn in batches.

One `os.urandom` call per id costs a system call; in sandboxed kernels (gVisor and the like) that
is several microseconds on every request. A batch of ids per call keeps the same randomness
(ids stay unguessable: a request id is what feedback and ledger lookups name) at a fraction of the
cost. Not thread-safe: each instance belongs to one event loop.
"""

from __future__ import annotations

import os


class RandomIds:
    def __init__(self, nbytes: int = 12, batch: int = 256) -> None:
        self._n = nbytes
        self._batch = batch
        self._buf = b""
        self._pos = 0

    def hex(self) -> str:
        if self._pos >= len(self._buf):
            self._buf, self._pos = os.urandom(self._n * self._batch), 0
        start = self._pos
        self._pos += self._n
        return self._buf[start:self._pos].hex()
