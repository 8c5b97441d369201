"""Configuration: one YAML file validated into typed objects once, at start-up.

`${NAME}` and `${NAME:-default}` in any string value are replaced from the environment, so
secrets stay out of the file. Every problem is reported as a `ConfigError` naming the file, the
key (dotted path) and what is wrong.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from thrifty.budgets.limits import BudgetsConfig
from thrifty.errors import ConfigError
from thrifty.pricing.override import PriceOverride
from thrifty.providers.reliability import ReliabilityConfig
from thrifty.routing.rules import RoutingConfig

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Azure OpenAI's latest GA dated data-plane API version (Azure OpenAI REST reference); the
# default of `azure.api_version`. "v1" selects the v1 API (`/openai/v1/`, no api-version).
AZURE_API_VERSION = "2024-10-21"
_AZURE_API_VERSION = re.compile(r"v1|\d{4}-\d{2}-\d{2}(-preview)?")


class AzureOptions(_Strict):
    """Azure OpenAI (`kind: azure`): which API version, and the Azure deployment serving each model."""

    api_version: str = AZURE_API_VERSION
    # model (a deployment's `model:`, what it is priced as) -> the deployment's name in Azure;
    # a model not listed is served by an Azure deployment of the same name.
    deployments: dict[str, str] = {}

    @field_validator("api_version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and not v.strip()):
            raise ValueError(f"is required: a dated version such as {AZURE_API_VERSION} "
                             "(sent as ?api-version=), or v1 for the v1 API")
        if isinstance(v, str) and not _AZURE_API_VERSION.fullmatch(v):
            raise ValueError(f"{v!r} is not an Azure OpenAI API version (e.g. {AZURE_API_VERSION}, "
                             "2025-04-01-preview, or v1)")
        return v


class ProviderConfig(_Strict):
    kind: str  # a registered adapter: "openai", "anthropic", "azure" or "gemini"
    base_url: str
    api_key: str | None = None
    timeout_s: float = Field(default=600.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=512, gt=0)
    # Request headers copied from the client to this provider (e.g. anthropic-beta).
    forward_headers: tuple[str, ...] = ("anthropic-version", "anthropic-beta")
    azure: AzureOptions | None = None  # kind azure only; omitted: the defaults above

    @model_validator(mode="after")
    def _azure_only_for_azure(self) -> "ProviderConfig":
        if self.azure is not None and self.kind != "azure":
            raise ValueError(f"azure: only for kind: azure (this provider is kind: {self.kind})")
        return self


class DeploymentConfig(_Strict):
    provider: str
    model: str  # the model name the provider knows
    tier: str = "standard"
    # The genai-prices provider id to price this deployment under (e.g. "groq" for Llama served
    # by Groq); None lets the catalog match by model name.
    price_provider: str | None = None


class KeyConfig(_Strict):
    tenant: str
    name: str | None = None


class AdminConfig(_Strict):
    """The admin API (virtual keys, spend). Off (its routes answer 404) unless `key` is set."""

    key: str | None = None  # e.g. ${THRIFTY_ADMIN_KEY}; empty means no admin API
    key_store: Literal["memory", "redis"] = "memory"  # redis: keys made on one replica hold on all
    redis_url: str | None = None
    prefix: str = "thrifty:keys:"  # Redis key prefix of the key store

    @model_validator(mode="after")
    def _store_reachable(self) -> "AdminConfig":
        if self.key_store == "redis" and not self.redis_url:
            raise ValueError("redis_url is required with key_store: redis")
        return self


class LedgerConfig(_Strict):
    url: str = "sqlite:///thrifty-ledger.db"  # or postgresql://user@host:5432/dbname
    store_bodies: bool = False
    # PostgreSQL: where rows wait (in order, on disk) while the database is unreachable.
    spool_dir: str | None = None
    # Every row is appended to a local journal before the answer's last bytes go out, so a crash
    # (kill -9) loses no call; calls cut short are recorded as interrupted (ledger/journal.py).
    journal: bool = True
    # Default: `<sqlite file>.journal/`, or `<spool_dir>/journal/` for PostgreSQL. Local disk.
    journal_dir: str | None = None
    # fsync each journal write: survives a power cut too, at a disk flush per call.
    journal_fsync: bool = False


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    # Request bodies nested deeper than this (objects and arrays) get 400 at parse time. Stays
    # below orjson's own limit of 254 when writing, so every accepted body can be re-serialised.
    max_json_depth: int = Field(default=128, ge=8, le=250)
    # Limits on slow and oversized clients (thrifty.api.server; the header limits and timeout
    # apply under uvicorn, the default server). Headers over a limit get 431.
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)  # request line + all headers
    max_header_value_bytes: int = Field(default=8 * 1024, ge=256)  # one header's name + value
    max_attribution_chars: int = Field(default=256, ge=1)  # x-thrifty-feature/-user/-task/-call-site: 400 above
    header_timeout_s: float = Field(default=10.0, gt=0)  # complete headers within N s of connecting, or closed
    body_timeout_s: float = Field(default=30.0, gt=0)  # the whole body within N s of the headers, or 408
    keep_alive_timeout_s: float = Field(default=5.0, gt=0)  # an idle keep-alive connection is closed after N s


class Defaults(_Strict):
    # max_tokens sent to Anthropic when an OpenAI-surface request gives none (Anthropic requires it).
    anthropic_max_tokens: int = Field(default=4096, gt=0)


class PromptCacheConfig(_Strict):
    """Provider prompt caching: breakpoints (Anthropic) and cache keys (OpenAI) on stable prefixes."""

    enabled: bool = True
    anthropic_auto_breakpoints: bool = True
    openai_cache_key: bool = True
    ttl: Literal["auto", "5m", "1h"] = "auto"
    min_reuse_for_1h: int = Field(default=2, ge=1)
    cache_key_providers: tuple[str, ...] = ("openai", "azure")


class ExactCacheConfig(_Strict):
    """The exact response cache: where entries live and the defaults routes start from."""

    enabled: bool = True  # only deterministic requests (temperature 0, n=1) or opted-in routes
    backend: Literal["memory", "sqlite", "redis"] = "memory"
    max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)  # memory backend bound
    path: str = "thrifty-cache.db"  # sqlite backend
    redis_url: str = "redis://127.0.0.1:6379/0"  # redis backend
    ttl_s: int = Field(default=3600, ge=0)
    volatile_patterns: tuple[str, ...] | None = None  # None: the built-in set (timestamps, UUIDs, ids)


class SemanticCacheConfig(_Strict):
    """The semantic cache. Off unless enabled here; then only routes that mark it eligible use it."""

    enabled: bool = False
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"  # entries shared by replicas, each keeping its index in sync
    policy_path: str | None = None  # an operating point saved by `thrifty eval cache --save`
    candidates: int = Field(default=4, ge=1)


class LeversConfig(_Strict):
    prompt_cache: PromptCacheConfig = PromptCacheConfig()
    exact_cache: ExactCacheConfig = ExactCacheConfig()
    semantic_cache: SemanticCacheConfig = SemanticCacheConfig()


class RouteMatch(_Strict):
    """Which calls a route applies to; an unset field matches anything."""

    feature: str | None = None
    model: str | None = None  # the model name the client asked for
    tenant: str | None = None


class RouteExactCache(_Strict):
    enabled: bool | None = None
    ttl_s: int | None = Field(default=None, ge=0)
    opt_in: bool = False  # cache even when temperature is not 0: the route accepts a fixed answer
    namespace: str | None = None  # entries shared by every tenant of this route (declared, never implied)


class RouteConfig(_Strict):
    """Per-route lever switches; the first route whose `match` fits a call applies to it."""

    name: str
    match: RouteMatch = RouteMatch()
    prompt_cache: bool | None = None
    exact_cache: RouteExactCache = RouteExactCache()
    semantic_cache: bool = False  # FAQ-style routes: same context, the user's question varies
    semantic_namespace: str | None = None  # answers shared by every tenant of this route
    # Request shaping (see shaping/request.py): the answer's realistic ceiling in tokens, stop
    # sequences added when the client sends none, and retrieved chunks kept (top-k by rank).
    output_cap: int | None = Field(default=None, gt=0)
    stop: tuple[str, ...] = ()
    top_k_chunks: int | None = Field(default=None, gt=0)


class Config(_Strict):
    server: ServerConfig = ServerConfig()
    ledger: LedgerConfig = LedgerConfig()
    providers: dict[str, ProviderConfig]
    deployments: dict[str, DeploymentConfig]
    aliases: dict[str, str] = {}
    keys: dict[str, KeyConfig]
    prices: dict[str, PriceOverride] = {}  # USD per million tokens, for models the catalog lacks
    defaults: Defaults = Defaults()
    levers: LeversConfig = LeversConfig()
    routes: list[RouteConfig] = []
    routing: RoutingConfig | None = None  # tiers and rules; clients ask for `thrifty/auto` or a tier
    budgets: BudgetsConfig = BudgetsConfig()  # hard spend limits and rate limits
    reliability: ReliabilityConfig = ReliabilityConfig()  # retries, fallback in a tier, breakers, deadline
    admin: AdminConfig = AdminConfig()  # the admin API: virtual keys and spend

    @model_validator(mode="after")
    def _references_resolve(self) -> "Config":
        for name, dep in self.deployments.items():
            if dep.provider not in self.providers:
                raise ValueError(f"deployments.{name}.provider: unknown provider {dep.provider!r} "
                                 f"(known: {', '.join(sorted(self.providers)) or 'none'})")
        for alias, target in self.aliases.items():
            if target not in self.deployments:
                raise ValueError(f"aliases.{alias}: unknown deployment {target!r}")
        if not self.keys:
            raise ValueError("keys: at least one virtual key is needed")
        return self


def interpolate_env(value: Any, path: str, key: str = "") -> Any:
    """Replace ${NAME} / ${NAME:-default} in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            sub_key = f"{key}.{k}" if key else str(k)
            # Keys are interpolated too, so virtual keys (mapping keys) can come from the environment.
            out[interpolate_env(k, path, sub_key)] = interpolate_env(v, path, sub_key)
        return out
    if isinstance(value, list):
        return [interpolate_env(v, path, f"{key}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(path, key, f"environment variable {name} is not set")

    return _ENV_REF.sub(sub, value)


def parse_config(data: Any, path: str = "<config>") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(path, "", "the top level must be a mapping")
    data = interpolate_env(data, path)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if not key and ": " in msg:
            key, msg = msg.split(": ", 1)
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(path, key, msg + more) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(str(p), "", f"cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise ConfigError(str(p), where, f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data, str(p))


ProviderKind = Literal["openai", "anthropic", "azure"]
