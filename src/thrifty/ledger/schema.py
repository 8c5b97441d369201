"""The ledger's schema, written once for every backend.

The SQL here is the subset that both SQLite and PostgreSQL accept, so the PostgreSQL writer
applies the very same migrations:

- `DOUBLE PRECISION`, never `REAL`: PostgreSQL's REAL is a 4-byte float, which would round a
  unix timestamp to the nearest two minutes. SQLite gives the name REAL affinity.
- Money is TEXT holding the exact `Decimal` in plain notation (`"0.000125"`), never a float.
- Booleans are INTEGER 0/1 (SQLite has no BOOLEAN, and PostgreSQL will not take 0/1 for one).
- The end user is the column `user_id`, because `user` is a reserved word in PostgreSQL.

The schema changes only by appending to MIGRATIONS; an applied migration is never edited
(tests/ledger/test_schema.py pins the existing ones by name and checksum).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Sequence


@dataclass(slots=True)
class LedgerRow:
    """One call that reached the gateway with a valid key. The ledger owns it once recorded."""

    request_id: str
    started_at: float  # unix seconds
    finished_at: float
    tenant: str | None
    feature: str | None
    user: str | None
    task: str | None
    call_site: str | None
    surface: str  # "openai" | "anthropic"
    provider: str | None  # provider name from the config
    requested_model: str | None
    served_model: str | None
    tier: str | None
    status: int  # HTTP status answered to the client
    error_type: str | None
    prompt_tokens: int = 0  # uncached input tokens
    cached_tokens: int = 0  # cache reads
    cache_write_tokens: int = 0  # 5m + 1h
    cache_write_1h_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal | None = None  # None = unknown price
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    stream: bool = False
    retries: int = 0
    cache: str = "miss"  # miss | exact | semantic | bypass (not eligible) | unavailable (backend down)
    request_hash: str | None = None
    request_body: str | None = None  # only when the config says to store bodies
    response_body: str | None = None
    # What the call would have cost with no lever acting on it, and what each lever saved
    # (cost_usd + the savings = baseline_cost_usd). None = unknown or not applicable.
    baseline_cost_usd: Decimal | None = None
    saved_prompt_cache_usd: Decimal | None = None
    saved_response_cache_usd: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    statements: tuple[str, ...]  # run in order, in one transaction with the others pending


MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS _migrations (
    name TEXT NOT NULL PRIMARY KEY,
    applied_at DOUBLE PRECISION NOT NULL
)"""

# Append only. Never edit, reorder or remove an entry: databases in the field have applied it.
MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_calls", (
        """CREATE TABLE calls (
    request_id TEXT NOT NULL PRIMARY KEY,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL,
    tenant TEXT,
    feature TEXT,
    user_id TEXT,
    task TEXT,
    call_site TEXT,
    surface TEXT NOT NULL,
    provider TEXT,
    requested_model TEXT,
    served_model TEXT,
    tier TEXT,
    status INTEGER NOT NULL,
    error_type TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd TEXT,
    latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
    ttft_ms DOUBLE PRECISION,
    stream INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    cache TEXT NOT NULL DEFAULT 'miss',
    request_hash TEXT
)""",
        "CREATE INDEX idx_calls_started_at ON calls (started_at)",
        # Per-tenant and per-feature reports are nearly always over a time window.
        "CREATE INDEX idx_calls_tenant ON calls (tenant, started_at)",
        "CREATE INDEX idx_calls_feature ON calls (feature, started_at)",
    )),
    # Bodies live apart from `calls`: they are large and optional, and keeping them out keeps
    # scans and aggregates over `calls` on small pages, and lets a retention job drop bodies
    # without touching the accounting rows.
    Migration("0002_call_bodies", (
        """CREATE TABLE call_bodies (
    request_id TEXT NOT NULL PRIMARY KEY,
    request_body TEXT,
    response_body TEXT
)""",
    )),
    # The counterfactual: what each call would have cost without the levers, and each lever's part.
    Migration("0003_lever_savings", (
        "ALTER TABLE calls ADD COLUMN baseline_cost_usd TEXT",
        "ALTER TABLE calls ADD COLUMN saved_prompt_cache_usd TEXT",
        "ALTER TABLE calls ADD COLUMN saved_response_cache_usd TEXT",
    )),
)

