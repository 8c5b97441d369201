"""Request shaping (output cap, stop sequences, top-k retrieved chunks) as a pipeline stage."""

from __future__ import annotations

from thrifty.core.pipeline import Answer, Call, Next, Stage
from thrifty.shaping.request import has_ranks, limit_output, trim_chunks


class Shaping(Stage):
    """Right after routing. Chunks are trimmed in the client's request (translation to another wire
    format does not carry the markers) and the upstream body is rebuilt from it; a body with
    markers is always cleaned, even on a route without a shape, so a marker never reaches a
    provider. The output cap and stop sequences then apply to the upstream body."""

    name = "shaping"

    def __init__(self, default_max_tokens: int) -> None:
        self.default_max_tokens = default_max_tokens

    async def __call__(self, call: Call, call_next: Next) -> Answer:
        shape, route = call.policy.shape, call.route
        assert route is not None and call.upstream_body is not None, "Shaping runs after routing"
        if has_ranks(call.body):
            call.body = trim_chunks(call.body, shape.top_k_chunks)
            call.upstream_body = call.surface.upstream_body(
                call.body, route.provider.wire, route.model, self.default_max_tokens)
        if shape.active:
            call.upstream_body = limit_output(call.upstream_body, route.provider.wire, shape)
        return await call_next(call)
