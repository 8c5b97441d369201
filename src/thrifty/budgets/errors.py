"""The two ways a budget check answers a client instead of the provider: 429 and 503."""

from __future__ import annotations

from decimal import Decimal

from thrifty.errors import GatewayError, RateLimited


class BudgetExceeded(RateLimited):
    """A hard budget or rate limit has no room for this call (HTTP 429).

    The message names the limit, what is spent and held, and when it resets; `retry_after` is the
    number of seconds until then (None for a lifetime budget, which never resets).
    """

    def __init__(self, message: str, *, budget: str, scope: str, scope_value: str | None,
                 limit_usd: Decimal | None = None, limit_tokens: int | None = None,
                 spent_usd: Decimal | None = None, spent_tokens: int | None = None,
                 resets_at: float | None = None, retry_after: int | None = None,
                 code: str = "budget_exceeded") -> None:
        super().__init__(message, code=code,
                         retry_after=None if retry_after is None else str(max(1, retry_after)))
        self.budget, self.scope, self.scope_value = budget, scope, scope_value
        self.limit_usd, self.limit_tokens = limit_usd, limit_tokens
        self.spent_usd, self.spent_tokens = spent_usd, spent_tokens
        self.resets_at = resets_at


class BudgetUnavailable(GatewayError):
    """The shared budget store cannot be reached and hard budgets fail closed (HTTP 503)."""

    status, kind = 503, "api_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="budget_store_unavailable", retry_after="1")
