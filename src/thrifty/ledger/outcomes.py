"""Success signals, and cost per successful output.

A call counts as a successful output unless a signal says otherwise. The signals, and why each
is read the way it is:

- **errored**: the client got no answer (status != 200). Its spend (cost of an upstream error is
  usually zero, a cut stream is not) stays in the feature's spend.
- **reported bad**: the client said so (`POST /v1/thrifty/feedback {"request_id", "bad": true}`
  or `"outcome": "bad"`), recorded in `call_outcomes` (migration 0006). The latest verdict on a
  call wins, so a client can take one back with `"ok"`.
- **regenerated**: the same request (`request_hash`: the canonical request with volatile fields
  out) came back from the same tenant's same user within `window_s` seconds. The *earlier* call is
  the failed one: the user asked again because its answer was not good enough. Calls without a
  user or without a hash are never read as regenerated (there is no "same user" to tell). An
  explicit `ok` from the client outweighs this inferred signal; an explicit verdict is what the
  client knows, the repetition is only a guess.
- **failed a check**: escalation's discarded attempt (`<id>.<n>`, error_type `escalated: ...`)
  is a failed *attempt*, not a failed output: the client never saw it, and the answer it got came
  from the tier above, which is judged by the signals above like any other answer. The attempt's
  cost is spend of the feature with no output of its own, which is exactly how it raises the
  cost per successful output. Retried attempts (`<id>.<n>` rows cut after reaching the provider)
  are counted the same way.

Outputs are the rows whose request id has no `.` (request ids are `thr_<hex>`, batch lines
`batch_<hex>`; only attempt rows carry `.<n>`). Cost per successful output = all spend of the
group (outputs, failures, retries and discarded attempts) / its successful outputs; cost per call
= the same spend / its outputs. Regenerations are derived at query time with a SQL window over
(tenant, user, request_hash), over every output of the ledger, so a filtered time range still sees
a repeat that came just after it.
"""

from __future__ import annotations

import time
from decimal import Decimal, localcontext
from typing import Any

from thrifty.ledger.driver import Driver
from thrifty.ledger.queries import RowFilter, compile_where

OUTCOMES = ("ok", "bad")
DEFAULT_WINDOW_S = 300.0  # 5 minutes: a user who asks the same thing again within it was not served
MAX_REASON_CHARS = 500

# What may be grouped by, and its column: the savings groups plus the call site.
GROUPS = {"feature": "feature", "tenant": "tenant", "tier": "tier", "model": "served_model",
          "served_model": "served_model", "requested_model": "requested_model", "call_site": "call_site",
          "user": "user_id", "task": "task"}

_INSERT = "INSERT INTO call_outcomes (request_id, outcome, reason, at) VALUES ({m}, {m}, {m}, {m})"

# {m}: the driver's placeholder; the window length is the first parameter. No LIKE: a literal
# `%` would need escaping under psycopg's placeholders, and SQLite's LIKE ignores case.
_SELECT = """WITH outputs AS (
    SELECT request_id,
           CASE WHEN user_id IS NOT NULL AND request_hash IS NOT NULL
                 AND LEAD(started_at) OVER (PARTITION BY tenant, user_id, request_hash
                                            ORDER BY started_at, request_id) - started_at <= {m}
                THEN 1 ELSE 0 END AS regenerated
    FROM calls WHERE replace(request_id, '.', '') = request_id
), verdicts AS (
    SELECT request_id, outcome FROM (
        SELECT request_id, outcome,
               ROW_NUMBER() OVER (PARTITION BY request_id ORDER BY at DESC, outcome) AS n
        FROM call_outcomes) AS ranked
    WHERE n = 1
), judged AS (
    SELECT c.*, CASE WHEN o.request_id IS NULL THEN 0 ELSE 1 END AS is_output,
           CASE WHEN o.request_id IS NOT NULL AND c.status <> 200 THEN 1 ELSE 0 END AS errored,
           CASE WHEN o.request_id IS NOT NULL AND c.status = 200 AND v.outcome = 'bad' THEN 1 ELSE 0 END AS bad,
           CASE WHEN o.request_id IS NOT NULL AND c.status = 200 AND v.outcome IS NULL
                 AND o.regenerated = 1 THEN 1 ELSE 0 END AS regenerated,
           CASE WHEN o.request_id IS NULL AND substr(c.error_type, 1, 10) = 'escalated:' THEN 1 ELSE 0 END AS escalated
    FROM (SELECT * FROM calls{cond}) AS c
    LEFT JOIN outputs AS o ON o.request_id = c.request_id
    LEFT JOIN verdicts AS v ON v.request_id = c.request_id
)
SELECT {key}, COUNT(*), {spend}, SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END),
       SUM(is_output), SUM(errored), SUM(bad), SUM(regenerated), SUM(escalated), SUM(1 - is_output)
FROM judged{group}"""


