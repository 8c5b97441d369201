"""Routing configuration (tiers, ordered rules, user-tier modifiers, escalation) and compiled rules.

```yaml
routing:
  tiers:                      # weakest first; each an ordered list of deployment names
    fast: [gpt-4o-mini, llama-8b-groq]
    standard: [gpt-4o, claude-sonnet]
    heavy: [claude-opus]
  default_tier: standard
  rules:                      # the first rule whose `when` holds picks the tier
    - name: trivial
      when: {request_type: [classification, extraction, rewrite], input_tokens: {lt: 4000}}
      tier: fast
      checks: [empty, refusal, truncated, schema]
    - when: {tools: true}
      tier: heavy
  allow_downgrade: false      # true, or a list of model names a client may be downgraded from
  user_tiers:
    free: {heavy_per_day: 20, max_tier: standard}
  escalation: {checks: [empty, refusal, truncated, schema], max_steps: 1}
```

Every condition in a `when` must hold: a bare value means equality (a list: any of), numbers take
`{lt, le, gt, ge}`. Rules compile once into one function; a decision costs a few attribute reads
per rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from thrifty.routing.features import REQUEST_TYPES, FeatureSettings, RequestFeatures

CHECKS = ("empty", "refusal", "truncated", "schema", "confidence", "consistency", "too_short")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    """A numeric condition; every bound given must hold."""

    lt: int | float | None = None
    le: int | float | None = None
    gt: int | float | None = None
    ge: int | float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> "Range":
        if self.lt is None and self.le is None and self.gt is None and self.ge is None:
            raise ValueError("a range needs at least one of lt, le, gt, ge")
        return self


Number = int | Range
Names = str | list[str]


class When(_Strict):
    """Conditions over request features (and the model the client asked for); all must hold."""

    request_type: Names | None = None
    input_tokens: Number | None = None
    turns: Number | None = None
    messages: Number | None = None
    tool_count: Number | None = None
    tool_results: Number | None = None
    choices: Number | None = None
    retrieved_chunks: Number | None = None
    prompt_chars: Number | None = None
    max_output_tokens: Number | None = None
    tools: bool | None = None
    structured_output: bool | None = None
    code: bool | None = None
    long_context: bool | None = None
    images: bool | None = None
    feature: Names | None = None
    call_site: Names | None = None
    user_tier: Names | None = None
    tenant: Names | None = None
    model: Names | None = None  # the model name the client sent (e.g. thrifty/auto)

    @model_validator(mode="after")
    def _known_types(self) -> "When":
        types = [self.request_type] if isinstance(self.request_type, str) else self.request_type or []
        for t in types:
            if t not in REQUEST_TYPES:
                raise ValueError(f"unknown request_type {t!r} (known: {', '.join(REQUEST_TYPES)})")
        return self


class Rule(_Strict):
    name: str | None = None
    when: When = When()
    tier: str
    # Escalation checks for answers to requests this rule routes; None: `escalation.checks`.
    checks: list[str] | None = None
    escalate_to: str | None = None  # None: the next tier up
    # A learned policy (`thrifty train router --out FILE`) may send this rule's requests to its
    # cheap tier instead of `tier`: when P(the cheap tier is as good) >= the threshold
    # (`policy_threshold`, else the one saved in the file). See routing/learned.py.
    policy: str | None = None
    policy_threshold: float | None = Field(default=None, ge=0, le=1.01)


class UserTierPolicy(_Strict):
    """How a user tier modifies a routing decision (it never makes one)."""

    max_tier: str | None = None  # decisions above are lowered to this tier
    min_tier: str | None = None  # decisions below are raised to this tier
    heavy_per_day: int | None = Field(default=None, ge=0)  # decisions into a heavy tier per user per UTC day


class ConsistencyConfig(_Strict):
    # auto: compare chosen options when the request has lettered choices, else token overlap.
    mode: Literal["auto", "exact", "overlap"] = "auto"
    threshold: float = Field(default=0.6, ge=0, le=1)  # token-overlap (Jaccard) needed to agree
    # peer: the second sample comes from the next deployment of the same tier; same: the same one again.
    sample_from: Literal["same", "peer"] = "peer"


class EscalationConfig(_Strict):
    enabled: bool = True
    checks: list[str] = ["empty", "refusal", "truncated", "schema"]
    confidence_threshold: float = Field(default=0.6, ge=0, le=1)
    confidence_field: str = "confidence"
    min_chars: int = Field(default=1, ge=0)  # the `too_short` check
    consistency: ConsistencyConfig = ConsistencyConfig()
    max_steps: int = Field(default=1, ge=0)  # tiers climbed per request at most


class FeatureConfig(_Strict):
    long_context_tokens: int = Field(default=8000, gt=0)
    short_rewrite_tokens: int = Field(default=600, gt=0)

    def settings(self) -> FeatureSettings:
        return FeatureSettings(long_context_tokens=self.long_context_tokens,
                               short_rewrite_tokens=self.short_rewrite_tokens)


class RoutingConfig(_Strict):
    tiers: dict[str, list[str]]  # weakest first (unless tier_order says otherwise)
    tier_order: list[str] | None = None
    default_tier: str
    rules: list[Rule] = []
    model_prefix: str = "thrifty/"  # clients ask for `thrifty/auto` or `thrifty/<tier>`
    auto_name: str = "auto"
    allow_downgrade: bool | list[str] = False
    # The deployment (or alias) whose model prices the counterfactual of `thrifty/auto` and
    # `thrifty/<tier>` calls: what they would have used without Thrifty. Without one, routing's
    # effect on those calls is counted but no saving is claimed (docs/savings.md).
    baseline_model: str | None = None
    heavy_tiers: list[str] | None = None  # None: the strongest tier
    user_tiers: dict[str, UserTierPolicy] = {}
    escalation: EscalationConfig = EscalationConfig()
    features: FeatureConfig = FeatureConfig()
    # Ranking deployments by price: input tokens assumed per output token.
    price_input_weight: float = Field(default=3.0, ge=0)

    @model_validator(mode="after")
    def _references(self) -> "RoutingConfig":
        if not self.tiers:
            raise ValueError("tiers: at least one tier is needed")
        for name, deps in self.tiers.items():
            if not deps:
                raise ValueError(f"tiers.{name}: a tier needs at least one deployment")
        known = ", ".join(self.tiers)

        def tier(value: str | None, where: str) -> None:
            if value is not None and value not in self.tiers:
                raise ValueError(f"{where}: unknown tier {value!r} (known: {known})")

        if self.tier_order is not None and sorted(self.tier_order) != sorted(self.tiers):
            raise ValueError(f"tier_order: must list every tier once (tiers: {known})")
        tier(self.default_tier, "default_tier")
        if self.auto_name in self.tiers:
            raise ValueError(f"tiers.{self.auto_name}: the name is taken by auto routing (auto_name)")
        for i, rule in enumerate(self.rules):
            tier(rule.tier, f"rules[{i}].tier")
            tier(rule.escalate_to, f"rules[{i}].escalate_to")
            _known_checks(rule.checks or [], f"rules[{i}].checks")
        for t in self.heavy_tiers or []:
            tier(t, "heavy_tiers")
        for name, policy in self.user_tiers.items():
            tier(policy.max_tier, f"user_tiers.{name}.max_tier")
            tier(policy.min_tier, f"user_tiers.{name}.min_tier")
        _known_checks(self.escalation.checks, "escalation.checks")
        return self

    def order(self) -> list[str]:
        """Tiers from weakest to strongest."""
        return list(self.tier_order or self.tiers)


def _known_checks(checks: list[str], where: str) -> None:
    for c in checks:
        if c not in CHECKS:
            raise ValueError(f"{where}: unknown check {c!r} (known: {', '.join(CHECKS)})")


# --- compiled rules ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    tier: str
    checks: tuple[str, ...] | None
    escalate_to: str | None
    policy: str | None = None  # the learned policy's file (the Router loads it)
    policy_threshold: float | None = None


Matcher = Callable[[RequestFeatures, str], int]


def compile_rules(rules: list[Rule]) -> tuple[tuple[CompiledRule, ...], Matcher]:
    """The rules' outcomes, and one function giving the index of the first rule that holds (or -1).

    The function is generated source (as `dataclasses` and `namedtuple` do): one `if` per rule,
    conditions inline, so a decision makes no call per condition. Only feature names, which the
    `When` model validates, reach the source; every configured value is passed in as a constant.
    """
    compiled = tuple(CompiledRule(r.name or f"rules[{i}]", r.tier, None if r.checks is None else tuple(r.checks),
                                  r.escalate_to, r.policy, r.policy_threshold) for i, r in enumerate(rules))
    consts: dict[str, Any] = {}
    lines = ["def match(f, model):"]
    for i, rule in enumerate(rules):
        terms = [_term(attr, cond, consts) for attr, cond in rule.when if cond is not None]
        lines.append(f"    if {' and '.join(terms) if terms else 'True'}:")
        lines.append(f"        return {i}")
    lines.append("    return -1")
    namespace: dict[str, Any] = dict(consts)
    exec("\n".join(lines), namespace)  # noqa: S102 - source built above from validated names only
    return compiled, namespace["match"]


def _term(attr: str, cond: Any, consts: dict[str, Any]) -> str:
    if attr not in When.model_fields:  # pragma: no cover - the model forbids other keys
        raise ValueError(f"unknown feature {attr!r}")
    value = "model" if attr == "model" else f"f.{attr}"
    name = f"_c{len(consts)}"
    if isinstance(cond, bool):
        return f"{'' if cond else 'not '}{value}"
    if isinstance(cond, (int, str)):
        consts[name] = cond
        return f"{value} == {name}"
    if isinstance(cond, list):
        consts[name] = frozenset(cond)
        return f"{value} in {name}"
    if isinstance(cond, Range):
        parts = [f"{value} is not None"]
        for op, bound in (("<", cond.lt), ("<=", cond.le), (">", cond.gt), (">=", cond.ge)):
            if bound is not None:
                key = f"_c{len(consts)}"
                consts[key] = bound
                parts.append(f"{value} {op} {key}")
        return "(" + " and ".join(parts) + ")"
    raise TypeError(f"unsupported condition {cond!r}")  # pragma: no cover
