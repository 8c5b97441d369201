"""The budgets section of the config: typed, strict, with clear errors."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from thrifty.budgets import BudgetConfig, BudgetsConfig, RateLimitConfig


def test_a_full_section_parses_into_typed_models():
    cfg = BudgetsConfig.model_validate({
        "budgets": [
            {"name": "tenant-monthly", "scope": "tenant", "limit_usd": 500, "window": "month"},
            {"name": "agent-task", "scope": "task", "limit_usd": "2.50", "limit_tokens": 200000,
             "window": "lifetime"},
            {"name": "search", "scope": "feature", "match": "search", "limit_usd": 0.1, "window": "day",
             "action": "downgrade", "alert_at": [80, 100], "webhook": "http://127.0.0.1:9/hook"},
        ],
        "rate_limits": [{"name": "per-user", "scope": "user", "rpm": 30, "tpm": 50000}],
        "backend": {"kind": "redis", "redis_url": "redis://127.0.0.1:6379/1", "fail_open": True,
                    "reservation_ttl_s": 120},
    })
    assert cfg.budgets[1].limit_usd == Decimal("2.50")
    assert cfg.budgets[2].limit_usd == Decimal("0.1")  # a YAML float becomes the decimal it reads as
    assert cfg.budgets[2].alert_at == (80, 100)
    assert cfg.backend.kind == "redis" and cfg.backend.fail_open
    assert cfg.active
    assert not BudgetsConfig().active
    assert BudgetsConfig().backend.fail_open is False  # hard budgets fail closed unless told otherwise


@pytest.mark.parametrize("bad, words", [
    ({"name": "x", "scope": "tenant"}, "limit_usd, limit_tokens"),
    ({"name": "x", "scope": "team", "limit_usd": 1}, "scope"),
    ({"name": "x", "scope": "tenant", "limit_usd": 1, "window": "week"}, "window"),
    ({"name": "x", "scope": "tenant", "limit_usd": 1, "action": "shout"}, "action"),
    ({"name": "x", "scope": "tenant", "limit_usd": 0}, "greater than 0"),
    ({"name": "x", "scope": "tenant", "limit_usd": 1, "limt_tokens": 5}, "Extra inputs"),
    ({"name": "x", "scope": "global", "match": "a", "limit_usd": 1}, "global"),
    ({"name": "x", "scope": "tenant", "limit_usd": 1, "alert_at": [0]}, "alert_at"),
    ({"name": "x", "scope": "tenant", "limit_usd": 1, "webhook": "ftp://x"}, "webhook"),
    ({"name": "a b", "scope": "tenant", "limit_usd": 1}, "pattern"),
    ({"name": "x", "scope": "tenant", "limit_usd": 10**8}, "less than or equal"),
])
def test_mistakes_are_refused_with_a_reason(bad, words):
    with pytest.raises(ValidationError) as e:
        BudgetConfig.model_validate(bad)
    assert words in str(e.value)


def test_rate_limits_need_a_rate_and_names_are_unique():
    with pytest.raises(ValidationError, match="rpm, tpm"):
        RateLimitConfig.model_validate({"name": "r", "scope": "user"})
    with pytest.raises(ValidationError, match="unique"):
        BudgetsConfig.model_validate({"budgets": [{"name": "a", "scope": "tenant", "limit_usd": 1}],
                                      "rate_limits": [{"name": "a", "scope": "user", "rpm": 1}]})
    with pytest.raises(ValidationError, match="Extra inputs"):
        BudgetsConfig.model_validate({"backend": {"kind": "memory", "url": "x"}})