# LedgerRow fields that hold money (Decimal in Python, exact text in the database).
MONEY_FIELDS = ("cost_usd", "baseline_cost_usd", "saved_prompt_cache_usd", "saved_response_cache_usd")

# LedgerRow field -> `calls` column, in insert order. Bodies go to `call_bodies`.
CALL_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (f.name, "user_id" if f.name == "user" else f.name)
    for f in dataclasses.fields(LedgerRow) if f.name not in ("request_body", "response_body"))

# What totals() may group by: a LedgerRow field name -> its column. A whitelist, because the
# column name is pasted into SQL.
GROUP_COLUMNS = MappingProxyType({
    name: dict(CALL_COLUMNS)[name]
    for name in ("feature", "served_model", "tenant", "provider", "tier", "user", "task")})

_CALL_FIELDS = attrgetter(*(name for name, _ in CALL_COLUMNS))
_MONEY = tuple([name for name, _ in CALL_COLUMNS].index(f) for f in MONEY_FIELDS)
_STREAM = [name for name, _ in CALL_COLUMNS].index("stream")


def money_to_text(value: Decimal | None) -> str | None:
    """The exact text stored for an amount: plain notation, every digit kept."""
    if value is None:
        return None
    if not isinstance(value, Decimal):
        # A float here is a bug upstream; its shortest repr is the least surprising reading.
        value = Decimal(str(value))
    if not value.is_finite():
        return None  # NaN or infinity is no price at all: record it as unknown
    return format(value, "f")


def call_params(row: LedgerRow) -> list[Any]:
    """The values of `row` for the `calls` columns, in CALL_COLUMNS order."""
    values = list(_CALL_FIELDS(row))
    for i in _MONEY:
        values[i] = money_to_text(values[i])
    values[_STREAM] = 1 if row.stream else 0
    return values


def body_params(row: LedgerRow) -> tuple[str, str | None, str | None] | None:
    """The `call_bodies` values of `row`, or None when it carries no body."""
    if row.request_body is None and row.response_body is None:
        return None
    return (row.request_id, row.request_body, row.response_body)


def row_from_db(values: Sequence[Any], request_body: str | None = None,
                response_body: str | None = None) -> LedgerRow:
    """A LedgerRow from the `calls` values in CALL_COLUMNS order (and its bodies, if any)."""
    kw = {name: values[i] for i, (name, _) in enumerate(CALL_COLUMNS)}
    for f in MONEY_FIELDS:
        kw[f] = None if kw[f] is None else Decimal(kw[f])
    kw["stream"] = bool(kw["stream"])
    return LedgerRow(**kw, request_body=request_body, response_body=response_body)


def row_to_json(row: LedgerRow) -> dict[str, Any]:
    """A JSON-ready dict of `row`, money as an exact string (the spill-file format)."""
    out = {f.name: getattr(row, f.name) for f in dataclasses.fields(LedgerRow)}
    for f in MONEY_FIELDS:
        out[f] = money_to_text(out[f])
    return out


def row_from_json(data: dict[str, Any]) -> LedgerRow:
    """The inverse of row_to_json; keys starting with "_" (annotations) are ignored."""
    kw = {k: v for k, v in data.items() if not k.startswith("_")}
    for f in MONEY_FIELDS:
        if kw.get(f) is not None:
            kw[f] = Decimal(kw[f])
    return LedgerRow(**kw)


def totals_from_rows(found: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """totals() results from the grouped query's rows (the same columns on every backend), most
    expensive first. Money arrives as exact text or NUMERIC and leaves as Decimal."""
    out = [{"key": key, "calls": calls, "cost_usd": Decimal(cost), "unpriced_calls": unpriced,
            "prompt_tokens": prompt, "cached_tokens": cached, "cache_write_tokens": written,
            "completion_tokens": completion, "baseline_cost_usd": Decimal(baseline),
            "saved_prompt_cache_usd": Decimal(saved_pc), "saved_response_cache_usd": Decimal(saved_rc)}
           for (key, calls, cost, unpriced, prompt, cached, written, completion,
                baseline, saved_pc, saved_rc) in found]
    out.sort(key=lambda t: (-t["cost_usd"], -t["calls"], t["key"] is None, t["key"] or ""))
    return out
