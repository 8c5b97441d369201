"""The dashboard's breakdowns that the grouped queries (queries.select_totals, savings,
outcomes) do not give: spend over time, cache hit rates, escalation per tier, call sites, active
users per month, and request types.

Each reads the light columns of the selected rows once (no bodies, except for request types) and
aggregates in Python with exact Decimal sums: time buckets and calendar months are spelled
differently in SQLite and PostgreSQL (CAST truncates in one and rounds in the other), and the
dashboard's windows are small enough for one pass. Attempt rows (`<id>.<n>`, see outcomes.py)
count as spend everywhere and as calls nowhere.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Iterable

import orjson

from thrifty.ledger.driver import Driver
from thrifty.ledger.outcomes import per
from thrifty.ledger.queries import RowFilter, compile_where

_FACTS = ("request_id", "started_at", "tenant", "feature", "user_id", "call_site", "tier", "status",
          "error_type", "cache", "prompt_tokens", "cached_tokens", "cache_write_tokens", "cost_usd")
ZERO = Decimal(0)


def _facts(driver: Driver, where: RowFilter | None) -> list[dict[str, Any]]:
    cond, params = compile_where(where, driver.dialect)
    with driver.reader() as conn:
        found = conn.execute(f"SELECT {', '.join(_FACTS)} FROM calls{cond}", params).fetchall()
    return [dict(zip(_FACTS, r)) for r in found]


def _is_output(row: dict[str, Any]) -> bool:
    return "." not in row["request_id"]


def _cost(row: dict[str, Any]) -> Decimal:
    return ZERO if row["cost_usd"] is None else Decimal(row["cost_usd"])


def spend_over_time(driver: Driver, where: RowFilter | None, bucket_s: int | None = None) -> tuple[int, list[dict[str, Any]]]:
    """(bucket_s, [{t (bucket start, unix s), usd, calls}] oldest first, the buckets between the
    first and the last included when they spent nothing (up to a thousand of them).
    With no `bucket_s`, the span of the rows found picks it: hours up to two days, days up to
    ninety, weeks beyond (weeks start on a Thursday, the epoch's weekday)."""
    facts = _facts(driver, where)
    if bucket_s is None:
        span = max((r["started_at"] for r in facts), default=0) - min((r["started_at"] for r in facts), default=0)
        bucket_s = 3600 if span <= 2 * 86400 else 86400 if span <= 90 * 86400 else 7 * 86400
    buckets: dict[int, list[Any]] = defaultdict(lambda: [ZERO, 0])
    for r in facts:
        b = buckets[int(r["started_at"] // bucket_s) * bucket_s]
        b[0] += _cost(r)
        b[1] += _is_output(r)
    if buckets and (max(buckets) - min(buckets)) // bucket_s <= 1000:  # a gap is a bucket that spent nothing
        for t in range(min(buckets), max(buckets), bucket_s):
            buckets.setdefault(t, [ZERO, 0])
    return bucket_s, [{"t": t, "usd": usd, "calls": n} for t, (usd, n) in sorted(buckets.items())]


def top_by(driver: Driver, where: RowFilter | None, column: str, limit: int = 10) -> list[dict[str, Any]]:
    """The `limit` values of `column` (one of the fact columns) with the most spend:
    [{key, usd, calls, cost_per_call_usd}]."""
    if column not in _FACTS:
        raise ValueError(f"cannot group by {column!r}")
    groups: dict[Any, list[Any]] = defaultdict(lambda: [ZERO, 0])
    for r in _facts(driver, where):
        g = groups[r[column]]
        g[0] += _cost(r)
        g[1] += _is_output(r)
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0] is None, kv[0] or ""))
    return [{"key": k, "usd": usd, "calls": n, "cost_per_call_usd": per(usd, n)} for k, (usd, n) in ranked[:limit]]


def cache_rates(driver: Driver, where: RowFilter | None) -> dict[str, Any]:
    """Response-cache hits over the answered calls, and the provider's prompt cache: the share
    of prompt tokens read from it (uncached + read + written is every prompt token a provider saw)."""
    calls = exact = semantic = 0
    uncached = read = written = 0
    for r in _facts(driver, where):
        if _is_output(r) and r["status"] == 200:
            calls += 1
            exact += r["cache"] == "exact"
            semantic += r["cache"] == "semantic"
        if r["cache"] not in ("exact", "semantic"):  # a response-cache hit reached no provider
            uncached += r["prompt_tokens"] or 0
            read += r["cached_tokens"] or 0
            written += r["cache_write_tokens"] or 0
    prompt = uncached + read + written
    return {"answered_calls": calls, "exact_hits": exact, "semantic_hits": semantic,
            "exact_rate": exact / calls if calls else None, "semantic_rate": semantic / calls if calls else None,
            "prompt_tokens": prompt, "prompt_cache_read_tokens": read, "prompt_cache_write_tokens": written,
            "prompt_cache_rate": read / prompt if prompt else None}


def escalation_by_tier(driver: Driver, where: RowFilter | None) -> list[dict[str, Any]]:
    """Per tier a call *started* on: [{tier, calls, escalated, rate}]. A call escalated from tier
    A to B started on A: its discarded attempt `<id>.1` (error_type `escalated: ...`) is on A; a
    call with no such attempt started on its own tier."""
    facts = _facts(driver, where)
    escalated_ids = {r["request_id"].split(".")[0]: r for r in facts
                     if not _is_output(r) and (r["error_type"] or "").startswith("escalated:")
                     and r["request_id"].endswith(".1")}
    started: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for r in facts:
        if not _is_output(r) or r["cache"] in ("exact", "semantic"):
            continue
        first = escalated_ids.get(r["request_id"])
        s = started[(first or r)["tier"]]
        s[0] += 1
        s[1] += first is not None
    return [{"tier": t, "calls": n, "escalated": e, "rate": e / n if n else None}
            for t, (n, e) in sorted(started.items(), key=lambda kv: (-kv[1][0], str(kv[0])))]


def active_users_by_month(driver: Driver, where: RowFilter | None) -> list[dict[str, Any]]:
    """Per feature and calendar month (UTC): spend, active users (distinct users with an output),
    and cost per active user; newest month first, then most spend."""
    groups: dict[tuple[str, Any], list[Any]] = defaultdict(lambda: [ZERO, set()])
    for r in _facts(driver, where):
        month = datetime.fromtimestamp(r["started_at"], UTC).strftime("%Y-%m")
        g = groups[(month, r["feature"])]
        g[0] += _cost(r)
        if _is_output(r) and r["user_id"] is not None:
            g[1].add((r["tenant"], r["user_id"]))
    out = [{"month": m, "feature": f, "usd": usd, "active_users": len(users),
            "cost_per_active_user_usd": per(usd, len(users))} for (m, f), (usd, users) in groups.items()]
    out.sort(key=lambda g: (g["month"], g["usd"]), reverse=True)
    return out


def request_types(driver: Driver, where: RowFilter | None, classify) -> list[dict[str, Any]]:
    """Spend per request type, `classify(surface, body) -> str | None` run on each stored request
    body (the ledger records no type: it is derived, so it needs `ledger.store_bodies`); calls
    without a stored body are "unknown". Attempt rows count under their call's type."""
    cond, params = compile_where(where, driver.dialect)
    sql = ("SELECT c.request_id, c.surface, c.cost_usd, b.request_body FROM (SELECT * FROM calls"
           f"{cond}) AS c LEFT JOIN call_bodies AS b ON b.request_id = c.request_id")
    with driver.reader() as conn:
        found = conn.execute(sql, params).fetchall()
    kind_of: dict[str, str] = {}
    for rid, surface, _, body in found:
        if "." not in rid:
            kind_of[rid] = _classify(classify, surface, body)
    groups: dict[str, list[Any]] = defaultdict(lambda: [ZERO, 0])
    for rid, _, cost, _ in found:
        g = groups[kind_of.get(rid.split(".")[0], "unknown")]
        g[0] += ZERO if cost is None else Decimal(cost)
        g[1] += "." not in rid
    return [{"key": k, "usd": usd, "calls": n, "cost_per_call_usd": per(usd, n)}
            for k, (usd, n) in sorted(groups.items(), key=lambda kv: (-kv[1][0], kv[0]))]


def _classify(classify, surface: str, body: str | None) -> str:
    if not body:
        return "unknown"
    try:
        return classify(surface, orjson.loads(body)) or "unknown"
    except (ValueError, TypeError, KeyError, AttributeError):
        return "unknown"


def distinct_values(driver: Driver, columns: Iterable[str]) -> dict[str, list[str]]:
    """The values each of `columns` takes (NULL left out), sorted: the dashboard's filter choices."""
    out = {}
    with driver.reader() as conn:
        for col in columns:
            if col not in _FACTS and col not in ("served_model", "requested_model"):
                raise ValueError(f"no filter on {col!r}")
            rows = conn.execute(f"SELECT DISTINCT {col} FROM calls WHERE {col} IS NOT NULL").fetchall()
            out[col] = sorted(str(v) for (v,) in rows)
    return out
