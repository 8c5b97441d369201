"""The order of the levers: the one place that lists the stages a call goes through."""

from __future__ import annotations

from thrifty.cache.stage import ExactCaching
from thrifty.core.gateway import Gateway
from thrifty.core.pipeline import Next, compose
from thrifty.core.upstream import ModelRoute, ProviderCall
from thrifty.shaping.stage import PromptCaching


def build_flow(gateway: Gateway) -> Next:
    stages = [
        ExactCaching(gateway.exact_cache),  # before routing: the key is the model the client asked for
        ModelRoute(gateway),
        PromptCaching(gateway.prompt_cache, gateway.prices),  # after routing: works on the wire format
    ]
    return compose(stages, ProviderCall(gateway))
