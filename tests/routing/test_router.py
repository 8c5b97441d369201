"""Routing decisions: rules -> tier -> cheapest healthy deployment; requested models and tiers;
user-tier modifiers; escalation."""

from __future__ import annotations

import pytest

from thrifty.config import DeploymentConfig
from thrifty.errors import ConfigError, NotFound, UpstreamError
from thrifty.pricing import PriceBook
from thrifty.routing import MemoryHeavyCounter, Router, RoutingConfig, features_from_prompt
from thrifty.routing.features import RequestFeatures

DEPLOYMENTS = {
    "mini": DeploymentConfig(provider="p", model="m-mini"),
    "flash": DeploymentConfig(provider="p", model="m-flash"),
    "mid": DeploymentConfig(provider="p", model="m-mid"),
    "mid-b": DeploymentConfig(provider="p", model="m-mid-b"),
    "big": DeploymentConfig(provider="p", model="m-big"),
}
PRICES = PriceBook({"m-mini": {"input": "0.15", "output": "0.60"}, "m-flash": {"input": "0.10", "output": "0.40"},
                    "m-mid": {"input": "2.5", "output": "10"}, "m-mid-b": {"input": "3", "output": "15"},
                    "m-big": {"input": "15", "output": "75"}})
CONFIG = {
    "tiers": {"fast": ["mini", "flash"], "standard": ["mid-b", "mid"], "heavy": ["big"]},
    "default_tier": "standard",
    "rules": [
        {"name": "agents", "when": {"tools": True}, "tier": "heavy"},
        {"name": "trivial", "when": {"request_type": ["classification", "extraction"]}, "tier": "fast",
         "checks": ["empty", "consistency"]},
        {"name": "math", "when": {"request_type": "reasoning"}, "tier": "heavy"},
        {"name": "mcq", "when": {"choices": {"ge": 2}}, "tier": "fast", "escalate_to": "heavy"},
    ],
    "user_tiers": {"free": {"heavy_per_day": 2, "max_tier": None}, "trial": {"max_tier": "standard"},
                   "enterprise": {"min_tier": "standard"}},
}

CLASSIFY = "Classify the sentiment of: great product"
MATH = "Solve for x: 2x + 1 = 9"
CHAT = "Tell me about Lisbon."


def router(health=None, counter=None, clock=None, **overrides) -> Router:
    cfg = RoutingConfig.model_validate({**CONFIG, **overrides})
    kw = {"clock": clock} if clock else {}
    return Router(cfg, deployments=DEPLOYMENTS, aliases={"gpt-big": "big"}, prices=PRICES, health=health,
                  counter=counter, **kw)


def feats(text: str, **kw) -> RequestFeatures:
    f = features_from_prompt(text)
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def test_auto_rules_pick_the_tier_and_the_cheapest_deployment_serves():
    r = router()
    d = r.decide(feats(CLASSIFY), "thrifty/auto")
    assert (d.tier, d.deployment, d.rule) == ("fast", "flash", "trivial")  # flash is cheaper than mini
    assert d.reason == "rule trivial" and d.checks == ("empty", "consistency")
    d = r.decide(feats(CHAT), "thrifty/auto")
    assert (d.tier, d.deployment, d.rule, d.reason) == ("standard", "mid", None, "default tier")
    assert d.checks == ("empty", "refusal", "truncated", "schema")  # escalation.checks by default
    d = r.decide(feats(MATH), "thrifty/auto")
    assert (d.tier, d.deployment) == ("heavy", "big") and d.checks == ()  # nothing above heavy


def test_ranking_is_by_price_card_and_config_order_without_prices():
    assert router().ranked == {"fast": ("flash", "mini"), "standard": ("mid", "mid-b"), "heavy": ("big",)}
    cfg = RoutingConfig.model_validate(CONFIG)
    assert Router(cfg, deployments=DEPLOYMENTS).ranked["standard"] == ("mid-b", "mid")


def test_a_tier_can_be_requested_and_unknown_tiers_are_not_found():
    d = router().decide(feats(MATH), "thrifty/fast")
    assert (d.tier, d.deployment, d.reason) == ("fast", "flash", "client asked for the tier")
    with pytest.raises(NotFound) as err:
        router().decide(feats(MATH), "thrifty/turbo")
    assert "thrifty/auto" in str(err.value) and "thrifty/heavy" in str(err.value)


def test_a_concrete_model_is_honoured_unless_downgrading_is_allowed():
    r = router()
    d = r.decide(feats(CLASSIFY), "gpt-big")
    assert (d.tier, d.deployment, d.reason, d.checks) == ("heavy", "big", "client asked for the model", ())
    d = r.decide(feats(CLASSIFY), "gpt-big", allow_downgrade=True)
    assert (d.tier, d.deployment, d.ceiling) == ("fast", "flash", "heavy")
    assert d.reason.startswith("downgraded from gpt-big by rule trivial")
    # Never an upgrade: a rule asking for more than the model keeps the model.
    d = r.decide(feats(MATH), "flash", allow_downgrade=True)
    assert (d.tier, d.deployment) == ("fast", "flash")
    # By config, for listed models only; the route's override wins.
    listed = router(allow_downgrade=["gpt-big"])
    assert listed.decide(feats(CLASSIFY), "gpt-big").deployment == "flash"
    assert listed.decide(feats(CLASSIFY), "mid").deployment == "mid"
    assert listed.decide(feats(CLASSIFY), "gpt-big", allow_downgrade=False).deployment == "big"
    assert router(allow_downgrade=True).decide(feats(CLASSIFY), "mid-b").deployment == "flash"
    # A model outside routing is passed through for the gateway to resolve.
    assert router(allow_downgrade=True).decide(feats(CLASSIFY), "other").deployment == "other"


