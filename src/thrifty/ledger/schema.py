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
import decimal
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from thrifty.contract import LEVERS, LeverSaving

# Which definition of the baseline a row's savings use. None (rows written before migration
# 0004): baseline_cost_usd counted the provider's own cache discounts as saved, and the two
# saved_* columns held the savings. 2: the one counterfactual of ARCHITECTURE.md (the request
# exactly as the client sent it, sent directly), with the savings per lever in `levers`.
ACCOUNTING = 2


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
    # What the call would have cost with no lever acting on it (None = unknown). On rows of
    # accounting 2 the two saved_* fields stay None: `levers` is the one home of savings. They
    # are kept for the rows written before, which used them (see ACCOUNTING).
    baseline_cost_usd: Decimal | None = None
    saved_prompt_cache_usd: Decimal | None = None
    saved_response_cache_usd: Decimal | None = None
    baseline_model: str | None = None  # the model the baseline is priced on
    accounting: int | None = ACCOUNTING  # None: a row of the old definition (see ACCOUNTING)
    # What the provider's own caching took off the baseline: the client would have had it
    # without Thrifty, so it is reported apart and never counted as a saving.
    provider_discount_usd: Decimal | None = None
    # What each lever did; cost_usd + the saved_usd of all of them = baseline_cost_usd.
    levers: tuple[LeverSaving, ...] = ()
    # How the call reached the provider: "interactive" (answered at once), "batch" (a line of a
    # client's own /v1/batches or /v1/messages/batches job) or "deferred" (a single call that
    # Thrifty batched because the client said it can wait). See thrifty.batch.
    lane: str = "interactive"

    def __post_init__(self) -> None:
        # One order, the order levers act, so a row reads back equal to the row written (the
        # lever table keeps no order of its own).
        if not isinstance(self.levers, tuple) or len(self.levers) > 1:
            self.levers = tuple(sorted(self.levers, key=lambda s: lever_order(s.lever)))


