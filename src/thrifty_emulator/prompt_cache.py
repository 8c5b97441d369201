"""The providers' prompt-caching rules, with an injectable clock so tests can expire entries.

OpenAI (automatic): prompts of at least 1024 tokens are cached by prefix in 128-token steps
(1024, 1152, ...). `cached_tokens` is the longest such prefix seen before, within its retention
(idle time, refreshed on every use), scoped per model and `prompt_cache_key`.

Anthropic (explicit): `cache_control` breakpoints on blocks, in prompt order (tools, system,
messages), at most four. A request reads the longest prefix cached at one of its breakpoints, or
at a block boundary up to 20 blocks before one (the provider's lookback), and writes every
breakpoint after that which is at least the model's minimum length. Written tokens are split by
the TTL of the breakpoint that closes them; reads refresh the entry read.

Both caches are best-effort, as the providers document them (docs/emulator.md, "Prompt caching"):
  - An entry a request writes is readable only once that request's answer has begun: the app
    runs the cache inside `deferred_writes()` and commits the writes when the first byte of the
    answer goes out. Concurrent cold requests therefore all miss, and each pays its own write.
  - OpenAI routes by a hash of the first 256 prompt tokens (and `prompt_cache_key`); beyond
    `prefix_rpm` requests per minute for one route, requests overflow to machines that have not
    seen the prefix: they miss and write nothing where later requests are routed.
"""

from __future__ import annotations

import hashlib
import time
from array import array
from collections import deque
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from thrifty_emulator.prompt import Block

Clock = Callable[[], float]

OPENAI_MIN_TOKENS = 1024
OPENAI_STEP_TOKENS = 128
ANTHROPIC_LOOKBACK_BLOCKS = 20
ANTHROPIC_TTL_S = {"5m": 300.0, "1h": 3600.0}
OPENAI_ROUTE_TOKENS = 256  # the routing hash covers about the first 256 tokens
OPENAI_PREFIX_RPM = 15  # "approximately 15 requests per minute" per prefix + prompt_cache_key
_ROUTE_WINDOW_S = 60.0
_MAX_ROUTES = 100_000


class CacheWrites:
    """Entries one request wrote, held back until its answer begins."""

    def __init__(self) -> None:
        self._writes: list[tuple["TTLStore", bytes, float]] = []

    def add(self, store: "TTLStore", key: bytes, ttl_s: float) -> None:
        self._writes.append((store, key, ttl_s))

    def commit(self) -> None:
        """The answer has begun: what the request wrote becomes readable (from now, for its TTL)."""
        writes, self._writes = self._writes, []
        for store, key, ttl_s in writes:
            store.touch(key, store.now(), ttl_s)


_pending: ContextVar[CacheWrites | None] = ContextVar("thrifty_emulator_cache_writes", default=None)


@contextmanager
def deferred_writes() -> Iterator[CacheWrites]:
    """Cache writes made inside the block wait in the yielded `CacheWrites` until `commit()`."""
    writes = CacheWrites()
    token = _pending.set(writes)
    try:
        yield writes
    finally:
        _pending.reset(token)