def test_unhealthy_deployments_are_skipped_then_stronger_tiers_then_weaker():
    down = {"flash"}
    assert router(health=lambda n: n not in down).decide(feats(CLASSIFY), "thrifty/auto").deployment == "mini"
    down = {"flash", "mini"}
    d = router(health=lambda n: n not in down).decide(feats(CLASSIFY), "thrifty/auto")
    assert (d.tier, d.deployment) == ("standard", "mid") and "no healthy deployment in fast" in d.reason
    down = {"big"}
    d = router(health=lambda n: n not in down).decide(feats(MATH), "thrifty/auto")
    assert (d.tier, d.deployment) == ("standard", "mid")
    with pytest.raises(UpstreamError) as err:
        router(health=lambda n: False).decide(feats(MATH), "thrifty/auto")
    assert err.value.status == 503


def test_user_tier_modifies_the_decision():
    r = router()
    d = r.decide(feats(MATH, user_tier="trial"), "thrifty/auto")
    assert d.tier == "standard" and "lowered to standard for trial users" in d.reason
    d = r.decide(feats(CLASSIFY, user_tier="enterprise"), "thrifty/auto")
    assert d.tier == "standard" and "raised to standard" in d.reason
    assert r.decide(feats(CLASSIFY, user_tier="unknown-tier"), "thrifty/auto").tier == "fast"


def test_free_users_have_a_daily_cap_on_heavy_decisions():
    now = [86400 * 100 + 5.0]
    counter = MemoryHeavyCounter()
    r = router(counter=counter, clock=lambda: now[0])
    f = feats(MATH, user_tier="free", user="u1", tenant="t")
    assert [r.decide(f, "thrifty/auto").tier for _ in range(3)] == ["heavy", "heavy", "standard"]
    assert "daily heavy-tier cap (2) of free users reached" in r.decide(f, "thrifty/auto").reason
    other = feats(MATH, user_tier="free", user="u2", tenant="t")
    assert r.decide(other, "thrifty/auto").tier == "heavy"  # per user
    assert r.decide(feats(MATH, user_tier="pro", user="u1", tenant="t"), "thrifty/auto").tier == "heavy"
    now[0] += 86400  # a new UTC day
    assert r.decide(f, "thrifty/auto").tier == "heavy"
    assert counter.used("t/u1") == 1


def test_escalation_climbs_one_tier_or_to_the_rule_target():
    r = router()
    d = r.decide(feats(CHAT), "thrifty/auto")
    up = r.escalate(d, feats(CHAT), "refusal")
    assert (up.tier, up.deployment, up.steps) == ("heavy", "big", 1)
    assert up.reason == "escalated from standard: refusal" and up.checks == ()
    assert r.escalate(up, feats(CHAT)) is None  # max_steps 1, and heavy is the top
    mcq = "Which colour?\nA) red\nB) blue"
    d = r.decide(feats(mcq), "thrifty/auto")
    assert d.rule in ("trivial", "mcq")
    d = r.decide(feats(mcq, request_type="generation"), "thrifty/auto")
    assert d.rule == "mcq" and r.escalate(d, feats(mcq)).tier == "heavy"  # escalate_to skips standard
    assert router(escalation={"enabled": False}).decide(feats(CHAT), "thrifty/auto").checks == ()


def test_escalation_respects_ceilings_caps_and_steps():
    r = router(escalation={"max_steps": 2})
    d = r.decide(feats(CLASSIFY), "mid", allow_downgrade=True)
    assert d.tier == "fast" and d.ceiling == "standard"
    up = r.escalate(d, feats(CLASSIFY), "empty answer")
    assert up.tier == "standard" and up.checks == ()  # at its ceiling: nothing more to check
    assert r.escalate(up, feats(CLASSIFY)) is None
    f = feats(CLASSIFY, user_tier="trial")
    d = r.decide(f, "thrifty/auto")
    up = r.escalate(d, f)
    assert up.tier == "standard" and r.escalate(up, f) is None
    two = r.decide(feats(CHAT), "thrifty/fast")
    step1 = r.escalate(two, feats(CHAT))
    assert step1.tier == "standard" and step1.checks  # one more step allowed
    assert r.escalate(step1, feats(CHAT)).tier == "heavy"
    counter = MemoryHeavyCounter()
    capped = router(counter=counter)
    f = feats(CHAT, user_tier="free", user="u", tenant="t")
    for _ in range(2):
        counter.take("t/u", __import__("time").strftime("%Y-%m-%d", __import__("time").gmtime()), 2)
    assert capped.escalate(capped.decide(f, "thrifty/auto"), f) is None


def test_peer_is_another_healthy_deployment_of_the_tier():
    r = router(health=lambda n: n != "mid-b")
    d = r.decide(feats(CLASSIFY), "thrifty/auto")
    assert r.peer(d) == "mini"
    assert r.peer(r.decide(feats(CHAT), "thrifty/auto")) is None
    assert r.peer(r.decide(feats(CLASSIFY), "big")) is None


def test_unknown_deployment_in_a_tier_is_a_config_error():
    cfg = RoutingConfig.model_validate({**CONFIG, "tiers": {**CONFIG["tiers"], "heavy": ["bigger"]}})
    with pytest.raises(ConfigError) as err:
        Router(cfg, deployments=DEPLOYMENTS, config_path="thrifty.yaml")
    assert "routing.tiers.heavy" in str(err.value) and "'bigger'" in str(err.value)
