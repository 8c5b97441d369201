"""Build a small `traffic` table from dicts, for tests of the analyses with a known answer.

Only the columns a test names are filled; every other column is NULL, as a source that lacks it
would leave it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import duckdb

from thrifty.analysis import schema


def traffic(rows: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(schema.CREATE_TABLE)
    for n, row in enumerate(rows, 1):
        row = {"id": f"r{n}", "source_line": n, **row}
        unknown = set(row) - set(schema.COLUMN_NAMES)
        assert not unknown, f"not traffic columns: {unknown}"
        if isinstance(row.get("cost_usd"), (str, float, int)):
            row["cost_usd"] = Decimal(str(row["cost_usd"]))
        names = ", ".join(row)
        con.execute(f"INSERT INTO {schema.TABLE} ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    return con
