"""Moving rows into DuckDB fast without pandas or pyarrow: one chunk of columns, as numpy arrays.

DuckDB scans a dict of numpy arrays in place (its NumPy replacement scan), which is several
times faster than `executemany` or `unnest` of Python lists. Object arrays carry None as NULL;
each column is cast to its schema type on the way in, so a source hands over plain Python values
(money as Decimal or exact text, prefix hashes as a list of strings).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import duckdb
import numpy as np

from thrifty.analysis.schema import COLUMN_NAMES, COLUMNS, TABLE

Chunk = dict[str, list[Any]]  # column -> values, all of one length; absent columns are NULL
_TYPES = {name: kind for name, kind, _ in COLUMNS}
_NUMPY = {"BIGINT": np.int64, "INTEGER": np.int64, "DOUBLE": np.float64, "BOOLEAN": np.bool_}


def chunk_of(records: Sequence[Mapping[str, Any]], names: Iterable[str] = COLUMN_NAMES) -> Chunk:
    """Row dicts (only the columns they know) as a column chunk."""
    return {name: [r.get(name) for r in records] for name in names}


def insert_chunk(con: duckdb.DuckDBPyConnection, chunk: Chunk, table: str = TABLE) -> int:
    """Append one chunk to `table`; returns the rows added."""
    names = [n for n in COLUMN_NAMES if n in chunk and any(v is not None for v in chunk[n])]
    if not chunk:
        return 0
    length = len(next(iter(chunk.values())))
    if not length:
        return 0
    if not names:  # every value NULL: still count the rows
        names = ["id"]
    arrays: dict[str, np.ndarray] = {}
    select: list[str] = []
    for name in names:
        values = chunk[name]
        if len(values) != length:
            raise ValueError(f"column {name} has {len(values)} values, the chunk {length}")
        kind = _TYPES[name]
        numpy_type = _NUMPY.get(kind)
        if numpy_type is not None:
            # A typed array and a NULL mask: DuckDB reads these as a block, where an object array
            # of Python numbers costs it a type check per value.
            nulls = [v is None for v in values]
            if any(nulls):
                arrays[f"{name}__null"] = np.array(nulls, dtype=bool)
                values = [0 if v is None else v for v in values]
                select.append(f'CASE WHEN "{name}__null" THEN NULL ELSE CAST("{name}" AS {kind}) END')
            else:
                select.append(f'CAST("{name}" AS {kind})')
            arrays[name] = np.array(values, dtype=numpy_type)
            continue
        arr = np.empty(length, dtype=object)
        if kind.endswith("[]"):
            # numpy would read equal-length lists as a 2-D array; fill element by element.
            for i, v in enumerate(values):
                arr[i] = v
        elif kind.startswith("DECIMAL"):
            # Exact text in plain notation: one type for DuckDB to parse, whatever the source held.
            arr[:] = [v if v is None or isinstance(v, str) else format(v, "f") for v in values]
        else:
            arr[:] = values
        arrays[name] = arr
        select.append(f'CAST("{name}" AS {kind})')
    con.register("_thrifty_chunk", arrays)
    try:
        con.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(select)} FROM _thrifty_chunk")
    finally:
        con.unregister("_thrifty_chunk")
    return length

