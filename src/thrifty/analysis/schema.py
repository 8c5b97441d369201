"""The one table every offline analysis reads: `traffic`, one row per LLM call, in DuckDB.

Every source (the Thrifty ledger, a folder of its Parquet export, LiteLLM's StandardLoggingPayload
logs, OpenAI/Anthropic wire-format request logs, token-only traces) is loaded into this shape by
`thrifty.analysis.sources`; `analyze`, `simulate`, `advise` and `export finetune` only ever query
it. A column a source cannot fill is NULL, never a made-up value: a finding that needs it
(near-duplicates need text, retry storms need statuses) is then reported as not available for
that source rather than as zero.

Money is DECIMAL(38, 12): exact sums in SQL, read back as Python Decimal. `cost_estimated` is
true where the source gave no cost and it was priced from the token counts with genai-prices.
"""

from __future__ import annotations

TABLE = "traffic"

# (column, DuckDB type, what it holds). Order is the table's column order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("id", "VARCHAR", "the source's id of the call (request id), else '<file>:<line>'"),
    ("source_line", "BIGINT", "line (or row) number in the source, for messages"),
    ("ts", "DOUBLE", "when the call started, unix seconds"),
    ("tenant", "VARCHAR", "tenant / team / API key owner"),
    ("feature", "VARCHAR", "the product feature (tag) that made the call"),
    ("user_id", "VARCHAR", "the end user"),
    ("user_cohort", "VARCHAR", "a user tier or cohort tag, when the source has one"),
    ("task", "VARCHAR", "one agent task across many calls (a session id)"),
    ("call_site", "VARCHAR", "where in the code the call is made"),
    ("provider", "VARCHAR", "the provider that served it"),
    ("requested_model", "VARCHAR", "the model the client asked for"),
    ("model", "VARCHAR", "the model that served it (the requested one when unknown)"),
    ("tier", "VARCHAR", "the routing tier, when the source has one"),
    ("lane", "VARCHAR", "interactive | batch | deferred | shadow (Thrifty ledger); NULL elsewhere"),
    ("cache", "VARCHAR", "miss | exact | semantic | ... (Thrifty ledger); NULL elsewhere"),
    ("status", "INTEGER", "HTTP status (200 = success); NULL when unknown"),
    ("error", "VARCHAR", "error type or message of a failed call"),
    ("stream", "BOOLEAN", "whether the client asked for a stream"),
    ("streamed_to_buffer", "BOOLEAN", "the stream was consumed by a backend that never streamed (when known)"),
    ("read", "BOOLEAN", "whether the answer was ever read (when the source says so)"),
    ("input_tokens", "BIGINT", "all prompt tokens, cached ones included"),
    ("cached_tokens", "BIGINT", "prompt tokens read from a provider cache"),
    ("cache_write_tokens", "BIGINT", "prompt tokens written to a provider cache"),
    ("output_tokens", "BIGINT", "all output tokens, reasoning included"),
    ("reasoning_tokens", "BIGINT", "hidden reasoning tokens"),
    ("max_tokens", "BIGINT", "the output cap the request set (NULL: none or unknown)"),
    ("cost_usd", "DECIMAL(38, 12)", "what the call cost (NULL: unknown)"),
    ("cost_estimated", "BOOLEAN", "cost_usd was priced here from tokens (the source gave none)"),
    ("request_hash", "VARCHAR", "SHA-256 of the normalised request (volatile fields out); NULL without a body"),
    ("prefix_hashes", "VARCHAR[]", "ids of the prompt's successive prefix blocks (Mooncake hash_ids, or computed "
                                   "from the text in 512-token blocks)"),
    ("prompt_text", "VARCHAR", "the last user turn's text (near-duplicates, request type); NULL without text"),
    ("system_text", "VARCHAR", "the system prompt's text (request shapes); NULL without text"),
    ("request_type", "VARCHAR", "the router's own classifier on the prompt (thrifty.routing.features)"),
    ("request_body", "VARCHAR", "the whole request as JSON, when the source kept it"),
    ("response_body", "VARCHAR", "the whole answer as JSON, when the source kept it"),
)

COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _, _ in COLUMNS)

CREATE_TABLE = f"CREATE TABLE {TABLE} (\n    " + ",\n    ".join(
    f"{name} {kind}" for name, kind, _ in COLUMNS) + "\n)"
