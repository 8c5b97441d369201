"""`GET /admin/savings`: what the traffic would have cost without Thrifty, and each lever's part.

Query: `since` / `until` (unix seconds or ISO 8601, UTC when no offset; `until` exclusive),
`group_by` one of feature, tenant, model (the served model), requested_model, tier. Answer:

    {"since", "until", "group_by", "definition": "docs/savings.md",
     "total": GROUP, "groups": [GROUP, ...]}       (groups only with group_by)
    GROUP = {"key", "calls", "priced_calls", "baseline_usd", "actual_usd", "saved_usd",
             "saved_exact_usd", "saved_estimated_usd", "provider_discount_usd",
             "levers": {lever: {"saved_usd", "exact_usd", "estimated_usd", "calls"}}, "legacy_calls"}

Money is exact decimal strings. `saved_usd` = baseline - actual = the sum of the levers' parts.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

from thrifty.core.savings_report import group_json
from thrifty.errors import InvalidRequest
from thrifty.ledger import Ledger, RowFilter

_GROUPS = {"feature": "feature", "tenant": "tenant", "model": "served_model", "served_model": "served_model",
           "requested_model": "requested_model", "tier": "tier"}


def _time(value: str, param: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise InvalidRequest(f"{param}: expected a finite number of unix seconds, got {value[:40]!r}",
                                 param=param)
        return seconds
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{param}: expected unix seconds or an ISO 8601 time, got {value[:40]!r}",
                             param=param) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def parse_query(query_string: bytes) -> tuple[RowFilter, str | None, dict[str, Any]]:
    try:
        q = {k: v[-1] for k, v in parse_qs(query_string.decode("utf-8"), strict_parsing=False).items()}
    except UnicodeDecodeError:
        raise InvalidRequest("the query string is not valid UTF-8") from None
    unknown = sorted(set(q) - {"since", "until", "group_by"})
    if unknown:
        raise InvalidRequest(f"unknown query parameter {unknown[0]!r} (known: since, until, group_by)",
                             param=unknown[0])
    since = _time(q["since"], "since") if "since" in q else None
    until = _time(q["until"], "until") if "until" in q else None
    group_by = q.get("group_by")
    if group_by is not None and group_by not in _GROUPS:
        raise InvalidRequest(f"group_by must be one of {', '.join(sorted(_GROUPS))}, not {group_by[:40]!r}",
                             param="group_by")
    echo = {"since": since, "until": until, "group_by": group_by}
    return RowFilter(since=since, until=until), (None if group_by is None else _GROUPS[group_by]), echo


async def savings(ledger: Ledger, query_string: bytes) -> dict[str, Any]:
    where, column, echo = parse_query(query_string)
    total = await asyncio.to_thread(ledger.savings, where, None)
    out: dict[str, Any] = {**echo, "definition": "docs/savings.md", "total": group_json(total[0])}
    if column is not None:
        groups = await asyncio.to_thread(ledger.savings, where, column)
        out["groups"] = [group_json(g) for g in groups]
    return out