class TTLStore:
    """Keys with an expiry; touching refreshes it. Kept in touch order so eviction drops the coldest."""

    def __init__(self, clock: Clock, max_entries: int = 500_000) -> None:
        self._clock = clock
        self._max = max_entries
        self._entries: dict[bytes, tuple[float, float]] = {}  # key -> (expires_at, ttl_s)

    def now(self) -> float:
        return self._clock()

    def ttl_if_alive(self, key: bytes, now: float) -> float | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[key]
            return None
        return entry[1]

    def write(self, key: bytes, now: float, ttl_s: float) -> None:
        """A new entry: deferred while a request's `deferred_writes()` is open, else stored at once."""
        pending = _pending.get()
        if pending is None:
            self.touch(key, now, ttl_s)
        else:
            pending.add(self, key, ttl_s)

    def touch(self, key: bytes, now: float, ttl_s: float) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (now + ttl_s, ttl_s)
        while len(self._entries) > self._max:
            self._entries.pop(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class PrefixCache:
    """OpenAI's automatic prompt caching."""

    def __init__(self, clock: Clock = time.monotonic, min_tokens: int = OPENAI_MIN_TOKENS,
                 step_tokens: int = OPENAI_STEP_TOKENS, prefix_rpm: int = OPENAI_PREFIX_RPM) -> None:
        self.store = TTLStore(clock)
        self.min_tokens = min_tokens
        self.step_tokens = step_tokens
        self.prefix_rpm = prefix_rpm  # 0: no overflow (every request reaches the prefix's machine)
        self._routes: dict[bytes, deque[float]] = {}

    def _overflows(self, scope: bytes, ids: array, now: float) -> bool:
        """Count this request against its route; True when it is beyond the route's rate."""
        if self.prefix_rpm <= 0:
            return False
        head = memoryview(ids[:OPENAI_ROUTE_TOKENS]).cast("B")
        route = hashlib.blake2b(scope + b"\x00" + head, digest_size=16).digest()
        seen = self._routes.pop(route, None) or deque()
        self._routes[route] = seen  # most recently used last, so the cap drops the coldest route
        while seen and seen[0] <= now - _ROUTE_WINDOW_S:
            seen.popleft()
        seen.append(now)
        while len(self._routes) > _MAX_ROUTES:
            self._routes.pop(next(iter(self._routes)))
        return len(seen) > self.prefix_rpm

    def _prefix_keys(self, scope: bytes, ids: array) -> list[tuple[int, bytes]]:
        raw = memoryview(ids).cast("B")
        width = ids.itemsize
        h = hashlib.blake2b(scope, digest_size=16)
        keys: list[tuple[int, bytes]] = []
        start, end = 0, self.min_tokens
        while end <= len(ids):
            h.update(raw[start * width:end * width])
            keys.append((end, h.copy().digest()))
            start, end = end, end + self.step_tokens
        return keys

    def lookup_and_store(self, scope: str, ids: array, ttl_s: float) -> int:
        """Cached tokens for this prompt; afterwards every prefix of it is cached (or refreshed)."""
        if len(ids) < self.min_tokens:
            return 0
        now = self.store.now()
        if self._overflows(scope.encode(), ids, now):
            return 0
        keys = self._prefix_keys(scope.encode(), ids)
        cached = 0
        for length, key in reversed(keys):
            if self.store.ttl_if_alive(key, now) is not None:
                cached = length
                break
        for length, key in keys:
            if length <= cached:
                self.store.touch(key, now, ttl_s)  # read: refreshed at once
            else:
                self.store.write(key, now, ttl_s)
        return cached

    def clear(self) -> None:
        self.store.clear()
        self._routes.clear()


@dataclass(frozen=True, slots=True)
class CacheUse:
    read: int = 0
    write_5m: int = 0
    write_1h: int = 0

    @property
    def written(self) -> int:
        return self.write_5m + self.write_1h


class BreakpointCache:
    """Anthropic's explicit prompt caching."""

    def __init__(self, clock: Clock = time.monotonic, lookback_blocks: int = ANTHROPIC_LOOKBACK_BLOCKS) -> None:
        self.store = TTLStore(clock)
        self.lookback = lookback_blocks

    def apply(self, scope: str, blocks: Sequence[Block], min_tokens: int) -> CacheUse:
        breakpoints = [i for i, b in enumerate(blocks) if b.ttl]
        if not breakpoints:
            return CacheUse()
        now = self.store.now()
        prefix = scope.encode() + b"\x00"
        read_at = -1  # index of the block whose prefix is read from the cache
        for bp in breakpoints:
            for i in range(bp, max(-1, bp - self.lookback - 1), -1):
                if i <= read_at:
                    break
                if self.store.ttl_if_alive(prefix + blocks[i].digest, now) is not None:
                    read_at = i
                    break
        read = 0
        if read_at >= 0:
            key = prefix + blocks[read_at].digest
            self.store.touch(key, now, self.store.ttl_if_alive(key, now) or ANTHROPIC_TTL_S["5m"])
            read = blocks[read_at].end
        pos, w5m, w1h = read, 0, 0
        for bp in breakpoints:
            block = blocks[bp]
            ttl = block.ttl or "5m"
            if block.end <= read:
                continue
            if block.end < min_tokens:
                continue  # too short to cache: silently processed uncached, as the provider does
            if ttl == "1h":
                w1h += block.end - pos
            else:
                w5m += block.end - pos
            pos = block.end
            self.store.write(prefix + block.digest, now, ANTHROPIC_TTL_S[ttl])
        return CacheUse(read, w5m, w1h)

    def clear(self) -> None:
        self.store.clear()
