"""Routing: request features -> ordered rules -> tier -> the cheapest healthy deployment, with
escalation checks on lower-tier answers and an offline replay (`thrifty eval router`).

The gateway builds one `Router` from `RoutingConfig` at start-up and per request calls
`features_from_body` then `Router.decide`; after a lower-tier answer it runs
`checks.first_failure` with the decision's checks and, on a reason, `Router.escalate`.
"""

from thrifty.routing.checks import (
    CheckSettings, add_confidence_field, check_confidence, check_consistency,
    check_empty, check_refusal, check_schema, check_too_short, check_truncated, first_failure,
    request_confidence, strip_confidence, strip_confidence_from_answer,
)
from thrifty.routing.features import (
    REQUEST_TYPES, FeatureSettings, RequestFeatures, features_from_body, features_from_prompt,
)
from thrifty.routing.router import Decision, HeavyCounter, MemoryHeavyCounter, Router
from thrifty.routing.rules import CHECKS, EscalationConfig, Rule, RoutingConfig, UserTierPolicy, When

__all__ = [
    "CHECKS", "REQUEST_TYPES", "CheckSettings", "Decision", "EscalationConfig",
    "FeatureSettings", "HeavyCounter", "MemoryHeavyCounter", "RequestFeatures", "Router", "RoutingConfig",
    "Rule", "UserTierPolicy", "When", "add_confidence_field", "check_confidence",
    "check_consistency", "check_empty", "check_refusal", "check_schema", "check_too_short", "check_truncated",
    "features_from_body", "features_from_prompt",
    "first_failure", "request_confidence", "strip_confidence", "strip_confidence_from_answer",
]
