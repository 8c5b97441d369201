"""Request shaping per route: an output cap, default stop sequences, retrieved context cut to top-k.

Runs after routing, on the provider's wire format:
- `output_cap`: the route's realistic ceiling for the answer. The upstream `max_tokens`
  (`max_completion_tokens` on the OpenAI wire) becomes the smaller of the client's value and the cap;
  a request without one gets the cap instead of the model's maximum.
- `stop`: stop sequences added when the client sent none (never merged into the client's own).
- `top_k_chunks`: retrieved passages the client marked, as content parts (OpenAI) or text blocks
  (Anthropic) carrying `"thrifty_rank": N` (1 = most relevant). Only the k best-ranked parts of each
  message are kept; the marker is removed from every part before the request goes upstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thrifty.wire import Wire

RANK = "thrifty_rank"


@dataclass(frozen=True, slots=True)
class Shape:
    output_cap: int | None = None
    stop: tuple[str, ...] = ()
    top_k_chunks: int | None = None

    @property
    def active(self) -> bool:
        return self.output_cap is not None or bool(self.stop) or self.top_k_chunks is not None


def trim_chunks(body: dict[str, Any], k: int | None) -> dict[str, Any]:
    """The body with only the k best-ranked marked chunks per message, markers removed."""
    if not has_ranks(body):
        return body
    return {**body, "messages": [_trim(m, k) for m in body.get("messages") or ()]}


def limit_output(body: dict[str, Any], wire: Wire, shape: Shape) -> tuple[dict[str, Any], list[str]]:
    """The body with the route's output cap and default stop sequences applied, and what changed
    (for the ledger: shaping's effect is counted, not priced; see docs/savings.md)."""
    out, changed = body, []
    if shape.output_cap is not None:
        asked = wire.output_cap(body)
        out = wire.with_output_cap(out, min(asked or shape.output_cap, shape.output_cap))
        if asked is None or asked > shape.output_cap:
            changed.append(f"output cap {shape.output_cap}" + ("" if asked is None else f" (asked {asked})"))
    if shape.stop and not wire.stops(body):
        out = wire.with_stops(out, list(shape.stop))
        changed.append("default stop sequences")
    return out, changed


def has_ranks(body: dict[str, Any]) -> bool:
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list) and any(isinstance(p, dict) and RANK in p for p in content):
            return True
    return False


def _trim(message: Any, k: int | None) -> Any:
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list) or not any(isinstance(p, dict) and RANK in p for p in content):
        return message
    ranked = sorted((p.get(RANK, 0), i) for i, p in enumerate(content) if isinstance(p, dict) and RANK in p)
    keep = {i for _, i in (ranked if k is None else ranked[:k])}
    parts = []
    for i, p in enumerate(content):
        if isinstance(p, dict) and RANK in p:
            if i not in keep:
                continue
            p = {key: v for key, v in p.items() if key != RANK}
        parts.append(p)
    return {**message, "content": parts}
