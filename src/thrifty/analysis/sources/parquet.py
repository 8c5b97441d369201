"""A folder of Parquet files in the traffic schema, as `thrifty export parquet` writes it
(`DIR/day=YYYY-MM-DD/part-*.parquet`), or a single such file: the reader and the writer.

DuckDB reads it itself (read_parquet, hive partitioning), in parallel and without Python in the
loop, so this source inserts straight into the table instead of yielding chunks. Columns a file
lacks (written by an older Thrifty) are NULL; columns it has beyond the schema are ignored.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

import duckdb

from thrifty.analysis.schema import COLUMNS, CREATE_TABLE, TABLE
from thrifty.analysis.sources.base import CHUNK_ROWS, LoadContext, Progress, Source
from thrifty.analysis.sources.columns import insert_chunk
from thrifty.analysis.sources.fields import Pricer
from thrifty.analysis.sources.ledger import Ledger
from thrifty.analysis.sources.report import LoadReport
from thrifty.errors import ThriftyError


def parquet_files(source: str) -> list[str]:
    if os.path.isdir(source):
        return sorted(glob.glob(os.path.join(glob.escape(source), "**", "*.parquet"), recursive=True))
    return [source] if os.path.isfile(source) else []


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class ParquetFolder(Source):
    name = "parquet"
    description = "a folder of Parquet files written by `thrifty export parquet` (or one .parquet file)"

    def insert_into(self, con: duckdb.DuckDBPyConnection, source: str, ctx: LoadContext) -> int:
        files = parquet_files(source)
        if not files:
            raise ThriftyError(f"no .parquet files in {source!r}")
        scan = (f"read_parquet([{', '.join(map(_literal, files))}], hive_partitioning = true, "
                "union_by_name = true)")
        have = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        select = ", ".join(f"CAST({name} AS {kind})" if name in have else f"CAST(NULL AS {kind})"
                           for name, kind, _ in COLUMNS)
        before = con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
        con.execute(f"INSERT INTO {TABLE} SELECT {select} FROM {scan}")
        added = con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0] - before
        if ctx.progress:
            ctx.progress(added, added)
        return int(added)


# Rows held in DuckDB before they are written out: bounds the export's memory whatever the
# ledger's size, and keeps part files large enough to scan well.
EXPORT_FLUSH_ROWS = 100_000


@dataclass
class ExportReport:
    rows: int = 0
    days: set[str] = field(default_factory=set)
    out: str = ""

    @property
    def files(self) -> int:
        return len(parquet_files(self.out))

    def as_dict(self) -> dict:
        return {"rows": self.rows, "days": len(self.days), "first_day": min(self.days, default=None),
                "last_day": max(self.days, default=None), "files": self.files, "out": self.out}


def export_ledger(ledger: str, out: str, *, since: float | None = None, until: float | None = None,
                  progress: Progress | None = None, pricer: Pricer | None = None,
                  chunk_rows: int = CHUNK_ROWS, flush_rows: int = EXPORT_FLUSH_ROWS) -> ExportReport:
    """Write a ledger as day-partitioned Parquet in the traffic schema: `out/day=YYYY-MM-DD/part-*.parquet`
    (days in UTC), streamed through DuckDB EXPORT_FLUSH_ROWS rows at a time, so it loads back
    with this module's reader (format `parquet`) and any engine that reads hive-partitioned Parquet.
    Files are only added: exporting twice into one folder would double its rows (the CLI refuses)."""
    os.makedirs(out, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # progress is the caller's to show
    con.execute(CREATE_TABLE)
    report = ExportReport(out=out)
    ctx = LoadContext(report=LoadReport(source=ledger, format="ledger"), pricer=pricer or Pricer(),
                      chunk_rows=chunk_rows, progress=progress)
    pending = 0
    for chunk in Ledger(since, until).read(ledger, ctx):
        pending += insert_chunk(con, chunk)
        if pending >= flush_rows:
            report.rows += _flush(con, out, report.days)
            pending = 0
    if pending:
        report.rows += _flush(con, out, report.days)
    con.close()
    return report


def _flush(con: duckdb.DuckDBPyConnection, out: str, days: set[str]) -> int:
    # make_timestamp(µs) is a zone-less TIMESTAMP, i.e. the UTC day, whatever the session's zone.
    day = "strftime(make_timestamp(CAST(ts * 1000000 AS BIGINT)), '%Y-%m-%d')"
    days.update(d for (d,) in con.execute(f"SELECT DISTINCT {day} FROM {TABLE}").fetchall())
    rows = con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    con.execute(f"COPY (SELECT *, {day} AS day FROM {TABLE}) TO {_literal(out)} "
                "(FORMAT PARQUET, PARTITION_BY (day), APPEND, FILENAME_PATTERN 'part-{uuid}')")
    con.execute(f"DELETE FROM {TABLE}")
    return int(rows)
