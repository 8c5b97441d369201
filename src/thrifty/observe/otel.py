"""OpenTelemetry: a span per ledger row, named and attributed by the GenAI semantic conventions.

Attribute names are those of the OpenTelemetry GenAI semantic conventions (the
`gen_ai_attributes` module of opentelemetry-semantic-conventions, now kept in the
semantic-conventions-genai repository): `gen_ai.operation.name`, `gen_ai.provider.name`,
`gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.usage.input_tokens`,
`gen_ai.usage.output_tokens`, `gen_ai.usage.cache_read.input_tokens`,
`gen_ai.usage.cache_creation.input_tokens`, `gen_ai.usage.reasoning.output_tokens`, and
`error.type`. Per the conventions, `gen_ai.usage.input_tokens` counts all input tokens, cached
and cache-written ones included (the two cache attributes say how many of them were which).

Thrifty's own attributes sit under `thrifty.`: `thrifty.cost_usd`, `thrifty.baseline_usd`,
`thrifty.provider_discount_usd`, `thrifty.lever.<lever>.saved_usd`, `thrifty.tenant`,
`thrifty.feature`, `thrifty.tier`, `thrifty.cache`, `thrifty.lane`, `thrifty.request_id`
(spans, unlike metrics, may carry per-call values: a span is one call). The user and task stay
out: they are the client's identifiers, and a tracing backend is not where they belong.

The span's times are the call's own (started_at, finished_at), so it is made once the row
exists, with no context carried through the stages. Off by default; the SDK and the OTLP
exporter are imported only when it is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from thrifty.errors import ConfigError
from thrifty.ledger import LedgerRow
from thrifty.observe.settings import OtelConfig

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

# Provider kind (config `providers.<name>.kind`) -> the conventions' gen_ai.provider.name value.
# A kind not listed goes by the provider's name in the config.
PROVIDER_NAMES: Mapping[str, str] = {
    "openai": "openai", "anthropic": "anthropic", "azure": "azure.ai.openai", "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai", "vertex_anthropic": "gcp.vertex_ai", "bedrock": "aws.bedrock",
}
SCOPE = "thrifty"


def span_attributes(row: LedgerRow, provider_name: str | None) -> dict[str, Any]:
    """What a span of `row` carries (None values left out: OTel refuses them)."""
    a: dict[str, Any] = {
        "gen_ai.operation.name": "embeddings" if row.surface.endswith("embeddings") else "chat",
        "gen_ai.usage.input_tokens": row.prompt_tokens + row.cached_tokens + row.cache_write_tokens,
        "gen_ai.usage.output_tokens": row.completion_tokens,
        "gen_ai.usage.cache_read.input_tokens": row.cached_tokens,
        "gen_ai.usage.cache_creation.input_tokens": row.cache_write_tokens,
        "thrifty.request_id": row.request_id,
        "thrifty.surface": row.surface,
        "thrifty.cache": row.cache,
        "thrifty.lane": row.lane,
        "thrifty.stream": row.stream,
        "thrifty.latency_ms": row.latency_ms,
        "thrifty.retries": row.retries,
        "http.response.status_code": row.status,
    }
    if row.reasoning_tokens:
        a["gen_ai.usage.reasoning.output_tokens"] = row.reasoning_tokens
    optional = {
        "gen_ai.provider.name": provider_name,
        "gen_ai.request.model": row.requested_model,
        "gen_ai.response.model": row.served_model,
        "thrifty.tenant": row.tenant, "thrifty.feature": row.feature, "thrifty.call_site": row.call_site,
        "thrifty.tier": row.tier, "thrifty.baseline_model": row.baseline_model,
        "thrifty.ttft_ms": row.ttft_ms,
    }
    a.update((k, v) for k, v in optional.items() if v is not None)
    for key, usd in (("thrifty.cost_usd", row.cost_usd), ("thrifty.baseline_usd", row.baseline_cost_usd),
                     ("thrifty.provider_discount_usd", row.provider_discount_usd)):
        if usd is not None:
            a[key] = float(usd)
    if row.cost_usd is not None and row.baseline_cost_usd is not None:
        a["thrifty.saved_usd"] = float(row.baseline_cost_usd - row.cost_usd)
    for s in row.levers:
        if s.saved_usd is not None:
            a[f"thrifty.lever.{s.lever}.saved_usd"] = float(s.saved_usd)
            if s.estimated:
                a[f"thrifty.lever.{s.lever}.estimated"] = True
    if row.status >= 400 or row.error_type is not None:
        a["error.type"] = row.error_type or str(row.status)
    return a


class Spans:
    """The Recorder observer that turns each row into a finished CLIENT span."""

    def __init__(self, provider: TracerProvider, provider_kinds: Mapping[str, str] | None = None) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.provider = provider
        self.tracer = provider.get_tracer(SCOPE)
        self._kind = SpanKind.CLIENT
        self._error = Status(StatusCode.ERROR)
        # provider name in the config -> gen_ai.provider.name, worked out once
        self._names = {name: PROVIDER_NAMES.get(kind, name) for name, kind in (provider_kinds or {}).items()}

    def observe(self, row: LedgerRow, upstream_s: float | None = None) -> None:
        provider = None if row.provider is None else self._names.get(row.provider, row.provider)
        attrs = span_attributes(row, provider)
        if upstream_s is not None:  # the provider's share of the latency, and the gateway's own
            attrs["thrifty.upstream_s"] = upstream_s
            attrs["thrifty.overhead_s"] = max(0.0, row.finished_at - row.started_at - upstream_s)
        name = f"{attrs['gen_ai.operation.name']} {row.requested_model or row.served_model or ''}".strip()
        span = self.tracer.start_span(name, kind=self._kind, attributes=attrs,
                                      start_time=int(row.started_at * 1e9))
        if "error.type" in attrs:
            span.set_status(self._error)
        span.end(end_time=int(max(row.finished_at, row.started_at) * 1e9))

    def close(self) -> None:
        self.provider.shutdown()  # flushes what the batch processor still holds


def tracer_provider(config: OtelConfig, processor: SpanProcessor | None = None) -> TracerProvider:
    """A TracerProvider of the gateway's own (never the process-global one), exporting to
    `config.endpoint` over OTLP/HTTP in batches, or through `processor` (tests)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
    if processor is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError("observe", "otel.enabled", "needs the opentelemetry-exporter-otlp-proto-http "
                                                         "package (pip install 'thrifty[otel]')") from None
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=config.endpoint, headers=dict(config.headers)))
    provider.add_span_processor(processor)
    return provider