def record_outcome(driver: Driver, request_id: str, outcome: str, reason: str | None = None,
                   at: float | None = None) -> None:
    """Append the client's verdict on `request_id` ("ok" or "bad"), at once and durably.

    Rare (a user clicks thumbs-down), so it is one short transaction of its own on a connection
    of its own rather than a trip through the buffered row writer. Raises ValueError on a bad
    outcome, ConnectionError when the database cannot be reached.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    if reason is not None:
        reason = reason[:MAX_REASON_CHARS]
    driver.execute_once(_INSERT.format(m=driver.dialect.mark),
                        (request_id, outcome, reason, time.time() if at is None else at))


def select_outcomes(driver: Driver, where: RowFilter | None, group_by: str | None = None,
                    window_s: float = DEFAULT_WINDOW_S) -> list[dict[str, Any]]:
    """Per value of `group_by` (GROUPS; one entry with key None when None), most spend first:

    key, rows (every row: outputs and attempts), outputs, successful, failed ({errored, bad,
    regenerated}), attempts (discarded attempt rows), escalated_attempts, spend_usd (the exact sum
    of every known cost, attempts included), unpriced_rows, cost_per_call_usd (spend / outputs)
    and cost_per_success_usd (spend / successful; None when nothing succeeded). Money is Decimal.
    """
    col = None
    if group_by is not None:
        col = GROUPS.get(group_by)
        if col is None:
            raise ValueError(f"cannot group by {group_by!r}; choose one of {', '.join(GROUPS)}")
    cond, params = compile_where(where, driver.dialect)
    sql = _SELECT.format(m=driver.dialect.mark, cond=cond, key=col or "NULL",
                         spend=driver.dialect.money_sum.format("cost_usd"),
                         group=f" GROUP BY {col}" if col else "")
    with driver.reader() as conn:
        found = conn.execute(sql, [float(window_s), *params]).fetchall()
    out = [_group(*r) for r in found if r[1]]
    out.sort(key=lambda g: (-g["spend_usd"], -g["rows"], g["key"] is None, g["key"] or ""))
    return out


def _group(key: Any, rows: int, spend: Any, unpriced: int, outputs: int | None, errored: int | None,
           bad: int | None, regenerated: int | None, escalated: int | None, attempts: int | None) -> dict[str, Any]:
    spend = Decimal(0) if spend is None else Decimal(spend)
    failed = {"errored": errored or 0, "bad": bad or 0, "regenerated": regenerated or 0}
    outputs = outputs or 0
    successful = outputs - sum(failed.values())
    return {"key": key, "rows": rows, "outputs": outputs, "successful": successful, "failed": failed,
            "attempts": attempts or 0, "escalated_attempts": escalated or 0, "spend_usd": spend,
            "unpriced_rows": unpriced or 0, "cost_per_call_usd": per(spend, outputs),
            "cost_per_success_usd": per(spend, successful)}


def per(amount: Decimal, n: int) -> Decimal | None:
    """`amount / n` to 12 decimal places (the ledger's money scale), None for n == 0."""
    if n <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 50
        return (amount / n).quantize(Decimal("1e-12"))
