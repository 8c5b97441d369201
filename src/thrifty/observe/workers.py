"""Metrics that add up across the worker processes of `thrifty serve --workers N`.

Each worker counts in its own memory, and a scrape lands on one of them: without help, `/metrics`
would show one worker's share. prometheus_client's documented multiprocess mode fixes that: with
`PROMETHEUS_MULTIPROC_DIR` set before the library is imported, every value lives in a per-process
file under that folder, and the scrape (whichever worker answers it) reads them all through a
`MultiProcessCollector`. Counters and histograms are summed; the budget gauges keep the value set
last (`mostrecent`: the worker answering the scrape reads the budgets just before it).

`thrifty serve` sets this up itself (`shared_metrics_dir`), so users do nothing; the workers are
spawned processes that import prometheus_client afresh, after the variable is set. One process
(`--workers 1`, tests, benchmarks) keeps the plain in-memory registry.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import tempfile
from typing import Iterator

log = logging.getLogger("thrifty.observe")

ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """A folder for the workers' metric files, in `$PROMETHEUS_MULTIPROC_DIR` while the server runs.

    A folder the user named there is used, emptied of metric files at start (the library's
    rule: files of an earlier run would be added to this one's), and left in place. Otherwise a
    fresh temporary folder is made for this start and removed when the server stops."""
    given = os.environ.get(ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):
            os.remove(stale)
        yield given
        return
    path = tempfile.mkdtemp(prefix="thrifty-metrics-")
    os.environ[ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def multiprocess_dir() -> str | None:
    """The folder the metric values of this process live in, or None when they are in memory.

    Asks prometheus_client what it chose at import, not only the environment: a variable set
    after the import changes nothing, and reading files nobody writes would show zeros."""
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return os.environ.get(ENV)


def render_all(path: str) -> bytes:
    """The text exposition of every worker's values under `path`."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return generate_latest(registry)


def worker_exits(path: str) -> None:
    """The library's bookkeeping for a worker that stops: its live-only gauge files go. Its
    counters stay, so what it counted is still in the totals."""
    from prometheus_client.multiprocess import mark_process_dead

    try:
        mark_process_dead(os.getpid(), path)
    except OSError as exc:  # the folder was removed first (the server is stopping)
        log.debug("metrics: worker files not marked dead: %s", exc)
