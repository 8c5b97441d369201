"""Byte stores for the exact cache behind one small async interface.

Every backend maps its own failures to CacheUnavailable where they enter, so the caller can fail
open (send the request upstream) and record that the cache was down. `set` with `ttl_s` <= 0
stores nothing and removes any value held under that key.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from thrifty.errors import CacheUnavailable

Clock = Callable[[], float]


class CacheBackend(ABC):
    name: str = "backend"

    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl_s: int) -> None: ...

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------- in-process LRU

class MemoryLRU(CacheBackend):
    """Least-recently-used eviction under a byte budget.

    An item costs len(key) + len(value) bytes (Python object overhead is not counted). A value
    larger than the whole budget is not stored. Expired items are dropped when next touched or
    when eviction reaches them.
    """

    name = "memory"

    def __init__(self, max_bytes: int, *, clock: Clock = time.monotonic) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self._clock = clock
        self._items: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self.bytes_used = 0

    def __len__(self) -> int:
        return len(self._items)

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        if self._clock() >= item[1]:
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return item[0]

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        self._drop(key)
        size = len(key) + len(value)
        if ttl_s <= 0 or size > self.max_bytes:
            return
        self._items[key] = (bytes(value), self._clock() + ttl_s)
        self.bytes_used += size
        while self.bytes_used > self.max_bytes:
            old_key, (old_value, _) = self._items.popitem(last=False)
            self.bytes_used -= len(old_key) + len(old_value)

    async def delete(self, key: str) -> None:
        self._drop(key)

    def keys(self) -> list[str]:
        """Keys from least to most recently used (for tests and introspection)."""
        return list(self._items)

    def _drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.bytes_used -= len(key) + len(item[0])


# ---------------------------------------------------------------- SQLite

class SQLiteStore(CacheBackend):
    """A table in a SQLite file (WAL), shared by processes on one machine and kept across restarts.

    One worker thread owns the connection, opened on first use, so the event loop never blocks
    on disk. Expiry uses wall-clock time, which survives restarts; expired rows are purged every
    `purge_every` writes.
    """

    name = "sqlite"

    def __init__(self, path: str, *, clock: Clock = time.time, purge_every: int = 256,
                 busy_timeout_ms: int = 1000) -> None:
        self.path = path
        self._clock = clock
        self._purge_every = purge_every
        self._busy_timeout_ms = busy_timeout_ms
        self._writes = 0
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def get(self, key: str) -> bytes | None:
        return await self._run(self._get, key, self._clock())

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        if ttl_s <= 0:
            await self.delete(key)
            return
        self._writes += 1
        purge = self._purge_every > 0 and self._writes % self._purge_every == 0
        await self._run(self._set, key, bytes(value), self._clock(), ttl_s, purge)

    async def delete(self, key: str) -> None:
        await self._run(self._delete, key)

    async def purge_expired(self) -> int:
        return await self._run(self._purge, self._clock())

    async def close(self) -> None:
        if self._executor is None:
            return
        try:
            await self._run(self._close)
        finally:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thrifty-cache-sqlite")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as err:
            raise CacheUnavailable(f"sqlite cache {self.path}: {err}") from err

    # The methods below run on the worker thread only.

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("CREATE TABLE IF NOT EXISTS exact_cache ("
                             "key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NOT NULL)")
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _get(self, key: str, now: float) -> bytes | None:
        row = self._db().execute("SELECT value, expires_at FROM exact_cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        if now >= row[1]:
            self._db().execute("DELETE FROM exact_cache WHERE key = ? AND expires_at <= ?", (key, now))
            return None
        return bytes(row[0])

    def _set(self, key: str, value: bytes, now: float, ttl_s: int, purge: bool) -> None:
        db = self._db()
        db.execute("INSERT OR REPLACE INTO exact_cache (key, value, expires_at) VALUES (?, ?, ?)",
                   (key, value, now + ttl_s))
        if purge:
            self._purge(now)

    def _delete(self, key: str) -> None:
        self._db().execute("DELETE FROM exact_cache WHERE key = ?", (key,))

    def _purge(self, now: float) -> int:
        return self._db().execute("DELETE FROM exact_cache WHERE expires_at <= ?", (now,)).rowcount

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# ---------------------------------------------------------------- Redis

class RedisStore(CacheBackend):
    """Keys `prefix + key` in Redis with native expiry (redis-py asyncio client).

    Timeouts are short and retries off: a slow cache must cost less than the call it saves.
    After a failure the store answers CacheUnavailable at once for `backoff_s`, so a down Redis
    does not add a connect timeout to every request.
    """

    name = "redis"

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "thrifty:exact:",
                 timeout_s: float = 0.25, backoff_s: float = 1.0, client: Any = None,
                 clock: Clock = time.monotonic) -> None:
        from redis.exceptions import RedisError

        self.prefix = prefix
        self.where = _without_password(url)
        self._errors = (RedisError, OSError)
        self._backoff_s = backoff_s
        self._clock = clock
        self._down_until = 0.0
        if client is None:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                    retry=Retry(NoBackoff(), 0), decode_responses=False)
        self._client = client

    async def get(self, key: str) -> bytes | None:
        value = await self._call("GET", self._client.get, self.prefix + key)
        return None if value is None else bytes(value)

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        if ttl_s <= 0:
            await self.delete(key)
            return
        await self._call("SET", self._client.set, self.prefix + key, value, ex=int(ttl_s))

    async def delete(self, key: str) -> None:
        await self._call("DEL", self._client.delete, self.prefix + key)

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except self._errors:
            pass

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        if self._down_until and self._clock() < self._down_until:
            raise CacheUnavailable(f"redis cache {self.where}: down, retrying after a pause")
        try:
            result = await fn(*args, **kw)
        except self._errors as err:
            self._down_until = self._clock() + self._backoff_s
            raise CacheUnavailable(f"redis cache {self.where}: {what} failed: {type(err).__name__}: {err}") from err
        self._down_until = 0.0
        return result


def _without_password(url: str) -> str:
    """The URL for messages: credentials never reach a log line or an error."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
