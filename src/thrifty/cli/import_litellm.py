"""`thrifty import litellm CONFIG.yaml`: a LiteLLM proxy config, rewritten as a Thrifty config.

What maps (LiteLLM -> Thrifty):

- `model_list[].litellm_params` -> `providers` (one per provider kind, `api_base` and `api_key`;
  `os.environ/NAME` becomes `${NAME}`) and `deployments` named by `model_name`; `timeout` ->
  the provider's `timeout_s`; `model_info.input_cost_per_token` / `output_cost_per_token` ->
  `prices` (USD per million tokens).
- `router_settings.model_group_alias` -> `aliases`.
- `fallbacks` (router or litellm settings) and model groups with several deployments -> one
  routing tier each, with `reliability.fallback: tier` (any call may move within its tier) and no
  price ceiling on a move (LiteLLM's fallbacks have none). Thrifty tries a tier cheapest first.
- `router_settings.num_retries` -> `reliability.max_retries`; `routing_strategy: cost-based-routing`
  is what Thrifty does anyway.
- `litellm_settings.cache` + `cache_params` (`type: redis | local | disk`, `host`, `port`,
  `password`, `ttl`) -> `levers.exact_cache`; no cache -> the exact cache off, as LiteLLM had it.
- `litellm_settings.max_budget` + `budget_duration` -> a global budget; `max_end_user_budget` ->
  a budget per user.
- `general_settings.master_key` -> `admin.key`.

Everything else is listed on stderr and at the top of the written file, each with its LiteLLM
key path. LiteLLM's virtual keys live in its database, hashed, so they cannot be carried over:
the written config has one fresh virtual key (tenant `default`) to start from.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import yaml

from thrifty.errors import ConfigError

# LiteLLM provider prefix -> (Thrifty kind, default base URL, genai-prices provider id).
_KNOWN: dict[str, tuple[str, str | None, str | None]] = {
    "openai": ("openai", "https://api.openai.com/v1", None),
    "text-completion-openai": ("openai", "https://api.openai.com/v1", None),
    "anthropic": ("anthropic", "https://api.anthropic.com", None),
    "groq": ("openai", "https://api.groq.com/openai/v1", "groq"),
    "together_ai": ("openai", "https://api.together.xyz/v1", "together"),
    "fireworks_ai": ("openai", "https://api.fireworks.ai/inference/v1", "fireworks"),
    "deepseek": ("openai", "https://api.deepseek.com/v1", "deepseek"),
    "mistral": ("openai", "https://api.mistral.ai/v1", "mistral"),
    "xai": ("openai", "https://api.x.ai/v1", "x-ai"),
    "openrouter": ("openai", "https://openrouter.ai/api/v1", "openrouter"),
    "perplexity": ("openai", "https://api.perplexity.ai", "perplexity"),
    "cerebras": ("openai", "https://api.cerebras.ai/v1", "cerebras"),
    "hosted_vllm": ("openai", None, None),  # OpenAI-compatible servers: api_base is required
    "vllm": ("openai", None, None),
    "litellm_proxy": ("openai", None, None),
    "azure": ("azure", None, "azure"),  # only where an `azure` provider kind is registered
}
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w|mo)\s*$")
_WINDOWS = {("h", 1): "hour", ("m", 60): "hour", ("d", 1): "day", ("h", 24): "day",
            ("mo", 1): "month", ("d", 30): "month", ("d", 31): "month"}
_NAME_SAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass
class Imported:
    config: dict[str, Any]
    unmapped: list[tuple[str, str]] = field(default_factory=list)  # (LiteLLM key path, why)
    notes: list[str] = field(default_factory=list)  # what maps, but not exactly


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="write a Thrifty config from another gateway's config",
                       description="Write a Thrifty config from another gateway's config.")
    sources = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    lite = sources.add_parser(
        "litellm", help="from a LiteLLM proxy config.yaml", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read a LiteLLM proxy config (model_list, router_settings, litellm_settings, "
                    "general_settings) and write an equivalent Thrifty config. What cannot be mapped "
                    "is listed on stderr and in comments at the top of the output, each with its "
                    "LiteLLM key path. The output is checked with the gateway's own config loader.",
        epilog=__doc__.split("\n\n", 1)[1])
    lite.add_argument("config", metavar="CONFIG.yaml", help="the LiteLLM proxy config file")
    lite.add_argument("--out", metavar="FILE", help="write the Thrifty config here (default: stdout)")
    lite.add_argument("--ledger", default="sqlite:///thrifty-ledger.db",
                      help="ledger URL for the written config (default: %(default)s)")
    lite.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    path = Path(args.config)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "", f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", "a LiteLLM config is a mapping (model_list, router_settings, ...)")
    imported = convert(data, ledger_url=args.ledger)
    text = render(imported, source=str(path))
    check(text, args.out or "<output>")
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    for where, why in imported.unmapped:
        print(f"thrifty import litellm: not mapped: {where}: {why}", file=sys.stderr)
    print(f"thrifty import litellm: {len(imported.config['deployments'])} deployments, "
          f"{len(imported.unmapped)} settings not mapped" + (f"; wrote {args.out}" if args.out else ""),
          file=sys.stderr)
    return 0


def check(text: str, where: str) -> None:
    """The written config as the gateway reads it (env references left unresolved)."""
    from pydantic import ValidationError

    from thrifty.config import Config

    try:
        Config.model_validate(yaml.safe_load(text))
    except ValidationError as exc:  # a bug of this importer, named as the loader would
        err = exc.errors()[0]
        raise ConfigError(where, ".".join(str(p) for p in err["loc"]), err["msg"]) from None


def render(imported: Imported, source: str) -> str:
    lines = [f"# Written by `thrifty import litellm {source}` from a LiteLLM proxy config.",
             "# LiteLLM's virtual keys live in its database, hashed: make new ones (keys: below, or the",
             "# admin API) and hand one to each client."]
    if imported.notes:
        lines.append("# Mapped, with a difference:")
        lines += [f"#   - {n}" for n in imported.notes]
    if imported.unmapped:
        lines.append("# Not mapped (LiteLLM key: why):")
        lines += [f"#   - {where}: {why}" for where, why in imported.unmapped]
    else:
        lines.append("# Every setting was mapped.")
    body = yaml.safe_dump(imported.config, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return "\n".join(lines) + "\n\n" + body


def _env(value: Any) -> Any:
    """LiteLLM's `os.environ/NAME` as Thrifty's `${NAME}`."""
    if isinstance(value, str) and value.startswith("os.environ/"):
        return "${" + value[len("os.environ/"):] + "}"
    return value


def _kinds() -> set[str]:
    """Provider kinds this gateway has an adapter (and, for Azure, its config options) for."""
    from thrifty.config import ProviderConfig
    from thrifty.providers.registry import known_kinds

    kinds = set(known_kinds())
    if "azure" not in ProviderConfig.model_fields:
        kinds.discard("azure")
    return kinds


def _per_million(value: Any) -> Decimal | None:
    try:
        return (Decimal(str(value)) * 1_000_000).normalize()
    except (InvalidOperation, ValueError):
        return None


class _Converter:
    def __init__(self, data: dict[str, Any], ledger_url: str) -> None:
        self.data = data
        self.out = Imported(config={})
        self.providers: dict[str, dict[str, Any]] = {}
        self.provider_of: dict[tuple[str, str, Any], str] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, list[str]] = {}  # LiteLLM model_name -> deployment names
        self.prices: dict[str, dict[str, str]] = {}
        self.kinds = _kinds()
        self.ledger_url = ledger_url

    def skip(self, where: str, why: str) -> None:
        self.out.unmapped.append((where, why))

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name) or {}
        if not isinstance(value, dict):
            self.skip(name, "not a mapping")
            return {}
        return value

    # --- model_list ---------------------------------------------------------------------------

    def provider(self, kind: str, base_url: str, api_key: Any, prefix: str, timeout: Any,
                 api_version: Any = None) -> str:
        key = (kind, base_url, api_key, api_version)
        if key in self.provider_of:
            return self.provider_of[key]
        host = urlsplit(base_url).hostname or prefix
        base = prefix if prefix in _KNOWN and _KNOWN[prefix][1] == base_url else _NAME_SAFE.sub("-", host)
        name, n = base, 2
        while name in self.providers:
            name, n = f"{base}-{n}", n + 1
        prov: dict[str, Any] = {"kind": kind, "base_url": base_url}
        if api_key is not None:
            prov["api_key"] = _env(api_key)
        if isinstance(timeout, (int, float)) and timeout > 0:
            prov["timeout_s"] = float(timeout)
        if api_version is not None:
            prov["azure"] = {"api_version": str(_env(api_version))}
        self.providers[name] = prov
        self.provider_of[key] = name
        return name

    def model(self, i: int, entry: Any) -> None:
        where = f"model_list[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("litellm_params"), dict):
            self.skip(where, "an entry needs model_name and litellm_params")
            return
        params, group = entry["litellm_params"], entry.get("model_name")
        full = params.get("model")
        if not isinstance(group, str) or not isinstance(full, str):
            self.skip(where, "model_name and litellm_params.model must be strings")
            return
        if "*" in group or "*" in full:
            self.skip(f"{where}.model_name", f"wildcard routing ({group!r} -> {full!r}): list each model")
            return
        prefix, _, model = full.partition("/") if "/" in full else (_infer_prefix(full), "", full)
        known = _KNOWN.get(prefix)
        if known is None or known[0] not in self.kinds:
            self.skip(f"{where}.litellm_params.model", f"{full!r}: provider {prefix or '(unknown)'!r} has no "
                      f"Thrifty adapter (kinds: {', '.join(sorted(self.kinds))})")
            return
        kind, default_base, price_provider = known
        base_url = _env(params.get("api_base")) or default_base
        if not base_url:
            self.skip(f"{where}.litellm_params.api_base", f"{full!r}: an OpenAI-compatible server needs api_base")
            return
        info = entry.get("model_info") or {}
        if not isinstance(info, dict):
            self.skip(f"{where}.model_info", "not a mapping")
            info = {}
        handled = {"model", "api_base", "api_key", "timeout"}
        if kind == "azure":
            # LiteLLM names the Azure deployment; Thrifty's model is what it is priced as (base_model).
            handled.add("api_version")
            prov = self.provider(kind, base_url, params.get("api_key"), prefix, params.get("timeout"),
                                 params.get("api_version") or "2024-10-21")
            priced = str(info.get("base_model") or model).removeprefix("azure/")
            if priced != model:
                self.providers[prov]["azure"].setdefault("deployments", {})[priced] = model
            model = priced
        else:
            prov = self.provider(kind, base_url, params.get("api_key"), prefix, params.get("timeout"))
        name, n = group, 2
        while name in self.deployments:
            name, n = f"{group}-{n}", n + 1
        dep: dict[str, Any] = {"provider": prov, "model": model}
        if price_provider:
            dep["price_provider"] = price_provider
        self.deployments[name] = dep
        self.groups.setdefault(group, []).append(name)
        for extra in sorted(set(params) - handled):
            self.skip(f"{where}.litellm_params.{extra}", "no per-deployment equivalent in Thrifty")
        if "input_cost_per_token" in info or "output_cost_per_token" in info:
            inp, outp = _per_million(info.get("input_cost_per_token", 0)), _per_million(info.get("output_cost_per_token", 0))
            if inp is None or outp is None:
                self.skip(f"{where}.model_info", "input/output_cost_per_token must be numbers")
            else:
                self.prices[model] = {"input": str(inp), "output": str(outp)}
        for extra in sorted(set(info) - {"input_cost_per_token", "output_cost_per_token", "id", "mode", "base_model"}):
            self.skip(f"{where}.model_info.{extra}", "model metadata Thrifty takes from genai-prices")

    # --- routing ------------------------------------------------------------------------------

    def fallbacks(self, router: dict[str, Any], lite: dict[str, Any]) -> dict[str, list[str]]:
        """Fallback groups: the primary model group -> the groups it falls back to."""
        found: dict[str, list[str]] = {}
        for section, settings in (("router_settings", router), ("litellm_settings", lite)):
            value = settings.get("fallbacks")
            if value is None:
                continue
            items = value if isinstance(value, list) else [value]
            for j, item in enumerate(items):
                if not isinstance(item, dict):
                    self.skip(f"{section}.fallbacks[{j}]", "each fallback is {model_group: [fallback groups]}")
                    continue
                for primary, targets in item.items():
                    targets = [targets] if isinstance(targets, str) else list(targets or [])
                    missing = [t for t in [primary, *targets] if t not in self.groups]
                    if missing:
                        self.skip(f"{section}.fallbacks[{j}].{primary}",
                                  f"model group(s) {', '.join(map(repr, missing))} not imported")
                        continue
                    found.setdefault(primary, []).extend(t for t in targets if t not in found.get(primary, []))
            for other in ("context_window_fallbacks", "content_policy_fallbacks", "default_fallbacks"):
                if settings.get(other):
                    self.skip(f"{section}.{other}", "Thrifty falls back within a tier on failures only")
        return found

    def routing(self, router: dict[str, Any], lite: dict[str, Any]) -> None:
        tiers: dict[str, list[str]] = {}
        placed: dict[str, str] = {}
        groups = self.fallbacks(router, lite)
        for group, deps in self.groups.items():
            if len(deps) > 1 and group not in groups and not any(group in t for t in groups.values()):
                groups[group] = []  # LiteLLM load-balances a group; Thrifty: cheapest first, others fall back
        for primary, targets in groups.items():
            members = [d for g in [primary, *targets] for d in self.groups[g]]
            clash = [d for d in members if d in placed]
            if clash:
                self.skip(f"fallbacks.{primary}", f"deployment(s) {', '.join(clash)} already fall back in tier "
                          f"{placed[clash[0]]!r}: a deployment serves one tier")
                continue
            tier = _NAME_SAFE.sub("-", primary)
            if tier in ("auto", *tiers):
                tier = f"{tier}-tier"
            tiers[tier] = members
            for d in members:
                placed[d] = tier
                self.deployments[d]["tier"] = tier
        if tiers:
            for d in self.deployments:
                if d not in placed:
                    tiers.setdefault("standard", []).append(d)
            self.out.config["routing"] = {"tiers": tiers, "default_tier": next(iter(tiers))}
            self.out.notes.append("fallbacks: each group is a routing tier; Thrifty tries its deployments "
                                  "cheapest first (LiteLLM: in the order listed)")
        strategy = router.get("routing_strategy")
        if strategy not in (None, "simple-shuffle", "cost-based-routing"):
            self.skip("router_settings.routing_strategy", f"{strategy!r}: Thrifty picks the cheapest healthy "
                      "deployment of a tier")
        reliability: dict[str, Any] = {}
        if tiers:
            reliability.update(fallback="tier", fallback_max_price_ratio=None)
        retries = router.get("num_retries", lite.get("num_retries"))
        if isinstance(retries, int) and retries >= 0:
            reliability["max_retries"] = min(retries, 10)
        timeout = router.get("timeout", lite.get("request_timeout"))
        if isinstance(timeout, (int, float)) and timeout > 0:
            reliability["deadline_s"] = float(timeout)
        if reliability:
            self.out.config["reliability"] = reliability
        aliases = router.get("model_group_alias") or {}
        for alias, target in (aliases.items() if isinstance(aliases, dict) else ()):
            target = target.get("model") if isinstance(target, dict) else target
            if target in self.groups:
                self.out.config.setdefault("aliases", {})[alias] = self.groups[target][0]
            else:
                self.skip(f"router_settings.model_group_alias.{alias}", f"unknown model group {target!r}")
        handled = {"fallbacks", "routing_strategy", "num_retries", "timeout", "model_group_alias",
                   "context_window_fallbacks", "content_policy_fallbacks", "default_fallbacks"}
        for extra in sorted(set(router) - handled):
            self.skip(f"router_settings.{extra}", "no Thrifty equivalent (see the reliability: section)")

    # --- cache, budgets, admin ----------------------------------------------------------------

    def cache(self, lite: dict[str, Any]) -> None:
        params = lite.get("cache_params") or {}
        if not lite.get("cache"):
            self.out.config["levers"] = {"exact_cache": {"enabled": False}}
            return
        kind = params.get("type", "redis")
        exact: dict[str, Any] = {"enabled": True}
        if kind == "redis":
            if params.get("url") or params.get("redis_url"):
                exact["redis_url"] = _env(params.get("url") or params.get("redis_url"))
            else:
                host = _env(params.get("host")) or "${REDIS_HOST:-localhost}"
                port = _env(params.get("port")) or "${REDIS_PORT:-6379}"
                password = _env(params.get("password"))
                exact["redis_url"] = f"redis://{':' + str(password) + '@' if password else ''}{host}:{port}/0"
            exact["backend"] = "redis"
        elif kind in ("local", "in-memory"):
            exact["backend"] = "memory"
        elif kind == "disk":
            exact["backend"] = "sqlite"
            if params.get("disk_cache_dir"):
                exact["path"] = f"{str(params['disk_cache_dir']).rstrip('/')}/thrifty-cache.db"
        else:
            self.skip("litellm_settings.cache_params.type", f"{kind!r}: Thrifty's exact cache is memory, "
                      "SQLite or Redis (its semantic cache is set up with `thrifty eval cache`)")
            return
        ttl = params.get("ttl")
        if isinstance(ttl, (int, float)) and ttl >= 0:
            exact["ttl_s"] = int(ttl)
        self.out.config["levers"] = {"exact_cache": exact}
        self.out.notes.append("cache: Thrifty's exact cache answers deterministic requests (temperature 0) "
                              "unless a route opts in; LiteLLM's answered any repeated request")
        for extra in sorted(set(params) - {"type", "host", "port", "password", "ttl", "url", "redis_url",
                                           "disk_cache_dir"}):
            self.skip(f"litellm_settings.cache_params.{extra}", "no Thrifty equivalent")

    def budgets(self, lite: dict[str, Any]) -> None:
        budgets = []
        window = self.window(lite.get("budget_duration"), "litellm_settings.budget_duration")
        if lite.get("max_budget") is not None and window is not None:
            budgets.append({"name": "litellm-max-budget", "scope": "global",
                            "limit_usd": str(Decimal(str(lite["max_budget"]))), "window": window})
        if lite.get("max_end_user_budget") is not None:
            budgets.append({"name": "litellm-end-user-budget", "scope": "user",
                            "limit_usd": str(Decimal(str(lite["max_end_user_budget"]))), "window": "lifetime"})
        if budgets:
            self.out.config["budgets"] = {"budgets": budgets}

    def window(self, duration: Any, where: str) -> str | None:
        if duration is None:
            return "lifetime"
        m = _DURATION.match(str(duration))
        window = _WINDOWS.get((m.group(2), int(m.group(1)))) if m else None
        if window is None:
            self.skip(where, f"{duration!r}: Thrifty's budget windows are hour, day, month (calendar, UTC) "
                             "and lifetime")
        elif m and (m.group(2), int(m.group(1))) in (("d", 30), ("d", 31)):
            self.out.notes.append(f"{where}: {duration!r} became a calendar month (UTC)")
        return window

    def general(self, general: dict[str, Any]) -> None:
        master = general.get("master_key")
        if master is not None:
            self.out.config["admin"] = {"key": _env(master)}
            self.out.notes.append("general_settings.master_key is the admin key; it cannot make calls: "
                                  "clients need a virtual key")
        for extra in sorted(set(general) - {"master_key"}):
            self.skip(f"general_settings.{extra}", "no Thrifty equivalent")

    def convert(self) -> Imported:
        models = self.data.get("model_list") or []
        for i, entry in enumerate(models if isinstance(models, list) else []):
            self.model(i, entry)
        router, lite, general = self.section("router_settings"), self.section("litellm_settings"), \
            self.section("general_settings")
        cfg = self.out.config
        cfg["ledger"] = {"url": self.ledger_url}
        cfg["providers"], cfg["deployments"] = self.providers, self.deployments
        cfg["keys"] = {f"sk-thrifty-{secrets.token_hex(16)}": {"tenant": "default", "name": "imported"}}
        self.routing(router, lite)
        self.cache(lite)
        self.budgets(lite)
        self.general(general)
        if self.prices:
            cfg["prices"] = self.prices
        handled = {"cache", "cache_params", "max_budget", "budget_duration", "max_end_user_budget", "fallbacks",
                   "num_retries", "request_timeout", "context_window_fallbacks", "content_policy_fallbacks",
                   "default_fallbacks"}
        for extra in sorted(set(lite) - handled):
            self.skip(f"litellm_settings.{extra}", "no Thrifty equivalent")
        for top in sorted(set(self.data) - {"model_list", "router_settings", "litellm_settings", "general_settings"}):
            self.skip(top, "no Thrifty equivalent")
        return self.out


def _infer_prefix(model: str) -> str:
    """LiteLLM's provider for a model named without a prefix (the common cases)."""
    if model.startswith("claude"):
        return "anthropic"
    if model.startswith(("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-")):
        return "openai"
    return ""


def convert(data: dict[str, Any], ledger_url: str = "sqlite:///thrifty-ledger.db") -> Imported:
    """A LiteLLM proxy config (parsed YAML) as a Thrifty config, with what did not map."""
    return _Converter(data, ledger_url).convert()
