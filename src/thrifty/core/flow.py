"""The order of the levers: the one place that lists the stages a call goes through."""

from __future__ import annotations

from thrifty.core.gateway import Gateway
from thrifty.core.pipeline import Next, compose
from thrifty.core.upstream import ModelRoute, ProviderCall


def build_flow(gateway: Gateway) -> Next:
    stages = [
        ModelRoute(gateway),
    ]
    return compose(stages, ProviderCall(gateway))
