"""The one place an upstream body is made for a deployment.

Routing, escalation, a budget's downgrade and every fallback attempt call `prepare` for the
deployment they move a call to, so each attempt carries the same levers: the client's request
translated to the provider's dialect, the route's shaping (output cap, default stops), the
prompt-cache plan for that model, and the output cap a budget reserved for. What preparing did
is reported as the call's `body_effects`, replaced on every re-preparation (only the body that
was finally sent is accounted for).
"""

from __future__ import annotations

from typing import Any

from thrifty.contract import BreakpointsAdded, Call, Counted, Effect, ModelMoved
from thrifty.shaping.prompt_cache import PromptCachePlanner
from thrifty.shaping.request import has_ranks, limit_output, trim_chunks
from thrifty.wire import upstream_request


class Preparer:
    def __init__(self, planner: PromptCachePlanner, default_max_tokens: int) -> None:
        self.planner = planner
        self.default_max_tokens = default_max_tokens

    def prepare(self, call: Call, route: Any, *, client_body: dict[str, Any] | None = None) -> str | None:
        """Point `call` at `route` with a fresh upstream body; returns the prompt-cache prefix id.

        `client_body` replaces the client's request for this attempt (escalation's confidence
        field); by default it is `call.body`.
        """
        policy = call.policy
        if has_ranks(call.body):
            # Once per call, on the client's request: translation would not carry the markers.
            call.body = trim_chunks(call.body, policy.shape.top_k_chunks)
            call.effects.append(Counted("shaping", f"retrieved chunks cut to the top {policy.shape.top_k_chunks}"))
        wire = route.provider.wire
        call.attempt_body = client_body
        body = upstream_request(call.wire, wire, call.body if client_body is None else client_body,
                                route.model, self.default_max_tokens)
        effects: list[Effect] = []
        if policy.shape.active:
            body, changed = limit_output(body, wire, policy.shape)
            if changed:
                effects.append(Counted("shaping", "; ".join(changed)))
        prefix_id = None
        if policy.prompt_cache:
            plan = self.planner.plan(body, wire=wire, model=route.model, tenant=call.tenant,
                                     provider=route.price_provider)
            body, prefix_id = plan.body, plan.prefix_id
            if plan.cache_key is not None:
                effects.append(Counted("prompt_cache", "prompt_cache_key set"))
            if any(b.added for b in plan.breakpoints):
                effects.append(BreakpointsAdded("prompt_cache", plan.client_prefix_tokens, plan.client_ttl))
        if call.reserved_output_cap is not None and wire.output_cap(body) is None:
            body = wire.with_output_cap(body, call.reserved_output_cap)
        call.route, call.upstream_body, call.body_effects = route, body, effects
        call.prefix_id = prefix_id
        return prefix_id

    def move(self, call: Call, route: Any, lever: str) -> None:
        """Move a call, within its attempt, to another deployment (a fallback, a budget's
        downgrade): the body is prepared again for it, and a move to another model or price is
        `lever`'s effect, so its cost difference shows in the savings."""
        before = call.route
        self.prepare(call, route, client_body=call.attempt_body)
        if before is not None and (route.model, route.price_provider) != (before.model, before.price_provider):
            call.attempt_effects.append(ModelMoved(lever, before.model, before.price_provider))
