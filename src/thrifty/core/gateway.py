"""The gateway's long-lived state, built once from the config: providers, deployments, prices,
ledger, caches, keys. The composition root: stages get the narrow parts of it they need."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from thrifty.budgets import Enforcer
from thrifty.budgets.definitions import BudgetSync, open_budget_definitions
from thrifty.cache import CacheBackend, ExactCache, MemoryLRU, RedisStore, SQLiteStore
from thrifty.config import Config, ExactCacheConfig
from thrifty.providers.deployments import Deployments, Route
from thrifty.core.keys import KeyStore, open_key_store
from thrifty.core.policy import Policies
from thrifty.core.recorder import Recorder, settle_interrupted
from thrifty.errors import AuthenticationFailed, ConfigError
from thrifty.ids import RandomIds
from thrifty.ledger import Ledger, open_ledger
from thrifty.observe.build import Observability
from thrifty.pricing import Accountant, PriceBook
from thrifty.providers.base import Provider
from thrifty.providers.registry import provider_class
from thrifty.providers.reliability import Reliability
from thrifty.redact import Redactor, install_log_redaction
from thrifty.routing.router import Router
from thrifty.shaping import PromptCachePlanner, PromptCachePolicy
from thrifty.shaping.prepare import Preparer
from thrifty.tokens import get_encoding

log = logging.getLogger("thrifty.gateway")


class Gateway:
    def __init__(self, config: Config, *, config_path: str = "<config>") -> None:
        self.config = config
        # Secrets out of every log line from here on, and out of what providers' errors tell clients.
        self.redactor = Redactor.from_config(config)
        install_log_redaction(self.redactor)
        self.providers: dict[str, Provider] = {}
        for name, pc in config.providers.items():
            try:
                cls = provider_class(pc.kind)
            except KeyError as exc:
                raise ConfigError(config_path, f"providers.{name}.kind", str(exc.args[0])) from None
            self.providers[name] = cls(name, pc, redactor=self.redactor)
        routes: dict[str, Route] = {}
        for name, dep in config.deployments.items():
            routes[name] = Route(name, self.providers[dep.provider], dep.model, dep.tier, dep.price_provider)
        for alias, target in config.aliases.items():
            routes.setdefault(alias, routes[target])
        self.deployments = Deployments(routes)
        self._ids = RandomIds()
        self.prices = PriceBook(config.prices)
        self.accountant = Accountant(self.prices)
        lc = config.ledger
        self.ledger: Ledger = open_ledger(lc.url, spool_dir=lc.spool_dir, journal=lc.journal,
                                          journal_dir=lc.journal_dir, journal_fsync=lc.journal_fsync)
        self.recorder = Recorder(self.ledger, self.accountant)
        self.policies = Policies(config, config_path)
        self.exact_cache = ExactCache(_cache_backend(config.levers.exact_cache))
        pc = config.levers.prompt_cache
        try:
            policy = PromptCachePolicy(enabled=pc.enabled, anthropic_auto_breakpoints=pc.anthropic_auto_breakpoints,
                                       openai_cache_key=pc.openai_cache_key, ttl=pc.ttl,
                                       min_reuse_for_1h=pc.min_reuse_for_1h,
                                       cache_key_providers=frozenset(pc.cache_key_providers))
        except ValueError as exc:
            raise ConfigError(config_path, "levers.prompt_cache", str(exc)) from None
        self.prompt_cache = PromptCachePlanner(policy)
        self.preparer = Preparer(self.prompt_cache, config.defaults.anthropic_max_tokens)
        self.semantic_cache = _semantic_cache(config, config_path) if config.levers.semantic_cache.enabled else None
        # With the ledger to re-seed from: counters that come back empty (a restart, a Redis
        # without persistence) are rebuilt from the spend it recorded before calls go through.
        self.budgets = Enforcer(config.budgets, ledger=self.ledger)
        self.budgets.journal = self.ledger  # holds on disk until settled (settle_interrupted at start)
        # Metrics, spans and alerts (config `observe:`), fed each ledger row by the recorder.
        self.observe = Observability(config.observe, enforcer=self.budgets,
                                     provider_kinds={n: pc.kind for n, pc in config.providers.items()})
        self.recorder.observers = self.observe.observers
        self.reliability = Reliability(config.reliability)
        self.router = (Router(config.routing, deployments=config.deployments, aliases=config.aliases,
                              prices=self.prices, health=self.reliability.breakers.is_healthy,
                              config_path=config_path, cross_tier=config.reliability.fallback_tiers,
                              max_price_ratio=config.reliability.fallback_max_price_ratio)
                       if config.routing is not None else None)
        # Learning from live traffic: routes with `shadow:` send a sample of their calls to a
        # cheaper tier off the client's path (routing/shadow.py); the routing stage hands it answers.
        self.shadow = None
        if self.router is not None and any(r.shadow is not None for r in config.routes):
            from thrifty.routing.shadow import ShadowLane

            self.shadow = ShadowLane(config.routes, router=self.router, deployments=self.deployments,
                                     preparer=self.preparer, prices=self.prices, recorder=self.recorder,
                                     metrics=self.observe.metrics)
            self.router.shadow = self.shadow
        # Keys are held by their SHA-256: a lookup by digest leaks nothing useful about the key.
        self._keys = {_digest(k): v.tenant for k, v in config.keys.items()}
        # Keys made through the admin API. A Redis store is opened whenever configured (a replica
        # without the admin key still honours the shared keys); memory only with the admin API on.
        admin = config.admin
        self.key_store: KeyStore | None = (
            open_key_store(admin.key_store, admin.redis_url, admin.prefix)
            if admin.key_store == "redis" or admin.key else None)
        # Budgets set through the admin API live beside the keys (same store kind, URL, prefix);
        # see thrifty.budgets.definitions for how replicas pick them up (within about 1 s).
        self.budget_sync: BudgetSync | None = (
            BudgetSync(open_budget_definitions(admin.key_store, admin.redis_url, admin.prefix), self.budgets,
                       config.budgets.budgets, [r.name for r in config.budgets.rate_limits])
            if admin.key_store == "redis" or admin.key else None)

    async def start(self) -> None:
        self.ledger.start()  # records again what a crashed process left in the journal
        await settle_interrupted(self.ledger, self.budgets)
        if self.shadow is not None:  # the shadow cap of this window survives a restart
            try:
                await asyncio.to_thread(self.shadow.reseed)
            except Exception as exc:  # the lane starts from zero rather than keeping calls from going
                log.warning("shadow: spend of the current window not read back from the ledger: %s", exc)
        if self.config.levers.prompt_cache.enabled:
            get_encoding()  # load the tokenizer now rather than on the first request
        if self.semantic_cache is not None:
            self.semantic_cache.embedder.load()  # the model loads at start, not on a request
        for p in self.providers.values():
            await p.start()
        if self.budget_sync is not None and self.budget_sync.definitions.name == "redis":
            try:
                await self.budget_sync.refresh(force=True)  # API budgets set before this replica started
            except Exception as exc:
                log.warning("budgets: API budgets not loaded at start (retrying every second): %s", exc)
            self.budget_sync.start()
        try:  # after the API budgets are in, so their counters are re-seeded too
            await self.budgets.reseed()  # now, rather than on the first call that finds it empty
        except Exception as exc:  # the store is down: calls fail closed until it is back and seeded
            log.warning("budgets: counters not re-seeded at start (retried on the next call): %s", exc)
        self.observe.start()

    async def close(self) -> None:
        if self.shadow is not None:
            await self.shadow.close()  # jobs still queued are dropped: off the path, never owed
        for p in self.providers.values():
            await p.close()
        await self.observe.close()
        await self.exact_cache.close()
        if self.budget_sync is not None:
            await self.budget_sync.close()
        await self.budgets.close()
        if self.key_store is not None:
            await self.key_store.close()
        self.ledger.close()

    async def tenant_for(self, key: str | None) -> str:
        """The tenant a virtual key belongs to: config keys first (in memory), then the key store
        (one Redis GET on the digest, no cache, so a revocation holds at once everywhere)."""
        if not key:
            raise AuthenticationFailed("missing API key: send your Thrifty virtual key as the API key",
                                       code="invalid_api_key")
        d = _digest(key)
        found = self._keys.get(d)
        if found is None and self.key_store is not None:
            record = await self.key_store.lookup(d)
            found = None if record is None else record.tenant
        if found is None:
            raise AuthenticationFailed("invalid API key: not a Thrifty virtual key", code="invalid_api_key")
        return found

    def new_request_id(self) -> str:
        return "thr_" + self._ids.hex()

    def config_key_tenant(self, key: str) -> str | None:
        """The tenant of a key from the config file (None when it is not one)."""
        return self._keys.get(_digest(key))


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _cache_backend(c: ExactCacheConfig) -> CacheBackend:
    if c.backend == "redis":
        return RedisStore(c.redis_url)
    if c.backend == "sqlite":
        return SQLiteStore(c.path)
    return MemoryLRU(c.max_bytes)


def _semantic_cache(config: Config, path: str):  # -> thrifty.cache.semantic.SemanticCache
    """Built only when enabled: importing it pulls in numpy and onnxruntime."""
    import orjson

    from thrifty.cache.semantic import (
        DecisionPolicy, GuardVerifier, RedisEntryStore, SemanticCache, default_policy, model_available,
    )

    c = config.levers.semantic_cache
    missing = model_available()
    if missing:
        raise ConfigError(path, "levers.semantic_cache", f"the embedding model is not available: {missing}")
    policy = default_policy()
    if c.policy_path:
        try:
            with open(c.policy_path, "rb") as f:
                policy = DecisionPolicy.from_dict(orjson.loads(f.read()), verifier=GuardVerifier())
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(path, "levers.semantic_cache.policy_path", f"cannot load: {exc}") from None
    store = RedisEntryStore(c.redis_url) if c.backend == "redis" else None
    return SemanticCache(policy, store=store, candidates=c.candidates)
