"""`load(SOURCE)`: the traffic table, filled from any supported source.

The formats are found by name in one registry (`SOURCES`), built-ins registered the same way a
new one would be; `detect` picks one unless `format` forces it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import duckdb

from thrifty.analysis.schema import CREATE_TABLE, TABLE
from thrifty.analysis.sources.base import CHUNK_ROWS, LoadContext, Progress, Source
from thrifty.analysis.sources.detect import detect
from thrifty.analysis.sources.fields import Pricer
from thrifty.analysis.sources.ledger import Ledger
from thrifty.analysis.sources.litellm import LiteLLMLogs
from thrifty.analysis.sources.parquet import ParquetFolder
from thrifty.analysis.sources.report import LoadReport
from thrifty.analysis.sources.token_trace import Mooncake, TokenCSV
from thrifty.analysis.sources.wire_log import WireLogs
from thrifty.errors import ThriftyError
from thrifty.pricing import PriceBook

# Format name -> a factory of its source, taking the load's time window (only the ledger uses it).
SOURCES: dict[str, Callable[..., Source]] = {}


def register(name: str, factory: Callable[..., Source]) -> None:
    if name in SOURCES:
        raise ValueError(f"a traffic source named {name!r} is registered already")
    SOURCES[name] = factory


register("ledger", lambda since=None, until=None: Ledger(since, until))
register("parquet", lambda **_: ParquetFolder())
register("litellm", lambda **_: LiteLLMLogs())
register("wire", lambda **_: WireLogs())
register("token-csv", lambda **_: TokenCSV())
register("mooncake", lambda **_: Mooncake())


def formats() -> dict[str, str]:
    """Format name -> one line saying what it reads (for --help)."""
    return {name: factory().description for name, factory in SOURCES.items()}


def load(source: str, *, format: str | None = None, con: duckdb.DuckDBPyConnection | None = None,
         progress: Progress | None = None, model: str | None = None, price_book: PriceBook | None = None,
         since: float | None = None, until: float | None = None,
         chunk_rows: int = CHUNK_ROWS) -> LoadReport:
    """Create the `traffic` table in `con` (a new in-memory DuckDB when None) and fill it from
    `source`. The connection is `report.con`.

    `model` prices a token-only trace as that model; `since`/`until` (unix seconds, [since,
    until)) window a ledger. Malformed records are in the report, not in the table. Raises
    ThriftyError for a source that cannot be read at all (missing, unknown format, no ledger).
    """
    if not isinstance(source, str) or not source.strip():
        raise ThriftyError("no source given")
    name = format or detect(source)
    factory = SOURCES.get(name)
    if factory is None:
        raise ThriftyError(f"unknown format {name!r} (known: {', '.join(sorted(SOURCES))})")
    target = source if name == "ledger" else os.path.expanduser(source)  # the ledger reads URLs itself
    if con is None:
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")  # progress is the caller's to show
    con.execute(CREATE_TABLE)
    report = LoadReport(source=source, format=name)
    ctx = LoadContext(report=report, pricer=Pricer(price_book), model=model, chunk_rows=chunk_rows,
                      progress=progress)
    try:
        report.rows = factory(since=since, until=until).insert_into(con, target, ctx)
    except (OSError, UnicodeDecodeError) as exc:
        raise ThriftyError(f"cannot read {source!r}: {exc}") from None
    report.priced, report.unpriced = con.execute(
        f"SELECT count(*) FILTER (WHERE cost_estimated), "
        f"count(*) FILTER (WHERE cost_usd IS NULL AND input_tokens IS NOT NULL "
        f"AND (status IS NULL OR status < 400)) FROM {TABLE}").fetchone()
    report.con = con
    return report

