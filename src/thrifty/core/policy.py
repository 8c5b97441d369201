"""Per-call lever settings: the first configured route that matches a call decides.

Routes are resolved once per distinct (tenant, feature, model), so the per-request cost is one
dict lookup. Each route's settings become the levers' own policy objects at start-up, where a
bad value (an invalid regex, say) is a config error rather than a failed request.
"""

from __future__ import annotations

from dataclasses import dataclass

from thrifty.cache.keys import DEFAULT_VOLATILE, CachePolicy
from thrifty.config import Config, RouteConfig
from thrifty.errors import ConfigError
from thrifty.shaping.request import Shape

_MAX_MEMO = 50_000


@dataclass(frozen=True, slots=True)
class CallPolicy:
    route: str  # the route's name, or "default"
    prompt_cache: bool
    exact_cache: CachePolicy | None  # None: the exact cache is off for these calls
    semantic_cache: bool = False
    semantic_namespace: str | None = None
    shape: Shape = Shape()
    defer: bool = False  # the route's calls go to the batch lane (thrifty.batch) unless it is off


class Policies:
    def __init__(self, config: Config, config_path: str = "<config>") -> None:
        self._routes = [(r, self._build(config, r, f"routes[{i}]", config_path))
                        for i, r in enumerate(config.routes)]
        self._default = self._build(config, None, "levers", config_path)
        self._memo: dict[tuple[str, str | None, str], CallPolicy] = {}

    @staticmethod
    def _build(config: Config, route: RouteConfig | None, where: str, path: str) -> CallPolicy:
        levers = config.levers
        exact = levers.exact_cache
        override = route.exact_cache if route else None
        enabled = exact.enabled if override is None or override.enabled is None else override.enabled
        policy = None
        if enabled:
            try:
                policy = CachePolicy(
                    ttl_s=exact.ttl_s if override is None or override.ttl_s is None else override.ttl_s,
                    namespace=override.namespace if override else None,
                    opt_in=override.opt_in if override else False,
                    volatile_patterns=(DEFAULT_VOLATILE if exact.volatile_patterns is None
                                       else exact.volatile_patterns))
            except ValueError as exc:
                raise ConfigError(path, f"{where}.exact_cache", str(exc)) from None
        prompt = levers.prompt_cache.enabled if route is None or route.prompt_cache is None else route.prompt_cache
        semantic = bool(route and route.semantic_cache and levers.semantic_cache.enabled)
        shape = Shape(route.output_cap, route.stop, route.top_k_chunks) if route else Shape()
        return CallPolicy(route=route.name if route else "default", prompt_cache=prompt, exact_cache=policy,
                          semantic_cache=semantic, semantic_namespace=route.semantic_namespace if route else None,
                          shape=shape, defer=bool(route and route.defer))

    def for_call(self, tenant: str, feature: str | None, model: str) -> CallPolicy:
        key = (tenant, feature, model)
        found = self._memo.get(key)
        if found is None:
            found = self._resolve(tenant, feature, model)
            if len(self._memo) < _MAX_MEMO:
                self._memo[key] = found
        return found

    def _resolve(self, tenant: str, feature: str | None, model: str) -> CallPolicy:
        for route, policy in self._routes:
            m = route.match
            if ((m.feature is None or m.feature == feature) and (m.model is None or m.model == model)
                    and (m.tenant is None or m.tenant == tenant)):
                return policy
        return self._default
