"""The order of the levers: the one place that lists the stages a call goes through."""

from __future__ import annotations

from functools import partial

from thrifty.budgets.stage import Budgets
from thrifty.cache.semantic_stage import SemanticCaching
from thrifty.cache.stage import ExactCaching
from thrifty.core.gateway import Gateway
from thrifty.core.pipeline import Next, Stage, compose
from thrifty.core.upstream import ModelRoute, ProviderCall, downgrade_to_cheapest_tier
from thrifty.shaping.shape_stage import Shaping
from thrifty.shaping.stage import PromptCaching


def build_flow(gateway: Gateway) -> tuple[Next, dict[str, Stage]]:
    """The composed handler and the stages by name (the API reaches some, e.g. for feedback)."""
    stages: list[Stage] = [ExactCaching(gateway.exact_cache)]  # the key is the model the client asked for
    if gateway.semantic_cache is not None:
        stages.append(SemanticCaching(gateway.semantic_cache))
    stages += [
        # Routing; with escalation checks it runs everything below once per attempt (a lower tier's
        # answer that fails a check is re-run one tier up: each attempt is shaped, budgeted and billed).
        ModelRoute(gateway),
        Shaping(gateway.config.defaults.anthropic_max_tokens),  # output caps, stop sequences, top-k chunks
        PromptCaching(gateway.prompt_cache, gateway.prices),  # after routing: works on the wire format
        # Last before the provider: it prices the final upstream body's worst case (breakpoints included).
        Budgets(gateway.budgets, gateway.prices, on_reserved=_keep_budget_headers,
                downgrade=partial(downgrade_to_cheapest_tier, gateway)),
    ]
    return compose(stages, ProviderCall(gateway)), {s.name: s for s in stages}


def _keep_budget_headers(call, reservation) -> None:  # type: ignore[no-untyped-def]
    call.extra_headers.update(reservation.headers())
