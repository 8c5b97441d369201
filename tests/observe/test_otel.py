"""OpenTelemetry spans of ledger rows, captured in process with the SDK's InMemorySpanExporter."""

from __future__ import annotations

from decimal import Decimal

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.ledger_util import make_row
from thrifty.contract import LeverSaving
from thrifty.core.recorder import Recorder
from thrifty.observe.build import Observability
from thrifty.observe.settings import ObserveConfig


@pytest.fixture
def captured():
    exporter = InMemorySpanExporter()
    config = ObserveConfig(metrics={"enabled": False}, otel={"enabled": True, "service_name": "thrifty-test"})
    obs = Observability(config, provider_kinds={"openai": "openai", "claude": "anthropic", "az": "azure"},
                        span_processor=SimpleSpanProcessor(exporter))
    yield obs, exporter
    obs.spans.close()


def test_span_per_row_with_genai_conventions(captured):
    obs, exporter = captured
    (observe,) = obs.observers
    row = make_row(1, provider="claude", requested_model="thrifty/auto", served_model="claude-haiku-4-5",
                   prompt_tokens=100, cached_tokens=20, cache_write_tokens=5, completion_tokens=50,
                   reasoning_tokens=3, cost_usd=Decimal("0.000123"), baseline_cost_usd=Decimal("0.001123"),
                   levers=(LeverSaving("routing", Decimal("0.0008")), LeverSaving("prompt_cache", Decimal("0.0002"),
                                                                                  estimated=True)),
                   started_at=1_700_000_000.0, finished_at=1_700_000_000.5)
    observe(row)
    (span,) = exporter.get_finished_spans()
    a = span.attributes
    assert span.name == "chat thrifty/auto" and span.kind == SpanKind.CLIENT
    assert (span.start_time, span.end_time) == (1_700_000_000 * 10**9, 1_700_000_000_500_000_000)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "anthropic"  # by the provider's kind, not its config name
    assert (a["gen_ai.request.model"], a["gen_ai.response.model"]) == ("thrifty/auto", "claude-haiku-4-5")
    assert a["gen_ai.usage.input_tokens"] == 125  # all input, cached and cache-written included
    assert a["gen_ai.usage.cache_read.input_tokens"] == 20
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 5
    assert a["gen_ai.usage.output_tokens"] == 50 and a["gen_ai.usage.reasoning.output_tokens"] == 3
    assert a["thrifty.cost_usd"] == pytest.approx(0.000123) and a["thrifty.baseline_usd"] == pytest.approx(0.001123)
    assert a["thrifty.saved_usd"] == pytest.approx(0.001)
    assert a["thrifty.lever.routing.saved_usd"] == pytest.approx(0.0008)
    assert a["thrifty.lever.prompt_cache.saved_usd"] == pytest.approx(0.0002)
    assert a["thrifty.lever.prompt_cache.estimated"] is True
    assert (a["thrifty.tenant"], a["thrifty.feature"]) == ("acme", "search")
    assert "thrifty.user" not in a and "u1" not in a.values()
    assert span.status.status_code == StatusCode.UNSET
    assert span.resource.attributes["service.name"] == "thrifty-test"


def test_span_splits_latency_into_provider_time_and_gateway_overhead(captured):
    obs, exporter = captured
    row = make_row(3, provider="openai", started_at=1_700_000_000.0, finished_at=1_700_000_000.5)
    obs.observers[0](row, 0.42)
    obs.observers[0](make_row(4, provider="openai"))  # a row without provider time: no split claimed
    with_time, without = exporter.get_finished_spans()
    assert with_time.attributes["thrifty.upstream_s"] == pytest.approx(0.42)
    assert with_time.attributes["thrifty.overhead_s"] == pytest.approx(0.08)
    assert "thrifty.upstream_s" not in without.attributes and "thrifty.overhead_s" not in without.attributes


def test_failed_call_is_an_error_span_and_unknown_cost_left_out(captured):
    obs, exporter = captured
    obs.observers[0](make_row(2, provider="az", status=502, error_type="upstream_error", cost_usd=None))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "upstream_error"
    assert span.attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert "thrifty.cost_usd" not in span.attributes


def test_recorder_feeds_its_observers_and_survives_a_broken_one():
    seen = []

    class Ledger:
        def record(self, row):
            seen.append(("ledger", row.request_id))

    def broken(row, upstream_s):
        raise RuntimeError("observer bug")

    recorder = Recorder(Ledger(), accountant=None,
                        observers=[broken, lambda r, up: seen.append(("obs", r.request_id, up))])
    from thrifty.contract.exchange import Exchange

    recorder.record(Exchange(request_id="thr_1", started_at=1.0, tenant="t", surface="openai", status=400), None, None)
    assert seen == [("ledger", "thr_1"), ("obs", "thr_1", None)]  # no call: no time upstream


def test_off_by_default_needs_no_sdk():
    obs = Observability(ObserveConfig())
    assert obs.spans is None and obs.alerts is None and obs.metrics is not None


def test_gateway_imports_no_otel_when_off():
    import subprocess
    import sys

    code = ("import sys, thrifty.api.app, thrifty.core.gateway; "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_otlp_exporter_missing_is_a_config_error():
    from thrifty.errors import ConfigError
    from thrifty.observe.otel import tracer_provider
    from thrifty.observe.settings import OtelConfig

    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("opentelemetry-exporter-otlp-proto-http is installed: nothing is missing")
    with pytest.raises(ConfigError, match="opentelemetry-exporter-otlp-proto-http"):
        tracer_provider(OtelConfig(enabled=True))
