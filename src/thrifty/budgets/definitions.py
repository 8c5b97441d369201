"""Budgets set through the admin API (`PUT /admin/budgets/{name}`), beside the config file's.

Where they live follows the admin key store (`admin.key_store`):

- `memory`: this process only; lost on restart, unknown to other replicas.
- `redis` (at `admin.redis_url`, under `admin.prefix`): `{prefix}budgets` is a hash of
  name -> the BudgetConfig as JSON, and `{prefix}budgets:version` a counter raised by every change.

`BudgetSync` keeps a replica's Enforcer in step: the effective budgets are the config file's
plus the API's. A change made on a replica applies there at once; every replica also checks the
version at most once per second (a background task started by `Gateway.start()`), so a change
made on another replica is enforced everywhere within about one second. Until then a replica
enforces the budgets it last saw; while Redis cannot be read it keeps them (and logs it).
An API budget may not reuse the name of a config-file budget or rate limit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Sequence


from thrifty.budgets.limits import BudgetConfig
from thrifty.errors import DefinitionsUnavailable

log = logging.getLogger("thrifty.budgets")

REFRESH_EVERY_S = 1.0
_WARN_EVERY_S = 30.0


class BudgetDefinitions:
    name = "base"

    async def version(self) -> int:
        raise NotImplementedError

    async def snapshot(self) -> tuple[int, dict[str, BudgetConfig]]:
        """The version and every API budget, read together."""
        raise NotImplementedError

    async def put(self, budget: BudgetConfig) -> bool:
        """Create or replace; True when it is new."""
        raise NotImplementedError

    async def delete(self, name: str) -> BudgetConfig | None:
        """Remove; the budget removed, or None when there was none."""
        raise NotImplementedError

    async def close(self) -> None:
        pass


class MemoryBudgetDefinitions(BudgetDefinitions):
    name = "memory"

    def __init__(self) -> None:
        self._budgets: dict[str, BudgetConfig] = {}
        self._version = 0

    async def version(self) -> int:
        return self._version

    async def snapshot(self) -> tuple[int, dict[str, BudgetConfig]]:
        return self._version, dict(self._budgets)

    async def put(self, budget: BudgetConfig) -> bool:
        new = budget.name not in self._budgets
        self._budgets[budget.name] = budget
        self._version += 1
        return new

    async def delete(self, name: str) -> BudgetConfig | None:
        gone = self._budgets.pop(name, None)
        if gone is not None:
            self._version += 1
        return gone


class RedisBudgetDefinitions(BudgetDefinitions):
    """`{prefix}budgets` (hash: name -> BudgetConfig JSON) and `{prefix}budgets:version`."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "thrifty:keys:", timeout_s: float = 0.5,
                 client: Any = None) -> None:
        from redis.exceptions import RedisError

        from thrifty.cache.backends import _without_password

        self.where = _without_password(url)
        self._errors = (RedisError, OSError)
        if client is None:
            from redis.asyncio import Redis

            client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                    decode_responses=False)
        self._client = client
        self._hash = prefix + "budgets"
        self._version = prefix + "budgets:version"

    def _unavailable(self, what: str, err: Exception) -> DefinitionsUnavailable:
        return DefinitionsUnavailable(f"the budget definitions (redis {self.where}) cannot be reached: {what} "
                                      f"failed ({type(err).__name__})", code="budget_store_unavailable")

    async def version(self) -> int:
        try:
            raw = await self._client.get(self._version)
        except self._errors as err:
            raise self._unavailable("GET", err) from err
        return int(raw or 0)

    async def snapshot(self) -> tuple[int, dict[str, BudgetConfig]]:
        try:
            async with self._client.pipeline(transaction=True) as p:
                p.get(self._version)
                p.hgetall(self._hash)
                raw_version, raw = await p.execute()
        except self._errors as err:
            raise self._unavailable("read", err) from err
        out: dict[str, BudgetConfig] = {}
        for k, v in (raw or {}).items():
            name = k.decode() if isinstance(k, bytes) else k
            try:
                out[name] = BudgetConfig.model_validate_json(v)
            except ValueError as exc:
                log.error("budgets: ignoring API budget %r stored in redis: not a valid budget (%s)", name, exc)
        return int(raw_version or 0), out

    async def put(self, budget: BudgetConfig) -> bool:
        try:
            async with self._client.pipeline(transaction=True) as p:
                p.hset(self._hash, budget.name, budget.model_dump_json())
                p.incr(self._version)
                added, _ = await p.execute()
        except self._errors as err:
            raise self._unavailable("HSET", err) from err
        return bool(added)

    async def delete(self, name: str) -> BudgetConfig | None:
        try:
            async with self._client.pipeline(transaction=True) as p:
                p.hget(self._hash, name)
                p.hdel(self._hash, name)
                p.incr(self._version)
                raw, _, _ = await p.execute()
        except self._errors as err:
            raise self._unavailable("HDEL", err) from err
        if raw is None:
            return None
        try:
            return BudgetConfig.model_validate_json(raw)
        except ValueError:
            return None

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except self._errors:
            pass


def open_budget_definitions(kind: str, redis_url: str | None, prefix: str = "thrifty:keys:") -> BudgetDefinitions:
    if kind == "redis":
        if not redis_url:
            raise ValueError("admin.redis_url is required with key_store: redis")
        return RedisBudgetDefinitions(redis_url, prefix=prefix)
    return MemoryBudgetDefinitions()


class BudgetSync:
    """Applies the API budgets to an Enforcer: config-file budgets first, then the API's."""

    def __init__(self, definitions: BudgetDefinitions, enforcer: Any,
                 config_budgets: Sequence[BudgetConfig], reserved_names: Sequence[str] = ()) -> None:
        self.definitions = definitions
        self.enforcer = enforcer  # thrifty.budgets.Enforcer
        self.config_budgets = tuple(config_budgets)
        # Names an API budget may not take: the config file's budgets and rate limits.
        self.reserved = frozenset(b.name for b in self.config_budgets) | frozenset(reserved_names)
        self._applied: int | None = None  # the version the enforcer holds
        self._task: asyncio.Task | None = None
        self._warned = -_WARN_EVERY_S

    async def refresh(self, *, force: bool = False) -> bool:
        """Re-read the API budgets if their version changed (or `force`); True when applied.
        Raises DefinitionsUnavailable when they cannot be read."""
        if not force and self._applied is not None and await self.definitions.version() == self._applied:
            return False
        version, api = await self.definitions.snapshot()
        usable = []
        for name, b in sorted(api.items()):
            if name in self.reserved:
                log.warning("budgets: API budget %r ignored: the config file defines that name", name)
                continue
            usable.append(b)
        self.enforcer.replace_budgets([*self.config_budgets, *usable])
        if self._applied != version:
            log.info("budgets: %d config budget(s) + %d API budget(s) in force (version %d)",
                     len(self.config_budgets), len(usable), version)
        self._applied = version
        return True

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down, or a bad entry: keep the last budgets
                now = loop.time()
                if now >= self._warned + _WARN_EVERY_S:
                    self._warned = now
                    log.warning("budgets: cannot refresh API budgets, keeping the last ones: %s", exc)
            await asyncio.sleep(REFRESH_EVERY_S)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="thrifty-budget-sync")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        await self.definitions.close()
