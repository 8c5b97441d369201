"""A budget or rate limit as it applies to one call (shared by the enforcer and its messages)."""

from __future__ import annotations

from dataclasses import dataclass

from thrifty.budgets.limits import BudgetConfig, RateLimitConfig


@dataclass(frozen=True, slots=True)
class Applied:
    """One budget as it applies to one call: its counter in the current window."""

    budget: BudgetConfig
    scope_value: str
    counter: str
    window_start: int
    window_end: int | None  # None: lifetime


@dataclass(frozen=True, slots=True)
class AppliedRate:
    limit: RateLimitConfig
    scope_value: str
    kind: str  # "rpm" or "tpm"
