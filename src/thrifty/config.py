"""Configuration: one YAML file validated into typed objects once, at start-up.

`${NAME}` and `${NAME:-default}` in any string value are replaced from the environment, so
secrets stay out of the file. Every problem is reported as a `ConfigError` naming the file, the
key (dotted path) and what is wrong.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from thrifty.budgets.limits import BudgetsConfig
from thrifty.errors import ConfigError
from thrifty.observe.settings import ObserveConfig
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


# The provider kinds that call Vertex AI: Gemini (`vertex`) and Claude (`vertex_anthropic`).
VERTEX_KINDS = ("vertex", "vertex_anthropic")
_VERTEX_LOCATION = re.compile(r"[a-z][a-z0-9-]*")


class VertexOptions(_Strict):
    """Vertex AI (`kind: vertex`, `kind: vertex_anthropic`): the Google Cloud project and location
    whose endpoint serves the models, and the credentials that get the gateway its access tokens.

    `credentials` is a credentials JSON file (a service account key, or `gcloud auth
    application-default login`'s authorized-user file); omitted, and with no `api_key` (a static
    access token), Application Default Credentials are used (GOOGLE_APPLICATION_CREDENTIALS,
    gcloud's ADC file, or the metadata server on Google Cloud).
    """

    project: str = Field(min_length=1)
    location: str = "global"  # a region such as us-east5, a multi-region (us, eu), or global
    credentials: str | None = None

    @field_validator("location")
    @classmethod
    def _location(cls, v: str) -> str:
        if not _VERTEX_LOCATION.fullmatch(v):
            raise ValueError(f"{v!r} is not a Vertex AI location (e.g. global, us-east5, europe-west1)")
        return v

    def default_base_url(self) -> str:
        """The location's endpoint (Vertex AI "Locations"; the same hosts the anthropic SDK's
        Vertex client uses): global and the multi-regions have hosts of their own."""
        if self.location == "global":
            return "https://aiplatform.googleapis.com"
        if self.location in ("us", "eu"):
            return f"https://aiplatform.{self.location}.rep.googleapis.com"
        return f"https://{self.location}-aiplatform.googleapis.com"


BEDROCK_KIND = "bedrock"  # the provider kind of AWS Bedrock (providers/bedrock.py registers it)
BEDROCK_DEFAULT_REGION = "us-east-1"
_AWS_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+")


class BedrockOptions(_Strict):
    """AWS Bedrock (`kind: bedrock`): the region requests are signed for, and the credentials.

    Credentials, first found wins: the key pair here; the provider's `api_key` as
    `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]` (signed with SigV4), or without a colon as a
    Bedrock API key (sent as `Authorization: Bearer`); else the environment's
    `AWS_BEARER_TOKEN_BEDROCK`, or `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
    `AWS_SESSION_TOKEN` (providers/bedrock.py reads them when the provider is built).
    """

    region: str | None = None  # None: read from base_url (bedrock-runtime.REGION.amazonaws.com), else us-east-1
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is not None and not _AWS_REGION.fullmatch(v):
            raise ValueError(f"{v!r} is not an AWS region (e.g. us-east-1, eu-west-3, us-gov-west-1)")
        return v

    @model_validator(mode="after")
    def _pair(self) -> "BedrockOptions":
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key go together: set both or neither")
        return self

    def default_base_url(self) -> str:
        """The Bedrock Runtime endpoint of the region (AWS general reference, "Amazon Bedrock endpoints")."""
        return f"https://bedrock-runtime.{self.region or BEDROCK_DEFAULT_REGION}.amazonaws.com"


class ProviderConfig(_Strict):
    kind: str  # a registered adapter: "openai", "anthropic", "azure", "gemini", "vertex", "vertex_anthropic"
    base_url: str  # kinds vertex*: defaults to the location's endpoint (VertexOptions.default_base_url)
    api_key: str | None = None
    timeout_s: float = Field(default=600.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=512, gt=0)
    # Request headers copied from the client to this provider (e.g. anthropic-beta).
    forward_headers: tuple[str, ...] = ("anthropic-version", "anthropic-beta")
    azure: AzureOptions | None = None  # kind azure only; omitted: the defaults above
    vertex: VertexOptions | None = None  # kinds vertex and vertex_anthropic: required
    bedrock: BedrockOptions | None = None  # kind bedrock only; omitted: region and credentials from the environment

    @model_validator(mode="before")
    @classmethod
    def _vertex_endpoint(cls, data: Any) -> Any:
        if (isinstance(data, dict) and data.get("kind") in VERTEX_KINDS and not data.get("base_url")
                and isinstance(data.get("vertex"), dict)):
            try:
                base_url = VertexOptions(**data["vertex"]).default_base_url()
            except (ValidationError, TypeError):
                base_url = ""  # vertex:'s own validation reports what is wrong
            data = {**data, "base_url": base_url}
        return data

    @model_validator(mode="after")
    def _azure_only_for_azure(self) -> "ProviderConfig":
        if self.azure is not None and self.kind != "azure":
            raise ValueError(f"azure: only for kind: azure (this provider is kind: {self.kind})")
        return self

    @model_validator(mode="after")
    def _vertex_options_for_vertex(self) -> "ProviderConfig":
        if self.vertex is None and self.kind in VERTEX_KINDS:
            raise ValueError(f"kind: {self.kind} needs a vertex: block (project, location)")
        if self.vertex is not None and self.kind not in VERTEX_KINDS:
            raise ValueError(f"vertex: only for kind vertex or vertex_anthropic (this provider is kind: {self.kind})")
        return self

    @model_validator(mode="before")
    @classmethod
    def _bedrock_endpoint(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == BEDROCK_KIND and not data.get("base_url"):
            options = data.get("bedrock") if isinstance(data.get("bedrock"), dict) else {}
            try:
                data = {**data, "base_url": BedrockOptions(**options).default_base_url()}
            except (ValidationError, TypeError):
                pass  # the field's own validation reports it
        return data

    @model_validator(mode="after")
    def _bedrock_options_for_bedrock(self) -> "ProviderConfig":
        if self.bedrock is not None and self.kind != BEDROCK_KIND:
            raise ValueError(f"bedrock: only for kind: bedrock (this provider is kind: {self.kind})")
        return self

    def secret_values(self) -> list[str]:
        """Every secret this provider's config holds: the key whole and, for a key pair given as
        `ID:SECRET`, each part; the bedrock block's secrets (what redact.py keeps out of logs)."""
        values = [self.api_key] if self.api_key else []
        if self.api_key and ":" in self.api_key:
            values += self.api_key.split(":")
        if self.bedrock is not None:
            values += [v for v in (self.bedrock.secret_access_key, self.bedrock.session_token) if v]
        return values


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


class DashboardConfig(_Strict):
    """`/dashboard` (thrifty.api.dashboard) and the success signals its cost per successful
    output reads (thrifty.ledger.outcomes). The page is served when `key` or `admin.key` is set."""

    key: str | None = None  # read-only: the page and its JSON, nothing of the admin API
    # The same request from the same user again within this many seconds: the earlier answer failed.
    regeneration_window_s: float = Field(default=300.0, gt=0)


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


class ResponsesConfig(_Strict):
    """Stored Responses API answers: `GET`/`DELETE /v1/responses/{id}` and `previous_response_id`.

    Off by default, so no request or answer body is kept anywhere; then those answer 404/400
    saying so. On, a response is kept (unless its request says `store: false`) for `ttl_s`,
    visible only to the tenant that created it (thrifty.api.responses_store).
    """

    store: bool = False
    ttl_s: int = Field(default=30 * 24 * 3600, gt=0)  # OpenAI keeps stored responses 30 days
    backend: Literal["memory", "redis"] = "memory"  # redis: shared by every replica
    max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)  # memory backend: all stored responses, LRU
    max_response_bytes: int = Field(default=4 * 1024 * 1024, gt=0)  # one stored conversation; larger: not kept
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "thrifty:responses:"  # Redis key prefix


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


class BatchConfig(_Strict):
    """The batch lane (thrifty.batch): provider batch jobs at their batch price.

    Lines of a client's own batch go out at the next tick; deferred single calls
    (`x-thrifty-defer`, or a route with `defer: true`) wait to be coalesced, per deployment,
    until `flush_lines` of them are queued or the oldest has waited `max_wait_s`.
    """

    enabled: bool = True
    tick_s: float = Field(default=1.0, gt=0)  # how often the lane submits and polls
    max_wait_s: float = Field(default=60.0, ge=0)  # a deferred call waits at most this to be coalesced
    flush_lines: int = Field(default=1000, ge=1)  # ... or until this many are queued for one deployment
    poll_min_s: float = Field(default=5.0, gt=0)  # first poll of a provider batch; doubles after
    poll_max_s: float = Field(default=300.0, gt=0)  # each empty poll, up to this
    completion_window_s: float = Field(default=24 * 3600.0, gt=0)  # a job not done by then expires
    # Providers without a batch API: lines run through the normal path, this many at a time.
    interactive_concurrency: int = Field(default=4, ge=1)
    max_file_bytes: int = Field(default=200 * 1024 * 1024, gt=0)  # OpenAI's limit per input file
    max_lines: int = Field(default=50_000, ge=1)  # per job (OpenAI's limit per file)
    # Hosts a deferred call's `x-thrifty-webhook` may name (exact host names). Empty: webhooks off.
    webhook_hosts: tuple[str, ...] = ()


class ShadowConfig(_Strict):
    """Shadow a sample of a route's calls to a cheaper tier, off the client's path (routing/shadow.py).

    After the client's answer is complete, a `sample` share of the route's calls served above
    `tier` is sent again to `tier` in the background; the two answers are scored for agreement
    (`score`) and stored as routing outcomes (`thrifty export shadow`). The shadow calls' own
    spend is capped at `budget_usd` per `per` window and recorded in the ledger (lane `shadow`).
    """

    sample: float = Field(gt=0, le=1)  # the share of eligible calls shadowed
    tier: str  # the cheaper routing tier the shadow call goes to
    budget_usd: Decimal = Field(gt=0, le=Decimal(10**6))  # shadow spend (and judge calls) per window
    per: Literal["hour", "day", "month"] = "day"  # the budget's window (UTC)
    # auto: exact match for classification/extraction, a validator where one applies, else unscored.
    score: Literal["auto", "exact", "validator", "judge"] = "auto"
    judge_tier: str | None = None  # the tier asked the rubric prompt (score: judge); needed then
    concurrency: int = Field(default=2, ge=1, le=64)  # shadow calls in flight at once
    queue: int = Field(default=100, ge=1, le=100_000)  # waiting shadow jobs; beyond it they are dropped
    seed: int | None = None  # a fixed seed makes the sample reproducible (tests)

    @model_validator(mode="after")
    def _judge_named(self) -> "ShadowConfig":
        if self.score == "judge" and self.judge_tier is None:
            raise ValueError("judge_tier: needed with score: judge (the tier asked to grade the answers)")
        return self


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
    defer: bool = False  # no user waits for these calls: 202 and the batch lane (thrifty.batch)
    shadow: ShadowConfig | None = None  # learn from live traffic (routing/shadow.py); off by default


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
    responses: ResponsesConfig = ResponsesConfig()  # stored Responses API answers (off by default)
    batch: BatchConfig = BatchConfig()  # the batch lane: provider batch jobs at half price
    dashboard: DashboardConfig = DashboardConfig()  # /dashboard: its read-only key, the regeneration window
    observe: ObserveConfig = ObserveConfig()  # /metrics, OpenTelemetry spans, cost alerts

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
        self._shadow_tiers()
        return self

    def _shadow_tiers(self) -> None:
        for i, route in enumerate(self.routes):
            shadow = route.shadow
            if shadow is None:
                continue
            where = f"routes[{i}].shadow"
            if self.routing is None:
                raise ValueError(f"{where}: needs a routing: section (shadow calls go to a routing tier)")
            known = ", ".join(self.routing.order())
            for key, tier in (("tier", shadow.tier), ("judge_tier", shadow.judge_tier)):
                if tier is not None and tier not in self.routing.tiers:
                    raise ValueError(f"{where}.{key}: unknown tier {tier!r} (known: {known})")


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
