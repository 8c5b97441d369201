"""The queue between record() and the writer thread: rows, flush markers and one stop marker.

A flush marker is a threading.Event the writer sets once the rows queued before it are handled;
STOP (queued by close(), always last) ends the writer after the rows before it.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

STOP = object()


class Inbox:
    """Unbounded, so record() never blocks and never drops."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def put(self, item: Any) -> None:
        self._queue.put(item)

    def qsize(self) -> int:
        return self._queue.qsize()

    def get(self, timeout: float | None = None) -> Any:
        """The next item; raises queue.Empty after `timeout` seconds (None: waits for ever)."""
        return self._queue.get(timeout=timeout)

    def gather(self, item: Any, batch_size: int, flush_interval: float) -> tuple[list[Any], list[threading.Event], bool]:
        """A batch starting with `item`: up to batch_size rows, waiting at most flush_interval
        after the first; (rows, flush markers, whether STOP was reached).

        A flush marker or STOP ends the batch at once.
        """
        batch: list[Any] = []
        deadline = 0.0
        while True:
            if item is STOP:
                return batch, [], True
            if isinstance(item, threading.Event):
                return batch, [item], False
            batch.append(item)
            if len(batch) >= batch_size:
                return batch, [], False
            if len(batch) == 1:
                deadline = time.monotonic() + flush_interval
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                return batch, [], False

    def take_queued(self) -> tuple[list[Any], list[threading.Event]]:
        """What is queued now, without waiting: rows, and flush markers. STOP stays queued for
        the writer (it is always last: close() queues nothing after it)."""
        items: list[Any] = []
        waiters: list[threading.Event] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return items, waiters
            if item is STOP:
                self._queue.put(STOP)
                return items, waiters
            if isinstance(item, threading.Event):
                waiters.append(item)
            else:
                items.append(item)

    def take_all(self) -> list[Any]:
        """Empty the queue: the rows in it; flush markers are set, STOP dropped."""
        rows = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return rows
            if isinstance(item, threading.Event):
                item.set()
            elif item is not STOP:
                rows.append(item)
