"""Anthropic Messages usage, in and out.

`input_tokens` excludes cache reads (`cache_read_input_tokens`) and cache writes
(`cache_creation_input_tokens`, split by TTL in `cache_creation.ephemeral_5m/1h_input_tokens`);
`output_tokens` includes thinking. Source: Anthropic API reference, Messages "usage", and the
prompt-caching guide ("Tracking cache performance").
"""

from __future__ import annotations

from typing import Any, Mapping

from thrifty.contract.usage import Usage


def usage_from_anthropic(u: Mapping[str, Any] | None) -> Usage:
    if not u:
        return Usage()
    creation = u.get("cache_creation") or {}
    write_total = int(u.get("cache_creation_input_tokens") or 0)
    w1h = int(creation.get("ephemeral_1h_input_tokens") or 0)
    w5m = int(creation.get("ephemeral_5m_input_tokens") or (write_total - w1h))
    # Thinking tokens are part of output_tokens; a breakdown, where given, keeps them apart.
    thinking = int((u.get("output_tokens_details") or {}).get("thinking_tokens") or 0)
    return Usage(input_tokens=int(u.get("input_tokens") or 0),
                 cache_read_tokens=int(u.get("cache_read_input_tokens") or 0),
                 cache_write_5m_tokens=w5m, cache_write_1h_tokens=w1h,
                 output_tokens=int(u.get("output_tokens") or 0), reasoning_tokens=thinking)


def usage_to_anthropic(u: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": u.cache_write_5m_tokens,
                           "ephemeral_1h_input_tokens": u.cache_write_1h_tokens},
        "output_tokens": u.output_tokens,
    }
    if u.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return out


def usage_to_anthropic_delta(u: Usage) -> dict[str, Any]:
    """`usage` as a stream's `message_delta` carries it: cumulative counts, and no `cache_creation`
    breakdown (the delta's usage type has no such field; the TTL split is in `message_start`)."""
    out = usage_to_anthropic(u)
    del out["cache_creation"]
    return out
