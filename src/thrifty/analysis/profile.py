"""Where the money goes: the aggregates of `thrifty analyze`, each one SQL query over `traffic`.

Every function takes a DuckDB connection and the name of the relation to read (the `traffic`
table, or the time-window view `window()` makes over it), so the heavy lifting stays in DuckDB and
Python only ever holds the grouped results (a few hundred rows at most). Money comes back as
`Decimal` (the table's DECIMAL(38, 12)); rows with an unknown cost count as calls but add nothing
to a sum, never a made-up zero.

The split of spend between input and output is the one place that prices tokens here: most
sources give one cost per call, so the split is an estimate from each model's genai-prices card
(`PriceBook`), said so in the result.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from thrifty.analysis import schema
from thrifty.pricing import PriceBook, PriceCard

ZERO = Decimal(0)
MILLION = Decimal(1_000_000)

WINDOW_VIEW = "analysis_window"

# The `by` dimensions of the report, in the order people read them: JSON key -> column.
DIMENSIONS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("feature", "feature"),
    ("tenant", "tenant"),
    ("call_site", "call_site"),
    ("request_type", "request_type"),
    ("user_cohort", "user_cohort"),
)


def window(con: Any, since: float | None = None, until: float | None = None) -> str:
    """The relation the analysis reads: `traffic`, or a view of the calls in [since, until).

    A view, not a copy, so a window over a billion-row Parquet folder costs nothing until queried.
    """
    if since is None and until is None:
        return schema.TABLE
    where = []
    if since is not None:
        where.append(f"ts >= {float(since)!r}")
    if until is not None:
        where.append(f"ts < {float(until)!r}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW {WINDOW_VIEW} AS SELECT * FROM {schema.TABLE} "
                f"WHERE {' AND '.join(where)}")
    return WINDOW_VIEW


def totals(con: Any, rel: str) -> dict[str, Any]:
    calls, usd, unpriced, estimated, input_tokens, output_tokens, first, last = con.execute(
        f"SELECT count(*), sum(cost_usd), count(*) FILTER (WHERE cost_usd IS NULL), "
        f"count(*) FILTER (WHERE cost_estimated), sum(input_tokens), sum(output_tokens), min(ts), max(ts) "
        f"FROM {rel}").fetchone()
    return {"calls": calls, "spend_usd": usd or ZERO, "calls_without_cost": unpriced,
            "calls_cost_estimated": estimated, "input_tokens": int(input_tokens or 0),
            "output_tokens": int(output_tokens or 0), "first_ts": first, "last_ts": last}


def by_dimension(con: Any, rel: str, column: str, *, top: int = 20) -> list[dict[str, Any]]:
    """Calls and spend per value of `column`, most expensive first; NULL is its own key (None)."""
    rows = con.execute(
        f"SELECT {column} AS key, count(*) AS calls, coalesce(sum(cost_usd), 0) AS usd FROM {rel} "
        f"GROUP BY 1 ORDER BY usd DESC, calls DESC, key NULLS LAST LIMIT {int(top)}").fetchall()
    return [{"key": key, "calls": calls, "usd": usd} for key, calls, usd in rows]


def input_tokens_histogram(con: Any, rel: str) -> list[dict[str, Any]]:
    """Calls per power-of-two bucket of input tokens: [lo, hi) with hi = 2 lo (0 tokens: [0, 1)).

    The buckets between the smallest and the largest are all listed, empty ones included, so a
    chart of them has an honest x axis.
    """
    rows = con.execute(
        f"""WITH b AS (
              SELECT CASE WHEN input_tokens <= 0 THEN -1 ELSE
                       CAST(floor(log2(input_tokens)) AS INTEGER) END AS k0, input_tokens
              FROM {rel} WHERE input_tokens IS NOT NULL)
            SELECT CASE WHEN k0 < 0 THEN -1
                        WHEN pow(2, k0) > input_tokens THEN k0 - 1
                        WHEN pow(2, k0 + 1) <= input_tokens THEN k0 + 1 ELSE k0 END AS k, count(*)
            FROM b GROUP BY 1 ORDER BY 1""").fetchall()
    counts = dict(rows)
    if not counts:
        return []
    out = []
    for k in range(min(counts), max(counts) + 1):
        lo, hi = (0, 1) if k < 0 else (2 ** k, 2 ** (k + 1))
        out.append({"lo": lo, "hi": hi, "calls": counts.get(k, 0)})
    return out


def price_cards(con: Any, rel: str, book: PriceBook) -> dict[str, PriceCard | None]:
    """The card of every model in `rel` (None for a model genai-prices does not know)."""
    models = [m for (m,) in con.execute(f"SELECT DISTINCT model FROM {rel} WHERE model IS NOT NULL").fetchall()]
    return {m: book.card(m) for m in models}


def input_output_share(con: Any, rel: str, cards: dict[str, PriceCard | None]) -> dict[str, Any]:
    """Which half of the bill dominates: spend on prompt tokens vs on output tokens.

    Per model, the token counts are priced at the card's base rates (uncached input, cache reads,
    cache writes at the 5-minute rate, output) and that ratio splits the model's recorded spend.
    Long-context tiers are ignored, so the split is an estimate; models without a card are left
    out and named.
    """
    rows = con.execute(
        f"SELECT model, sum(cost_usd), sum(input_tokens), sum(cached_tokens), sum(cache_write_tokens), "
        f"sum(output_tokens) FROM {rel} GROUP BY model").fetchall()
    input_usd = output_usd = ZERO
    unpriced: list[str | None] = []
    for model, usd, prompt, cached, written, output in rows:
        card = cards.get(model) if model is not None else None
        if card is None or usd is None:
            unpriced.append(model)
            continue
        prompt, cached, written, output = (int(x or 0) for x in (prompt, cached, written, output))
        uncached = max(prompt - cached - written, 0)
        list_in = (uncached * card.input + cached * (card.cache_read if card.cache_read is not None else card.input)
                   + written * (card.cache_write_5m if card.cache_write_5m is not None else card.input))
        list_out = output * card.output
        if list_in + list_out == 0:
            unpriced.append(model)
            continue
        share_in = list_in / (list_in + list_out)
        input_usd += usd * share_in
        output_usd += usd - usd * share_in
    total = input_usd + output_usd
    return {
        "input_usd": input_usd, "output_usd": output_usd,
        "input_share": float(input_usd / total) if total else None,
        "output_share": float(output_usd / total) if total else None,
        "estimated": True,
        "method": "each model's token counts priced at its genai-prices list rates split that model's "
                  "recorded spend (long-context tiers ignored)",
        "models_left_out": sorted((m for m in unpriced), key=lambda m: (m is None, m or "")),
    }


def top_shapes(con: Any, rel: str, *, top: int = 20) -> list[dict[str, Any]]:
    """The costliest request shapes: call site + system prompt (by hash) + model.

    A shape is what one line of code sends again and again with different user input; the top
    few shapes are where a prompt-cache breakpoint, a cap or a cheaper tier pays most.
    """
    spend = con.execute(f"SELECT coalesce(sum(cost_usd), 0) FROM {rel}").fetchone()[0]
    rows = con.execute(
        f"SELECT call_site, left(md5(system_text), 12) AS system_hash, model, count(*) AS calls, "
        f"coalesce(sum(cost_usd), 0) AS usd, avg(input_tokens), avg(output_tokens), "
        f"any_value(left(system_text, 160)) FROM {rel} GROUP BY 1, 2, 3 "
        f"ORDER BY usd DESC, calls DESC LIMIT {int(top)}").fetchall()
    return [{"call_site": site, "system_hash": h, "model": model, "calls": calls, "usd": usd,
             "share": float(usd / spend) if spend else None,
             "avg_input_tokens": None if ain is None else round(ain, 1),
             "avg_output_tokens": None if aout is None else round(aout, 1),
             "system_preview": preview}
            for site, h, model, calls, usd, ain, aout, preview in rows]


def tasks(con: Any, rel: str, *, top: int = 20) -> dict[str, Any]:
    """Tokens and cost per agent task (calls sharing a task id), the costliest tasks first."""
    count, usd = con.execute(
        f"SELECT count(DISTINCT task), coalesce(sum(cost_usd), 0) FROM {rel} WHERE task IS NOT NULL").fetchone()
    if not count:
        return {"available": False, "reason": "no call carries a task id (x-thrifty-task or a session id)",
                "count": 0, "usd": ZERO, "top": []}
    rows = con.execute(
        f"SELECT task, count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), "
        f"coalesce(sum(cost_usd), 0) AS usd FROM {rel} WHERE task IS NOT NULL GROUP BY 1 "
        f"ORDER BY usd DESC, 2 DESC LIMIT {int(top)}").fetchall()
    return {"available": True, "count": count, "usd": usd, "usd_per_task": usd / count,
            "top": [{"key": t, "calls": calls, "input_tokens": int(i), "output_tokens": int(o), "usd": u}
                    for t, calls, i, o, u in rows]}


def profile(con: Any, rel: str, book: PriceBook, *, top: int = 20) -> dict[str, Any]:
    """Every aggregate of the report (the part of `analyze --json` that is not `waste`)."""
    cards = price_cards(con, rel, book)
    out = totals(con, rel)
    out["by"] = {key: by_dimension(con, rel, column, top=top) for key, column in DIMENSIONS}
    out["input_tokens_histogram"] = input_tokens_histogram(con, rel)
    out["input_output_share"] = input_output_share(con, rel, cards)
    out["top_shapes"] = top_shapes(con, rel, top=top)
    out["tasks"] = tasks(con, rel, top=top)
    return out