def lever_order(lever: str) -> tuple[int, str]:
    """Sort key of a lever's name: its place in LEVERS; names Thrifty does not know go last."""
    try:
        return LEVERS.index(lever), ""
    except ValueError:
        return len(LEVERS), str(lever)


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
    # Savings per lever against the one counterfactual. `accounting` stays NULL on the rows
    # written before, which is how queries tell the two definitions apart. One row per lever
    # that acted on a call; `saved_usd` NULL: it acted, but its effect cannot be priced.
    Migration("0004_call_levers", (
        "ALTER TABLE calls ADD COLUMN accounting INTEGER",
        "ALTER TABLE calls ADD COLUMN baseline_model TEXT",
        "ALTER TABLE calls ADD COLUMN provider_discount_usd TEXT",
        """CREATE TABLE call_levers (
    request_id TEXT NOT NULL,
    lever TEXT NOT NULL,
    saved_usd TEXT,
    estimated INTEGER NOT NULL DEFAULT 0,
    note TEXT,
    PRIMARY KEY (request_id, lever)
)""",
    )),
    # The batch lane (thrifty.batch): each row's lane, and the lane's durable state - the files
    # clients upload, the jobs, one row per line, and the provider batches lines were sent in.
    Migration("0005_batch_lane", (
        "ALTER TABLE calls ADD COLUMN lane TEXT NOT NULL DEFAULT 'interactive'",
        """CREATE TABLE batch_files (
    id TEXT NOT NULL PRIMARY KEY,
    tenant TEXT NOT NULL,
    purpose TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    content TEXT NOT NULL
)""",
        """CREATE TABLE batch_jobs (
    id TEXT NOT NULL PRIMARY KEY,
    tenant TEXT NOT NULL,
    surface TEXT NOT NULL,
    lane TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    input_file_id TEXT,
    info TEXT NOT NULL
)""",
        "CREATE INDEX idx_batch_jobs_tenant ON batch_jobs (tenant, created_at)",
        """CREATE TABLE batch_lines (
    id TEXT NOT NULL PRIMARY KEY,
    job_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    state TEXT NOT NULL,
    deployment TEXT,
    submission_id TEXT,
    due_at DOUBLE PRECISION NOT NULL,
    request TEXT NOT NULL,
    plan TEXT,
    result TEXT,
    updated_at DOUBLE PRECISION NOT NULL
)""",
        "CREATE INDEX idx_batch_lines_job ON batch_lines (job_id, n)",
        "CREATE INDEX idx_batch_lines_state ON batch_lines (state, deployment, due_at)",
        "CREATE INDEX idx_batch_lines_submission ON batch_lines (submission_id)",
        """CREATE TABLE batch_submissions (
    id TEXT NOT NULL PRIMARY KEY,
    deployment TEXT NOT NULL,
    provider TEXT NOT NULL,
    state TEXT NOT NULL,
    provider_batch_id TEXT,
    lines INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    next_poll_at DOUBLE PRECISION NOT NULL,
    poll_interval_s DOUBLE PRECISION NOT NULL,
    info TEXT
)""",
        "CREATE INDEX idx_batch_submissions_state ON batch_submissions (state, next_poll_at)",
    )),
    # Success signals that arrive after a call's row (thrifty.ledger.outcomes): the client's
    # verdict on an answer. Append-only, like `calls`: a later verdict on the same call supersedes
    # an earlier one at query time, and none is ever updated in place.
    Migration("0006_call_outcomes", (
        """CREATE TABLE call_outcomes (
    request_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    at DOUBLE PRECISION NOT NULL
)""",
        "CREATE INDEX idx_call_outcomes_request ON call_outcomes (request_id, at)",
    )),
    # Shadow calls (thrifty.routing.shadow): a sampled call sent again to a cheaper tier off the
    # client's path, and how well its answer agreed with the one the client got (`score` NULL:
    # unscored). Each row is one routing outcome of `thrifty train router --data` (ledger/shadow.py).
    # The shadow calls' spend is in `calls` (lane 'shadow'); the costs here repeat it per outcome.
    Migration("0007_shadow_outcomes", (
        """CREATE TABLE shadow_outcomes (
    request_id TEXT NOT NULL PRIMARY KEY,
    shadow_request_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    tenant TEXT,
    feature TEXT,
    route TEXT,
    request_type TEXT,
    prompt TEXT NOT NULL,
    primary_deployment TEXT NOT NULL,
    primary_tier TEXT,
    primary_cost_usd TEXT,
    shadow_deployment TEXT NOT NULL,
    shadow_tier TEXT NOT NULL,
    shadow_cost_usd TEXT,
    judge_cost_usd TEXT,
    method TEXT NOT NULL,
    score DOUBLE PRECISION,
    reason TEXT
)""",
        "CREATE INDEX idx_shadow_outcomes_at ON shadow_outcomes (at)",
        "CREATE INDEX idx_shadow_outcomes_tenant ON shadow_outcomes (tenant, at)",
    )),
)

# LedgerRow fields that hold money (Decimal in Python, exact text in the database).
MONEY_FIELDS = ("cost_usd", "baseline_cost_usd", "saved_prompt_cache_usd", "saved_response_cache_usd",
                "provider_discount_usd")

# LedgerRow field -> `calls` column, in insert order. Bodies go to `call_bodies`, levers to
# `call_levers`.
CALL_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (f.name, "user_id" if f.name == "user" else f.name)
    for f in dataclasses.fields(LedgerRow) if f.name not in ("request_body", "response_body", "levers"))
LEVER_COLUMNS = ("request_id", "lever", "saved_usd", "estimated", "note")

# What queries may group by: a LedgerRow field name -> its column. A whitelist, because the
# column name is pasted into SQL.
GROUP_COLUMNS = MappingProxyType({
    name: dict(CALL_COLUMNS)[name]
    for name in ("feature", "served_model", "requested_model", "tenant", "provider", "tier", "user", "task")})


# Money arithmetic at a precision no ledger reaches, and an error rather than a rounding if one did.
EXACT = decimal.Context(prec=100, traps=[decimal.Inexact, decimal.InvalidOperation])


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
