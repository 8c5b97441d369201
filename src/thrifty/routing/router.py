"""The routing decision: request features -> rules -> tier -> the cheapest healthy deployment.

A client asks for `thrifty/auto` (rules decide), `thrifty/<tier>` (that tier), or a concrete model,
which is served as asked unless downgrading is allowed for it, and then only ever downgraded (a
rule picking a stronger tier than the model's keeps the model). The user tier then modifies the
decision (floor, ceiling, a daily cap on heavy-tier decisions), never replaces it.

Deployments within a tier are ranked once, at start-up, by their price card (blended input and
output price), falling back to the configured order for models without a price; the first
healthy one serves. `health` is a callable the gateway provides (default: all healthy).

When a tier's cheapest deployment may not take traffic (its breaker is open, or it is cooling
after a 429), a skip is a fallback and follows the reliability policy's price rules
(`providers.reliability`): `max_price_ratio` bounds how much pricier the deployment that serves
may be than the tier's cheapest, and `cross_tier` where the call may go when no deployment of
the tier qualifies (`own`: the tier's cheapest is tried anyway; `cheaper`: weaker tiers first;
`any`: stronger, then weaker tiers, and a 503 when nothing anywhere is healthy).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from thrifty.errors import ConfigError, NotFound, UpstreamError
from thrifty.providers.reliability import affordable
from thrifty.routing.features import RequestFeatures
from thrifty.routing.rules import CompiledRule, RoutingConfig, UserTierPolicy, compile_rules


@dataclass(slots=True)
class Decision:
    """Where a request goes and why. Read-only by convention (not frozen: built per request)."""

    tier: str | None  # None: a concrete model served outside any routing tier
    deployment: str
    reason: str
    rule: str | None = None  # the rule that picked the tier, if one did
    checks: tuple[str, ...] = ()  # escalation checks to run on this answer (empty: none)
    escalate_to: str | None = None  # the tier an escalation goes to (None: the next one up)
    ceiling: str | None = None  # never escalate above this tier (a downgraded concrete model's own)
    steps: int = 0  # escalations that led here
    requested: str = ""
    # A learned cascade's answer stage (routing/learned.py `AnswerStage`) scoring this tier's answer,
    # and the threshold below which it escalates; None: no answer stage.
    answer_stage: Any = None
    answer_threshold: float | None = None


class HeavyCounter(Protocol):
    """Per-user daily count of heavy-tier decisions, checked and incremented in one step."""

    def take(self, key: str, day: str, limit: int) -> bool:
        """Count one for `key` on `day` if fewer than `limit` were counted; True when counted."""
        ...


class MemoryHeavyCounter:
    """In-process counter; forgets earlier days as soon as a new day is seen."""

    def __init__(self) -> None:
        self._day = ""
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, key: str, day: str, limit: int) -> bool:
        with self._lock:
            if day != self._day:
                if day < self._day:  # a late caller from the previous day: count against today
                    day = self._day
                else:
                    self._day, self._counts = day, {}
            used = self._counts.get(key, 0)
            if used >= limit:
                return False
            self._counts[key] = used + 1
            return True

    def used(self, key: str) -> int:
        return self._counts.get(key, 0)


Health = Callable[[str], bool]


class Router:
    """Routing decisions from a `RoutingConfig`; built once at start-up, shared by all requests."""

    def __init__(self, config: RoutingConfig, *, deployments: Mapping[str, Any] | None = None,
                 aliases: Mapping[str, str] | None = None, prices: Any = None, health: Health | None = None,
                 counter: HeavyCounter | None = None, clock: Callable[[], float] = time.time,
                 config_path: str = "<config>", cross_tier: str = "any",
                 max_price_ratio: float | None = None) -> None:
        self.config = config
        # The shadow lane (routing/shadow.py) the gateway attaches when a route shadows its calls;
        # the routing stage hands it each answer. None: no route shadows.
        self.shadow: Any = None
        self.cross_tier = cross_tier
        self.max_price_ratio = max_price_ratio
        self.order = config.order()
        self._rank = {t: i for i, t in enumerate(self.order)}
        self._rules, self._matcher = compile_rules(config.rules)
        # Learned policies (routing/learned.py) of the rules that name one, loaded once here.
        self._learned: dict[CompiledRule, Any] = {}
        for index, rule in enumerate(self._rules):
            if rule.policy is not None:
                self._learned[rule] = _load_learned(rule, index, config, config_path)
        self._default_checks = tuple(config.escalation.checks) if config.escalation.enabled else ()
        self._health = health
        self._counter = counter if counter is not None else MemoryHeavyCounter()
        self._clock = clock
        self._aliases = dict(aliases or {})
        heavy = config.heavy_tiers if config.heavy_tiers is not None else self.order[-1:]
        self._heavy = frozenset(heavy)
        self.ranked: dict[str, tuple[str, ...]] = {}
        self.tier_of: dict[str, str] = {}  # deployment -> the weakest tier that lists it
        self.price_of: dict[str, Decimal | None] = {}  # deployment -> the blended price it is ranked by
        for tier in self.order:
            names = config.tiers[tier]
            for name in names:
                if deployments is not None and name not in deployments:
                    raise ConfigError(config_path, f"routing.tiers.{tier}",
                                      f"unknown deployment {name!r} (known: {', '.join(sorted(deployments))})")
                self.tier_of.setdefault(name, tier)
                self.price_of[name] = _price(name, deployments, prices, config.price_input_weight)
            self.ranked[tier] = _by_price(names, deployments, prices, config.price_input_weight)

    # --- the decision ---------------------------------------------------------------------

    def handles(self, model: str) -> bool:
        """Whether `model` names auto routing or a tier (`thrifty/...`) rather than a model."""
        return model.startswith(self.config.model_prefix)

    def decide(self, features: RequestFeatures, requested_model: str, *,
               allow_downgrade: bool | None = None, embedding: Sequence[float] | None = None) -> Decision:
        """Where this request goes. `allow_downgrade` (from the matching route) overrides the config;
        `embedding` (the prompt's, when a caller already has it) feeds a learned policy's embedding model."""
        cfg = self.config
        if requested_model.startswith(cfg.model_prefix):
            name = requested_model[len(cfg.model_prefix):]
            if name == cfg.auto_name:
                rule = self._match(features, requested_model)
                tier, reason = self._rule_tier(rule, features, embedding)
                return self._serve(tier, features, reason, rule, requested_model)
            if name in cfg.tiers:
                return self._serve(name, features, "client asked for the tier", None, requested_model)
            known = ", ".join([cfg.model_prefix + cfg.auto_name] + [cfg.model_prefix + t for t in self.order])
            raise NotFound(f"model {requested_model!r} is not a routing tier (known: {known})",
                           param="model", code="model_not_found")
        deployment = self._aliases.get(requested_model, requested_model)
        own = self.tier_of.get(deployment)
        if self._may_downgrade(requested_model, deployment, allow_downgrade) and own is not None:
            rule = self._match(features, requested_model)
            tier, by = self._rule_tier(rule, features, embedding)
            if self._rank[tier] < self._rank[own]:
                why = f"downgraded from {requested_model} by {by}"
                return self._serve(tier, features, why, rule, requested_model, ceiling=own)
        return Decision(tier=own, deployment=deployment, reason="client asked for the model",
                        requested=requested_model)

    def escalate(self, decision: Decision, features: RequestFeatures, why: str = "") -> Decision | None:
        """The decision one step up after an answer failed a check, or None when there is none."""
        esc = self.config.escalation
        if not esc.enabled or decision.tier is None or decision.steps >= esc.max_steps:
            return None
        current = self._rank[decision.tier]
        target = decision.escalate_to
        if target is None or self._rank[target] <= current:
            target = self.order[current + 1] if current + 1 < len(self.order) else None
        if target is None:
            return None
        top = len(self.order) - 1
        if decision.ceiling is not None:
            top = self._rank[decision.ceiling]
        policy = self._policy(features)
        if policy is not None and policy.max_tier is not None:
            top = min(top, self._rank[policy.max_tier])
        if self._rank[target] > top:
            target = self.order[top]
        if self._rank[target] <= current:
            return None
        target, capped = self._heavy_cap(target, features, policy, floor=current)
        if target is None:
            return None
        deployment, moved = self._pick(target)
        steps = decision.steps + 1
        reason = f"escalated from {decision.tier}" + (f": {why}" if why else "") + capped + moved
        checks = decision.checks if steps < esc.max_steps and self._can_climb(target, decision.ceiling) else ()
        return replace(decision, tier=self.tier_of_pick(target, deployment), deployment=deployment,
                       reason=reason, checks=checks, escalate_to=None, steps=steps, answer_stage=None,
                       answer_threshold=None)

    def peer(self, decision: Decision) -> str | None:
        """Another healthy deployment of the same tier (for a consistency sample), or None."""
        if decision.tier is None:
            return None
        for name in self.ranked[decision.tier]:
            if name != decision.deployment and self._healthy(name):
                return name
        return None

    # --- parts ------------------------------------------------------------------------------

    def _match(self, features: RequestFeatures, model: str) -> CompiledRule | None:
        index = self._matcher(features, model)
        return None if index < 0 else self._rules[index]

    def _rule_tier(self, rule: CompiledRule | None, features: RequestFeatures,
                   embedding: Sequence[float] | None) -> tuple[str, str]:
        """The tier the matching rule picks (its learned policy's choice, when it has one), and why."""
        if rule is None:
            return self.config.default_tier, "default tier"
        policy = self._learned.get(rule) if self._learned else None
        if policy is None:
            return rule.tier, f"rule {rule.name}"
        if policy.answer is not None:
            return policy.cheap_tier, f"rule {rule.name}: learned cascade -> {policy.cheap_tier}, its answer scored"
        cheap, p = policy.use_cheap(features, rule.policy_threshold, embedding)
        tier = policy.cheap_tier if cheap else rule.tier
        return tier, f"rule {rule.name}: learned P(cheap as good) {p:.2f} -> {tier}"

    def _may_downgrade(self, requested: str, deployment: str, override: bool | None) -> bool:
        if override is not None:
            return override
        allowed = self.config.allow_downgrade
        if isinstance(allowed, bool):
            return allowed
        return requested in allowed or deployment in allowed

    def _policy(self, features: RequestFeatures) -> UserTierPolicy | None:
        if features.user_tier is None:
            return None
        return self.config.user_tiers.get(features.user_tier)

    def _serve(self, tier: str, features: RequestFeatures, reason: str, rule: CompiledRule | None,
               requested: str, ceiling: str | None = None) -> Decision:
        policy = self._policy(features)
        if policy is not None:
            rank = self._rank[tier]
            if policy.min_tier is not None and rank < self._rank[policy.min_tier]:
                tier = policy.min_tier
                reason += f"; raised to {tier} for {features.user_tier} users"
            if policy.max_tier is not None and self._rank[tier] > self._rank[policy.max_tier]:
                tier = policy.max_tier
                reason += f"; lowered to {tier} for {features.user_tier} users"
            if ceiling is not None and self._rank[tier] > self._rank[ceiling]:
                tier = ceiling
        found, capped = self._heavy_cap(tier, features, policy, floor=-1)
        tier = found if found is not None else self.order[0]
        deployment, moved = self._pick(tier)
        checks: tuple[str, ...] = ()
        stage, stage_threshold = None, None
        if self._can_climb(tier, ceiling):
            checks = rule.checks if rule is not None and rule.checks is not None else self._default_checks
            if not self.config.escalation.enabled:
                checks = ()
            learned = self._learned.get(rule) if rule is not None and self._learned else None
            if learned is not None and learned.answer is not None and self.config.escalation.enabled:
                served = self.tier_of_pick(tier, deployment)
                if served == learned.cheap_tier:
                    stage = learned.answer
                    stage_threshold = rule.policy_threshold if rule.policy_threshold is not None \
                        else stage.threshold
                    if "policy" not in checks:  # marks the answer stage (escalation.py runs it last)
                        checks = (*checks, "policy")
        return Decision(tier=self.tier_of_pick(tier, deployment), deployment=deployment,
                        reason=reason + capped + moved, rule=rule.name if rule else None, checks=checks,
                        escalate_to=rule.escalate_to if rule else None, ceiling=ceiling, requested=requested,
                        answer_stage=stage, answer_threshold=stage_threshold)

    def _can_climb(self, tier: str, ceiling: str | None) -> bool:
        top = self._rank[ceiling] if ceiling is not None else len(self.order) - 1
        return self._rank[tier] < top and self.config.escalation.max_steps > 0

    def _heavy_cap(self, tier: str, features: RequestFeatures, policy: UserTierPolicy | None,
                   floor: int) -> tuple[str | None, str]:
        """The tier after the user's daily heavy cap: the strongest non-heavy tier above `floor` when spent."""
        if tier not in self._heavy or policy is None or policy.heavy_per_day is None:
            return tier, ""
        key = f"{features.tenant or '-'}/{features.user or '-'}"
        day = time.strftime("%Y-%m-%d", time.gmtime(self._clock()))
        if self._counter.take(key, day, policy.heavy_per_day):
            return tier, ""
        note = f"; daily heavy-tier cap ({policy.heavy_per_day}) of {features.user_tier} users reached"
        for lower in reversed(self.order[:self._rank[tier]]):
            if lower not in self._heavy and self._rank[lower] > floor:
                return lower, note
        return None, note

    def _pick(self, tier: str) -> tuple[str, str]:
        """The cheapest healthy deployment of `tier`; else one of another tier as `cross_tier` allows."""
        ranked = self.ranked[tier]
        first = ranked[0] if ranked else None
        for name in ranked:
            if self._healthy(name) and self._affordable(name, first):
                return name, ""
        rank = self._rank[tier]
        weaker = list(reversed(self.order[:rank]))
        others = {"any": self.order[rank + 1:] + weaker, "cheaper": weaker}.get(self.cross_tier, [])
        for other in others:
            for name in self.ranked[other]:
                if self._healthy(name) and self._affordable(name, first):
                    return name, f"; no healthy deployment in {tier}, served by {other}"
        if self.cross_tier == "any" or first is None:
            raise UpstreamError(f"no healthy deployment in any routing tier (asked for {tier})", status=503)
        # The reliability policy waits out its cool-down (or answers 503/429 under fail_fast).
        return first, f"; no deployment of {tier} may take traffic now, tried anyway"

    def _affordable(self, name: str, first: str | None) -> bool:
        return first is None or affordable(name, first, self.price_of, self.max_price_ratio)

    def tier_of_pick(self, tier: str, deployment: str) -> str:
        """The tier a picked deployment serves as: `tier` unless the pick moved to another tier."""
        return tier if deployment in self.config.tiers[tier] else self.tier_of.get(deployment, tier)

    def _healthy(self, name: str) -> bool:
        return self._health is None or bool(self._health(name))


def _load_learned(rule: CompiledRule, index: int, config: RoutingConfig, config_path: str) -> Any:
    """A rule's learned policy, its path taken as given, else beside the config file."""
    from thrifty.errors import ThriftyError
    from thrifty.routing.learned import load_policy

    key = f"routing.rules[{index}].policy"
    path = Path(rule.policy or "")
    if not path.is_absolute() and not path.exists() and Path(config_path).is_file():
        path = Path(config_path).parent / path
    try:
        policy = load_policy(path)
    except ThriftyError as exc:
        raise ConfigError(config_path, key, str(exc)) from None
    order = config.order()
    if policy.cheap_tier not in config.tiers:
        raise ConfigError(config_path, key, f"the policy's cheap tier {policy.cheap_tier!r} is not a routing tier "
                                            f"(known: {', '.join(order)})")
    if order.index(policy.cheap_tier) >= order.index(rule.tier):
        raise ConfigError(config_path, key, f"the policy's cheap tier {policy.cheap_tier!r} is not below the "
                                            f"rule's tier {rule.tier!r}")
    if policy.answer is not None:
        esc = config.escalation
        if not esc.enabled or esc.max_steps < 1:
            raise ConfigError(config_path, key, "the policy is a cascade (an answer stage escalates): it needs "
                                                "routing.escalation enabled with max_steps >= 1")
        if policy.answer.needs_second and len(config.tiers[policy.cheap_tier]) < 2 \
                and esc.consistency.sample_from == "peer":
            raise ConfigError(config_path, key, f"the policy's answer stage compares the cheap answer with a peer's "
                                                f"({policy.answer.peer_model}): the tier {policy.cheap_tier!r} needs a "
                                                "second deployment to sample it from")
    return policy


def _price(name: str, deployments: Mapping[str, Any] | None, prices: Any, input_weight: float) -> Decimal | None:
    """The blended price a deployment is ranked by (None: no price card)."""
    if prices is None:
        return None
    dep = deployments.get(name) if deployments is not None else None
    model = getattr(dep, "model", name) if dep is not None else name
    card = prices.card(model, getattr(dep, "price_provider", None))
    return None if card is None else card.input * Decimal(str(input_weight)) + card.output


def _by_price(names: list[str], deployments: Mapping[str, Any] | None, prices: Any,
              input_weight: float) -> tuple[str, ...]:
    """`names` cheapest first by price card; unknown prices after known ones, in configured order."""
    if prices is None:
        return tuple(names)

    def key(item: tuple[int, str]) -> tuple[int, Decimal, int]:
        index, name = item
        price = _price(name, deployments, prices, input_weight)
        return (1, Decimal(0), index) if price is None else (0, price, index)

    return tuple(name for _, name in sorted(enumerate(names), key=key))
