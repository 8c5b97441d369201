"""`thrifty export parquet --ledger URL --out DIR`: the ledger as day-partitioned Parquet.

The files hold the `traffic` schema of thrifty.analysis (the same columns `analyze` and
`simulate` read), one folder per UTC day (`DIR/day=YYYY-MM-DD/part-*.parquet`), so the folder
loads back as a source of its own and object storage, ClickHouse or BigQuery read it as is.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def add_parser(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "parquet", help="the ledger as day-partitioned Parquet (the traffic schema)",
        description="Write a Thrifty ledger (SQLite or PostgreSQL) as Parquet files, one folder per UTC day "
                    "(DIR/day=YYYY-MM-DD/part-*.parquet), in the traffic schema that `thrifty analyze` and "
                    "`thrifty simulate` read: point them at DIR to run the same analysis on an exported "
                    "ledger of any size. The ledger is streamed in chunks, so memory stays flat.")
    p.add_argument("--ledger", required=True, metavar="URL",
                   help="sqlite:///PATH, a ledger file path, or postgresql://USER@HOST:PORT/DB")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (must hold no Parquet yet)")
    p.add_argument("--since", metavar="TIME", help="only calls started at or after TIME (ISO date/time or unix s)")
    p.add_argument("--until", metavar="TIME", help="only calls started before TIME (ISO date/time or unix s)")
    p.add_argument("--json", action="store_true", help="print JSON: rows, days, files, out")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from thrifty import jsonutil
    from thrifty.analysis.sources.fields import parse_ts
    from thrifty.analysis.sources.parquet import export_ledger, parquet_files
    from thrifty.analysis.sources.report import BadRecord

    window: dict[str, float | None] = {}
    for name in ("since", "until"):
        value = getattr(args, name)
        try:
            window[name] = None if value is None else parse_ts(value, f"--{name}")
        except BadRecord as bad:
            return _fail(f"{bad.field}: {bad.problem}")
    if window["since"] is not None and window["until"] is not None and window["since"] >= window["until"]:
        return _fail("--since must be before --until")
    out = os.path.expanduser(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        return _fail(f"--out {args.out!r} is a file, not a folder")
    if parquet_files(out):
        return _fail(f"--out {args.out!r} already holds Parquet files; exporting again would double them "
                     "(choose an empty folder)")
    bar = _progress_bar() if sys.stderr.isatty() and not args.json else None
    try:
        report = export_ledger(args.ledger, out, since=window["since"], until=window["until"], progress=bar)
    finally:
        if bar is not None:
            print(file=sys.stderr)
    result = report.as_dict()
    if args.json:
        print(jsonutil.dumps(result).decode())
    elif result["rows"]:
        print(f"wrote {result['rows']:,} rows in {result['files']} files over {result['days']} days "
              f"({result['first_day']} .. {result['last_day']}) to {out}")
    else:
        print(f"wrote 0 rows: the ledger has no calls in that window ({out} is empty)")
    return 0


def _progress_bar() -> Any:
    def show(done: int, total: int | None) -> None:
        if total:
            filled = int(30 * done / total)
            sys.stderr.write(f"\rexporting [{'#' * filled}{'.' * (30 - filled)}] {done * 100 // total:3d}% "
                             f"{done:,} rows")
        else:
            sys.stderr.write(f"\rexporting {done:,} rows")
        sys.stderr.flush()

    return show


def _fail(reason: str) -> int:
    print(f"thrifty: {reason}", file=sys.stderr)
    return 2
