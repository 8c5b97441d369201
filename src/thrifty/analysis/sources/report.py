"""What a load did: rows in, and every record that could not be read, by line and field.

A malformed record is never dropped silently: it is counted, and the first `MAX_LISTED` are kept
with their line, the field at fault and the problem, so a user can find and fix them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from thrifty.errors import BadRecord  # noqa: F401 (the parsers raise it; re-exported here)

MAX_LISTED = 100


@dataclass
class LoadReport:
    source: str
    format: str
    rows: int = 0  # rows added to the traffic table
    bad_count: int = 0  # every malformed record, listed or not
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (line, field, problem), capped
    priced: int = 0  # rows whose cost was priced here from tokens (cost_estimated)
    unpriced: int = 0  # successful rows with tokens but no cost and no known price (e.g. no model)
    con: Any = field(default=None, repr=False)  # the DuckDB connection holding the table

    def add_bad(self, line: int, field_name: str, problem: str) -> None:
        self.bad_count += 1
        if len(self.bad) < MAX_LISTED:
            self.bad.append((line, field_name, problem))

    def as_dict(self) -> dict:
        return {"source": self.source, "format": self.format, "rows": self.rows,
                "bad_count": self.bad_count,
                "bad": [{"line": line, "field": f, "problem": p} for line, f, p in self.bad],
                "priced": self.priced, "unpriced": self.unpriced}
