"""Response caches. The exact cache answers a repeated deterministic request from a stored answer.

`keys` decides eligibility and computes the documented key, `entry` is the stored byte format,
`backends` the byte stores (memory LRU, SQLite, Redis), `replay` turns answers into streams and
back, and `exact.ExactCache` is what the request pipeline calls.
"""

from .backends import CacheBackend, CacheUnavailable, MemoryLRU, RedisStore, SQLiteStore
from .entry import CorruptEntry, Entry, decode_entry, encode_entry
from .exact import ExactCache
from .keys import (
    CACHE_CONTROL_HEADER,
    DEFAULT_VOLATILE,
    CacheControl,
    CacheDecision,
    CachePolicy,
    cache_key,
    canonical_request,
    decide,
    parse_cache_control,
)
from .replay import (
    IncompleteStream,
    anthropic_sse,
    assemble_anthropic,
    assemble_openai,
    openai_sse,
    replay_anthropic,
    replay_openai,
    replay_sse,
    with_fresh_ids,
)

__all__ = [
    "CACHE_CONTROL_HEADER", "DEFAULT_VOLATILE", "CacheBackend", "CacheControl", "CacheDecision", "CachePolicy",
    "CacheUnavailable", "CorruptEntry", "Entry", "ExactCache", "IncompleteStream", "MemoryLRU", "RedisStore",
    "SQLiteStore", "anthropic_sse", "assemble_anthropic", "assemble_openai", "cache_key", "canonical_request",
    "decide", "decode_entry", "encode_entry", "openai_sse", "parse_cache_control", "replay_anthropic",
    "replay_openai", "replay_sse", "with_fresh_ids",
]
