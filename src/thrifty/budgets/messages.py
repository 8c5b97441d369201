"""What budgets say to people: the 429 messages, and the alert payloads for logs and webhooks.

A refusal names the budget, its scope, the limit, what is spent and held, what this call could
cost and when the window resets, so a client (or the engineer paged at 3 am) knows what to do.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any

from thrifty.budgets.backend import UNLIMITED, HoldSpec, from_nano
from thrifty.errors import BudgetExceeded
from thrifty.budgets.scopes import CallScopes
from thrifty.budgets.windows import iso

if TYPE_CHECKING:
    from thrifty.budgets.applied import Applied, AppliedRate

_MICRO = Decimal("0.000001")


def usd(d: Decimal) -> str:
    """Dollars for messages: to the micro-dollar, rounded up, no trailing zeros."""
    q = d.quantize(_MICRO, rounding=ROUND_CEILING) if d.as_tuple().exponent < -6 else d  # type: ignore[operator]
    s = format(q, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def per(window: str) -> str:
    return "for its lifetime" if window == "lifetime" else f"per {window}"


def describe(scope: str, value: str, scopes: CallScopes) -> str:
    if scope == "global":
        return "global"
    if scope == "tenant":
        return f"tenant {value!r}"
    return f"{scope} {value!r} of tenant {scopes.tenant!r}"


def percent(limit_usd: int, limit_tokens: int, spent: tuple[int, int]) -> float:
    """How full a counter is: the larger of its USD and token shares, in percent."""
    p = 0.0
    if limit_usd != UNLIMITED:
        p = spent[0] * 100 / limit_usd
    if limit_tokens != UNLIMITED:
        p = max(p, spent[1] * 100 / limit_tokens)
    return p


def budget_refusal(a: "Applied", h: HoldSpec, before: tuple[int, int, int, int], scopes: CallScopes,
                   now: float, reason: str) -> BudgetExceeded:
    b = a.budget
    su, st, hu, ht = before
    parts = []
    if b.limit_usd is not None:
        parts.append(f"limit ${usd(b.limit_usd)} {per(b.window)}, spent ${usd(from_nano(su))}"
                     + (f" (+${usd(from_nano(hu))} held by calls in flight)" if hu else "")
                     + f", this call may cost up to ${usd(from_nano(h.usd))}")
    if b.limit_tokens is not None:
        parts.append(f"limit {b.limit_tokens:,} tokens {per(b.window)}, used {st:,}"
                     + (f" (+{ht:,} held by calls in flight)" if ht else "")
                     + f", this call may use up to {h.tokens:,}")
    resets = ("it never resets (lifetime budget)" if a.window_end is None
              else f"it resets at {iso(a.window_end)}")
    msg = f"budget {b.name!r} ({describe(b.scope, a.scope_value, scopes)}) {reason}: {'; '.join(parts)}; {resets}"
    return BudgetExceeded(
        msg, budget=b.name, scope=b.scope, scope_value=a.scope_value, limit_usd=b.limit_usd,
        limit_tokens=b.limit_tokens, spent_usd=from_nano(su), spent_tokens=st, resets_at=a.window_end,
        retry_after=None if a.window_end is None else math.ceil(a.window_end - now))


def rate_refusal(ar: "AppliedRate", worst_tokens: int, scopes: CallScopes, wait: float) -> BudgetExceeded:
    lim = ar.limit
    who = describe(lim.scope, ar.scope_value, scopes)
    if ar.kind == "rpm":
        what = f"{lim.rpm:,} requests per minute"
    else:
        what = f"{lim.tpm:,} tokens per minute; this call may use up to {worst_tokens:,}"
    if math.isinf(wait):
        msg = f"rate limit {lim.name!r} ({who}): {what}, more than the limit holds: lower the request's max_tokens"
        retry = None
    else:
        msg = f"rate limit {lim.name!r} ({who}): {what}; retry in {wait:.1f}s"
        retry = math.ceil(wait)
    return BudgetExceeded(msg, budget=lim.name, scope=lim.scope, scope_value=ar.scope_value,
                          retry_after=retry, code="rate_limit_exceeded")


def alert_payload(event: str, threshold: float | None, a: "Applied", h: HoldSpec, scopes: CallScopes,
                  spent: tuple[int, int], now: float) -> dict[str, Any]:
    """The webhook body (JSON; money as numbers, the edge where floats are fine). `text` makes it
    readable as is by chat webhooks (Slack, Mattermost)."""
    b = a.budget
    who = describe(b.scope, a.scope_value, scopes)
    if event == "threshold":
        text = f"budget {b.name!r} ({who}) reached {threshold:g}% of its limit {per(b.window)}"
    elif event == "blocked":
        text = f"budget {b.name!r} ({who}) is refusing calls: its limit {per(b.window)} is reached"
    else:
        text = f"budget {b.name!r} ({who}) is full: calls go to a cheaper tier (limit {per(b.window)})"
    return {
        "type": f"thrifty.budget.{event}", "text": text, "budget": b.name, "action": b.action,
        "scope": b.scope, "scope_value": a.scope_value, "tenant": scopes.tenant,
        "threshold_pct": threshold, "used_pct": round(percent(h.limit_usd, h.limit_tokens, spent), 2),
        "spent_usd": float(from_nano(spent[0])),
        "limit_usd": None if b.limit_usd is None else float(b.limit_usd),
        "spent_tokens": spent[1], "limit_tokens": b.limit_tokens, "window": b.window,
        "window_start": iso(a.window_start) if a.window_end is not None else None,
        "resets_at": iso(a.window_end), "at": iso(now),
    }
