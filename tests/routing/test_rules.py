"""Routing configuration: validation and compiled rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from thrifty.routing import RoutingConfig, features_from_prompt
from thrifty.routing.features import RequestFeatures
from thrifty.routing.rules import compile_rules

BASE = {"tiers": {"fast": ["a"], "standard": ["b"], "heavy": ["c"]}, "default_tier": "standard"}


def config(**kw) -> RoutingConfig:
    return RoutingConfig.model_validate({**BASE, **kw})


@pytest.mark.parametrize("extra, problem", [
    ({"default_tier": "huge"}, "unknown tier 'huge'"),
    ({"rules": [{"when": {}, "tier": "nope"}]}, "rules[0].tier: unknown tier"),
    ({"rules": [{"when": {"request_type": "poetry"}, "tier": "fast"}]}, "unknown request_type 'poetry'"),
    ({"rules": [{"when": {"colour": "red"}, "tier": "fast"}]}, "Extra inputs are not permitted"),
    ({"rules": [{"when": {"input_tokens": {}}, "tier": "fast"}]}, "at least one of lt, le, gt, ge"),
    ({"rules": [{"tier": "fast", "checks": ["vibes"]}]}, "unknown check 'vibes'"),
    ({"escalation": {"checks": ["vibes"]}}, "unknown check"),
    ({"user_tiers": {"free": {"max_tier": "x"}}}, "user_tiers.free.max_tier"),
    ({"tier_order": ["fast", "heavy"]}, "tier_order: must list every tier once"),
    ({"tiers": {"fast": []}, "default_tier": "fast"}, "needs at least one deployment"),
    ({"tiers": {"auto": ["a"]}, "default_tier": "auto"}, "taken by auto routing"),
    ({"surprise": 1}, "Extra inputs are not permitted"),
])
def test_invalid_configs_are_refused_with_the_key(extra, problem):
    with pytest.raises(ValidationError) as err:
        config(**extra)
    assert problem in str(err.value)


def test_order_is_as_written_unless_tier_order():
    assert config().order() == ["fast", "standard", "heavy"]
    assert config(tier_order=["heavy", "fast", "standard"]).order() == ["heavy", "fast", "standard"]


def test_compiled_matcher_first_rule_that_holds():
    cfg = config(rules=[
        {"name": "tools", "when": {"tools": True}, "tier": "heavy"},
        {"name": "small-trivial", "when": {"request_type": ["classification", "extraction"],
                                           "input_tokens": {"lt": 100}}, "tier": "fast"},
        {"name": "no-tools-long", "when": {"tools": False, "input_tokens": {"ge": 100, "le": 1000}},
         "tier": "standard"},
        {"name": "free-chat", "when": {"user_tier": "free", "turns": 1}, "tier": "fast"},
        {"name": "pinned", "when": {"model": "thrifty/auto", "choices": {"gt": 3}}, "tier": "heavy"},
    ])
    rules, match = compile_rules(cfg.rules)
    assert [r.name for r in rules][0] == "tools"

    def first(**kw):
        i = match(RequestFeatures(**kw), "thrifty/auto")
        return None if i < 0 else rules[i].name

    assert first(tools=True, request_type="classification") == "tools"
    assert first(request_type="extraction", input_tokens=99) == "small-trivial"
    assert first(request_type="extraction", input_tokens=100) == "no-tools-long"
    assert first(input_tokens=1001, user_tier="free", turns=1) == "free-chat"
    assert first(input_tokens=1001, user_tier="pro", turns=1, choices=4) == "pinned"
    assert first(input_tokens=1001, choices=3) is None
    assert match(RequestFeatures(choices=4, input_tokens=5000), "gpt-4o") == -1


def test_matcher_treats_configured_strings_as_data():
    cfg = config(rules=[{"when": {"feature": "x') or True or ('"}, "tier": "fast"}])
    _, match = compile_rules(cfg.rules)
    assert match(features_from_prompt("hi"), "thrifty/auto") == -1


def test_empty_when_matches_everything():
    _, match = compile_rules(config(rules=[{"tier": "fast"}]).rules)
    assert match(RequestFeatures(), "m") == 0
