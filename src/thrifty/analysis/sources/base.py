"""The one interface every traffic source implements, and the line-by-line reader most share.

A source turns what a user has (a ledger URL, a log file, a trace) into chunks of `traffic`
columns (columns.Chunk), a bounded number of records at a time, so memory stays flat whatever
the file size. Malformed records go to the LoadReport with line and field, never dropped silently.
"""

from __future__ import annotations

import gzip
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import duckdb
import orjson

from thrifty.analysis.sources.columns import Chunk, chunk_of, insert_chunk
from thrifty.analysis.sources.fields import Pricer
from thrifty.analysis.sources.report import BadRecord, LoadReport

CHUNK_ROWS = 10_000

# progress(done, total): units done so far (bytes of a file, rows of a ledger) and the total,
# None when it is not known up front.
Progress = Callable[[int, "int | None"], None]


@dataclass
class LoadContext:
    report: LoadReport
    pricer: Pricer
    model: str | None = None  # what a token-only trace is priced as (the `--model` load option)
    chunk_rows: int = CHUNK_ROWS
    progress: Progress | None = None


class Source(ABC):
    """One input format, found by name (load.SOURCES).

    A source implements `read` (chunks of columns, the common case); one that DuckDB can read
    by itself (Parquet) overrides `insert_into` instead and never hands rows to Python.
    """

    name: str
    description: str

    def read(self, source: str, ctx: LoadContext) -> Iterator[Chunk]:
        """Chunks of traffic columns, at most ctx.chunk_rows rows each."""
        raise NotImplementedError(f"{type(self).__name__} implements neither read nor insert_into")

    def insert_into(self, con: duckdb.DuckDBPyConnection, source: str, ctx: LoadContext) -> int:
        """Append the source's rows to the traffic table; returns how many."""
        return sum(insert_chunk(con, chunk) for chunk in self.read(source, ctx))


def open_text(path: str) -> IO[bytes]:
    """A log file as bytes, gunzipped when its name ends in .gz."""
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


class JsonLinesSource(Source):
    """A source of one JSON object per line; subclasses map one object to one record."""

    @abstractmethod
    def record(self, obj: dict[str, Any], line: int, ctx: LoadContext) -> dict[str, Any]:
        """The traffic columns of one object; raises BadRecord naming the field at fault."""

    def read(self, source: str, ctx: LoadContext) -> Iterator[Chunk]:
        total = os.path.getsize(source) if not source.endswith(".gz") else None
        records: list[dict[str, Any]] = []
        done = 0
        with open_text(source) as f:
            for line_no, raw in enumerate(f, start=1):
                done += len(raw)
                if not raw.strip():
                    continue
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    ctx.report.add_bad(line_no, "(line)", f"not JSON: {exc}")
                    continue
                if not isinstance(obj, dict):
                    ctx.report.add_bad(line_no, "(line)", f"not a JSON object: {type(obj).__name__}")
                    continue
                try:
                    rec = self.record(obj, line_no, ctx)
                except BadRecord as bad:
                    ctx.report.add_bad(line_no, bad.field, bad.problem)
                    continue
                rec.setdefault("source_line", line_no)
                rec.setdefault("id", f"{os.path.basename(source)}:{line_no}")
                records.append(rec)
                if len(records) >= ctx.chunk_rows:
                    yield chunk_of(records)
                    records = []
                    if ctx.progress:
                        ctx.progress(done, total)
        if records:
            yield chunk_of(records)
        if ctx.progress:
            ctx.progress(done, total if total is not None else done)
