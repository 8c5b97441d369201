"""Budgets and rate limits as typed configuration (the `budgets:` section of the config file).

A budget caps spend (USD and/or tokens) of one scope over a window; a rate limit caps requests
and tokens per minute. Each applies to every value of its scope separately (each tenant, each
feature...) unless `match` names one value; `tenant` restricts it to one tenant's calls.

```yaml
budgets:
  budgets:
    - {name: tenant-monthly, scope: tenant, limit_usd: 500, window: month}
    - {name: agent-task, scope: task, limit_usd: 2, window: lifetime}
    - {name: search-daily, scope: feature, match: search, limit_usd: 50, window: day,
       action: downgrade, alert_at: [80, 100], webhook: "https://hooks.example/budget"}
  rate_limits:
    - {name: per-user, scope: user, rpm: 30, tpm: 50000}
  backend: {kind: redis, redis_url: "redis://127.0.0.1:6379/0", fail_open: false}
```
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scope = Literal["tenant", "feature", "user", "key", "task", "global"]
Window = Literal["minute", "hour", "day", "month", "lifetime"]
Action = Literal["block", "downgrade", "alert"]

# Counters hold integer nano-dollars, and Redis' Lua works in doubles: exact up to 2**53.
MAX_LIMIT_USD = Decimal(2**53) / Decimal(10**9)  # about $9 million per budget and window


class _Strict(BaseModel):
    # Kept here rather than imported from thrifty.config, which imports this module.
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Scoped(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    scope: Scope
    # One value of the scope (a tenant name, feature, user, key id or task id); None: each value
    # gets its own allowance. A key's id is `thrifty.budgets.key_id(key)`, never the key itself.
    match: str | None = None
    tenant: str | None = None  # only calls of this tenant
    # feature, user and task values are chosen by clients, so by default each tenant's are
    # counted apart: one tenant cannot spend another's "search" or task allowance.
    per_tenant: bool = True

    @model_validator(mode="after")
    def _global_has_no_value(self) -> "_Scoped":
        if self.scope == "global" and self.match is not None:
            raise ValueError("match: a global limit has no scope value to match")
        return self


class BudgetConfig(_Scoped):
    limit_usd: Decimal | None = Field(default=None, gt=0, le=MAX_LIMIT_USD)
    limit_tokens: int | None = Field(default=None, gt=0, le=2**53)  # input + output, cached or not
    window: Window = "month"  # calendar windows in UTC; lifetime never resets (agent tasks)
    # block: refuse (429) a call whose worst case does not fit; downgrade: let it through on a
    # cheaper tier; alert: only notify.
    action: Action = "block"
    alert_at: tuple[float, ...] = Field(default=(50, 80, 100))  # percent of the limit
    webhook: str | None = None  # POSTed a JSON body at each threshold, once per window

    @model_validator(mode="after")
    def _has_a_limit(self) -> "BudgetConfig":
        if self.limit_usd is None and self.limit_tokens is None:
            raise ValueError("a budget needs limit_usd, limit_tokens or both")
        if any(not 0 < p <= 1000 for p in self.alert_at):
            raise ValueError("alert_at: thresholds are percentages above 0 (at most 1000)")
        if self.webhook is not None and not self.webhook.startswith(("http://", "https://")):
            raise ValueError("webhook: must be an http:// or https:// URL")
        return self


class RateLimitConfig(_Scoped):
    rpm: int | None = Field(default=None, gt=0)  # requests per minute
    tpm: int | None = Field(default=None, gt=0)  # tokens per minute (worst case held, actual kept)

    @model_validator(mode="after")
    def _has_a_rate(self) -> "RateLimitConfig":
        if self.rpm is None and self.tpm is None:
            raise ValueError("a rate limit needs rpm, tpm or both")
        return self


class BackendConfig(_Strict):
    kind: Literal["memory", "redis"] = "memory"  # memory: one replica; redis: shared by replicas
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "thrifty:budget:"
    # When Redis cannot be reached: false refuses calls with a 503 (hard budgets stay hard),
    # true lets them through unenforced. Either way the choice is logged.
    fail_open: bool = False
    # A reservation not settled within this long (a crashed replica) stops holding budget.
    # Keep it above the longest call (the providers' timeout_s).
    reservation_ttl_s: int = Field(default=900, gt=0)
    timeout_s: float = Field(default=0.25, gt=0)  # per Redis command
    max_connections: int = Field(default=16, gt=0)  # per replica; a burst queues for a free one


class EstimateConfig(_Strict):
    """How the worst case of a call is estimated before it is sent (see budgets/estimate.py)."""

    default_output_cap: int = Field(default=4096, gt=0)  # when the request sets no max tokens
    output_caps: dict[str, int] = {}  # per upstream model name, overrides the default
    # Write the cap into a request that has none, so the reservation bounds what it can cost.
    enforce_output_cap: bool = True
    per_message_tokens: int = Field(default=8, ge=0)  # role markers and separators, per message/block
    per_request_tokens: int = Field(default=16, ge=0)
    tools_tokens: int = Field(default=512, ge=0)  # the tool-use preamble providers add when tools are sent
    attachment_tokens: int = Field(default=1600, ge=0)  # per image, audio clip, file or document
    # Input counts are o200k_base tokens; other tokenizers (Claude's) produce more for the same text.
    input_factor: dict[str, float] = {"openai": 1.0, "anthropic": 1.35}


class BudgetsConfig(_Strict):
    budgets: list[BudgetConfig] = []
    rate_limits: list[RateLimitConfig] = []
    backend: BackendConfig = BackendConfig()
    estimate: EstimateConfig = EstimateConfig()
    webhook_timeout_s: float = Field(default=2.0, gt=0)
    lifetime_idle_s: int = Field(default=30 * 86400, gt=0)  # a lifetime counter unused this long is dropped
    # A stream that broke off after it started was billed for an unknown part of its worst case:
    # "charge" counts the worst case (spend never under-counted), "release" counts nothing.
    broken_streams: Literal["charge", "release"] = "charge"

    @model_validator(mode="after")
    def _unique_names(self) -> "BudgetsConfig":
        seen: set[str] = set()
        for item in (*self.budgets, *self.rate_limits):
            if item.name in seen:
                raise ValueError(f"budget and rate limit names must be unique: {item.name!r} repeats")
            seen.add(item.name)
        return self

    @property
    def active(self) -> bool:
        return bool(self.budgets or self.rate_limits)
