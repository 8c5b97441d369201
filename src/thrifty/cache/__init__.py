"""Response caches. The exact cache answers a repeated deterministic request from a stored answer.

`keys` decides eligibility and computes the documented key, `entry` is the stored byte format,
`backends` the byte stores (memory LRU, SQLite, Redis), and `exact.ExactCache` is what the request
pipeline calls. Turning answers into streams and back is each wire object's (`thrifty.wire`).
"""

from thrifty.errors import CacheUnavailable, CorruptEntry

from .backends import CacheBackend, MemoryLRU, RedisStore, SQLiteStore
from .entry import Entry, decode_entry, encode_entry
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
__all__ = [
    "CACHE_CONTROL_HEADER", "DEFAULT_VOLATILE", "CacheBackend", "CacheControl", "CacheDecision", "CachePolicy",
    "CacheUnavailable", "CorruptEntry", "Entry", "ExactCache", "MemoryLRU", "RedisStore",
    "SQLiteStore", "cache_key", "canonical_request", "decide", "decode_entry", "encode_entry", "parse_cache_control",
]
