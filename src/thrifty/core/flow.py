"""The order of the levers: the one place that lists the stages a call goes through."""

from __future__ import annotations

from thrifty.budgets.stage import Budgets
from thrifty.cache.semantic_stage import SemanticCaching
from thrifty.cache.stage import ExactCaching
from thrifty.contract import Call, Next, Stage, compose
from thrifty.core.gateway import Gateway
from thrifty.providers.call import ProviderCall
from thrifty.routing.stage import ModelRoute, downgrade_to_cheapest_tier
from thrifty.shaping.stage import PromptCacheStats


def build_flow(gateway: Gateway) -> tuple[Next, dict[str, Stage]]:
    """The composed handler and the stages by name (the API reaches some, e.g. for feedback).

    The upstream body is made in one place (`gateway.preparer`: translation, shaping, the
    prompt-cache plan, a reserved output cap) by whichever step points the call at a deployment:
    routing, escalation, a budget's downgrade, a fallback.
    """
    accountant, preparer = gateway.accountant, gateway.preparer
    deployments, router = gateway.deployments, gateway.router
    stages: list[Stage] = [ExactCaching(gateway.exact_cache, accountant)]  # keyed by the model asked for
    if gateway.semantic_cache is not None:
        stages.append(SemanticCaching(gateway.semantic_cache, accountant))
    stages += [
        # Routing; with escalation checks it runs everything below once per attempt (a lower tier's
        # answer that fails a check is re-run one tier up: each attempt is prepared, budgeted, billed).
        ModelRoute(deployments, router, preparer),
        PromptCacheStats(gateway.prompt_cache.stats, gateway.prices),
        # Last before the provider: it prices the final upstream body's worst case (breakpoints included).
        Budgets(gateway.budgets, gateway.prices, on_reserved=_keep_budget_headers,
                downgrade=downgrade_to_cheapest_tier(deployments, router, preparer)),
    ]
    return compose(stages, ProviderCall(deployments, router, gateway.prices, preparer, gateway.reliability)), \
        {s.name: s for s in stages}


def _keep_budget_headers(call: Call, reservation) -> None:  # type: ignore[no-untyped-def]
    call.extra_headers.update(reservation.headers())
