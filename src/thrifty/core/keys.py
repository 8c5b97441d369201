"""Virtual keys made through the admin API: generated here, shown once, stored only as SHA-256.

Two stores: `MemoryKeyStore` (one process) and `RedisKeyStore` (shared by every replica). The
Redis store keeps no cache: each lookup is one GET on the key's digest, so a key revoked on one
replica is refused by every replica on its next request.

A key never reaches a log line, an error message or a store: only its digest does, and the id
shown to admins is the first 12 hex digits of that digest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from thrifty.errors import KeyStoreUnavailable

KEY_PREFIX = "sk-thr-"
ID_LEN = 12


def generate_key() -> str:
    """`sk-thr-` + 32 random URL-safe characters (192 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(24)  # 24 bytes -> exactly 32 characters


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id(d: bytes) -> str:
    return d.hex()[:ID_LEN]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    tenant: str
    name: str | None
    created_at: float
    digest: str  # hex SHA-256 of the key

    def public(self) -> dict[str, Any]:
        """What the admin API shows: everything but the digest."""
        return {"id": self.id, "tenant": self.tenant, "name": self.name, "created_at": self.created_at,
                "source": "api"}


def _matches(record: KeyRecord | None, d: bytes) -> KeyRecord | None:
    """Constant-time check of the digest after the lookup."""
    if record is None:
        return None
    return record if hmac.compare_digest(bytes.fromhex(record.digest), d) else None


class KeyStore:
    name = "base"

    async def lookup(self, d: bytes) -> KeyRecord | None:
        raise NotImplementedError

    async def create(self, tenant: str, name: str | None = None) -> tuple[str, KeyRecord]:
        """A new key and its record; the key itself is returned only here."""
        key = generate_key()
        d = digest(key)
        record = KeyRecord(key_id(d), tenant, name, time.time(), d.hex())
        await self._put(record)
        return key, record

    async def _put(self, record: KeyRecord) -> None:
        raise NotImplementedError

    async def list(self) -> list[KeyRecord]:
        raise NotImplementedError

    async def revoke(self, id_: str) -> KeyRecord | None:
        """Remove the key with this id; None when there is none."""
        raise NotImplementedError

    async def close(self) -> None:
        pass


class MemoryKeyStore(KeyStore):
    """This process only: keys made on one replica are unknown to the others."""

    name = "memory"

    def __init__(self) -> None:
        self._by_digest: dict[bytes, KeyRecord] = {}

    async def lookup(self, d: bytes) -> KeyRecord | None:
        return _matches(self._by_digest.get(d), d)

    async def _put(self, record: KeyRecord) -> None:
        self._by_digest[bytes.fromhex(record.digest)] = record

    async def list(self) -> list[KeyRecord]:
        return sorted(self._by_digest.values(), key=lambda r: r.created_at)

    async def revoke(self, id_: str) -> KeyRecord | None:
        for d, r in self._by_digest.items():
            if r.id == id_:
                del self._by_digest[d]
                return r
        return None


class RedisKeyStore(KeyStore):
    """`{prefix}key:{hex digest}` -> the record as JSON; `{prefix}ids` (a hash) id -> hex digest.

    No cache on purpose: revocation takes effect on every replica at once.
    """

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "thrifty:keys:", timeout_s: float = 0.5,
                 client: Any = None) -> None:
        from redis.exceptions import RedisError

        from thrifty.cache.backends import _without_password

        self.prefix = prefix
        self.where = _without_password(url)
        self._errors = (RedisError, OSError)
        if client is None:
            from redis.asyncio import Redis

            client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                    decode_responses=False)
        self._client = client
        self._ids = prefix + "ids"

    def _key(self, hex_digest: str) -> str:
        return f"{self.prefix}key:{hex_digest}"

    def _unavailable(self, what: str, err: Exception) -> KeyStoreUnavailable:
        return KeyStoreUnavailable(f"the key store (redis {self.where}) cannot be reached: {what} failed "
                                   f"({type(err).__name__})", code="key_store_unavailable")

    async def lookup(self, d: bytes) -> KeyRecord | None:
        try:
            raw = await self._client.get(self._key(d.hex()))
        except self._errors as err:
            raise self._unavailable("GET", err) from err
        return None if raw is None else _matches(_decode(raw), d)

    async def _put(self, record: KeyRecord) -> None:
        try:
            async with self._client.pipeline(transaction=True) as p:
                p.set(self._key(record.digest), orjson.dumps(asdict(record)))
                p.hset(self._ids, record.id, record.digest)
                await p.execute()
        except self._errors as err:
            raise self._unavailable("SET", err) from err

    async def list(self) -> list[KeyRecord]:
        try:
            ids = await self._client.hgetall(self._ids)
            if not ids:
                return []
            raws = await self._client.mget([self._key(v.decode()) for v in ids.values()])
        except self._errors as err:
            raise self._unavailable("list", err) from err
        return sorted((_decode(r) for r in raws if r is not None), key=lambda r: r.created_at)

    async def revoke(self, id_: str) -> KeyRecord | None:
        try:
            hex_digest = await self._client.hget(self._ids, id_)
            if hex_digest is None:
                return None
            key = self._key(hex_digest.decode())
            async with self._client.pipeline(transaction=True) as p:
                p.get(key)
                p.delete(key)
                p.hdel(self._ids, id_)
                raw, _, _ = await p.execute()
        except self._errors as err:
            raise self._unavailable("DEL", err) from err
        return None if raw is None else _decode(raw)

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except self._errors:
            pass


def _decode(raw: bytes) -> KeyRecord:
    d = orjson.loads(raw)
    return KeyRecord(d["id"], d["tenant"], d.get("name"), float(d["created_at"]), d["digest"])


def open_key_store(kind: str, redis_url: str | None, prefix: str = "thrifty:keys:") -> KeyStore:
    if kind == "redis":
        if not redis_url:
            raise ValueError("admin.redis_url is required with key_store: redis")
        return RedisKeyStore(redis_url, prefix=prefix)
    return MemoryKeyStore()
