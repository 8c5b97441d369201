"""Gateway overhead: ProviderCall times the upstream part of a call (Call.upstream_s), the recorder
hands it to the observers with the call's row, and `thrifty_gateway_overhead_seconds` observes
latency - upstream. Known answers from constructed rows; the provider's part from scripted
providers that sleep (a lower bound the clock cannot miss, not a speed assertion)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest

from tests.ledger_util import make_row
from tests.observe.test_metrics import samples, total
from tests.reliability.test_provider_call import Scripted, gateway, make_call, provider_call
from thrifty.contract import Attempt, Call
from thrifty.contract.exchange import Exchange
from thrifty.contract.usage import Usage
from thrifty.core.recorder import Recorder
from thrifty.errors import error_for_status
from thrifty.observe.metrics import Metrics
from thrifty.observe.settings import MetricsConfig
from thrifty.wire import OPENAI_CHAT

OVERHEAD = "thrifty_gateway_overhead_seconds"


def test_overhead_is_latency_less_upstream_for_answered_calls_that_reached_a_provider():
    m = Metrics(MetricsConfig())
    m.observe(make_row(1, latency_ms=12.5, stream=False), 0.0105)  # 2 ms of Thrifty
    m.observe(make_row(2, latency_ms=40.0, stream=True), 0.0396)  # 0.4 ms, a stream
    m.observe(make_row("2.1", latency_ms=30.0), None)  # a discarded attempt: no overhead of its own
    m.observe(make_row(3, latency_ms=1.0), None)  # a cache hit: never reached a provider
    m.observe(make_row(4, latency_ms=900.0, status=503, error_type="upstream_error", cost_usd=None), 0.5)
    m.observe(make_row(5, latency_ms=2.0))  # an observer called the old way: counted, no overhead
    found = samples(generate_latest(m.registry).decode())
    assert total(found, f"{OVERHEAD}_count") == 2
    assert math.isclose(total(found, f"{OVERHEAD}_sum"), 0.002 + 0.0004, abs_tol=1e-12)
    assert total(found, f"{OVERHEAD}_count", stream="false") == 1
    assert total(found, f"{OVERHEAD}_bucket", stream="false", le="0.001") == 0
    assert total(found, f"{OVERHEAD}_bucket", stream="false", le="0.0025") == 1
    assert total(found, f"{OVERHEAD}_bucket", stream="true", le="0.0005") == 1
    assert total(found, "thrifty_request_duration_seconds_count") == 6  # every row keeps its latency


def test_overhead_never_goes_below_zero():
    m = Metrics(MetricsConfig())
    m.observe(make_row(1, latency_ms=10.0), 0.0100000001)  # float rounding of two clock readings
    found = samples(generate_latest(m.registry).decode())
    assert total(found, f"{OVERHEAD}_count") == 1 and total(found, f"{OVERHEAD}_sum") == 0


def test_recorder_passes_the_calls_upstream_time_with_its_own_row_only():
    seen = []

    class Ledger:
        def record(self, row):
            pass

    route = SimpleNamespace(provider=SimpleNamespace(name="openai"), model="gpt-4o-mini", tier="fast")
    call = Call(request_id="thr_7", tenant="t", wire=OPENAI_CHAT, headers={}, body={}, model="m", stream=False,
                route=route, upstream_s=0.25)
    call.discarded.append(Attempt(why="retried: cut", deployment=route, tier="fast", usage=Usage(), cost=None,
                                  started_at=1.0, finished_at=1.1, status=504))
    recorder = Recorder(Ledger(), accountant=None, observers=[lambda r, up: seen.append((r.request_id, up))])
    recorder.record(Exchange(request_id="thr_7", started_at=1.0, tenant="t", surface="openai", status=502),
                    call, None)
    assert seen == [("thr_7.1", None), ("thr_7", 0.25)]
    seen.clear()
    untouched = Call(request_id="thr_8", tenant="t", wire=OPENAI_CHAT, headers={}, body={}, model="m", stream=False)
    recorder.record(Exchange(request_id="thr_8", started_at=1.0, tenant="t", surface="openai", status=429),
                    untouched, None)
    assert seen == [("thr_8", None)]  # refused before any provider: no overhead to tell


@pytest.mark.parametrize("enabled", [True, False])
async def test_provider_call_times_the_upstream_answer(enabled):
    a = Scripted("a", [0.05])
    gw = gateway({"a": a})
    pc, call = provider_call(gw, enabled=enabled), make_call(gw, "a", tier=None)
    assert call.upstream_s == 0.0
    assert (await pc(call)).complete
    assert call.upstream_s >= 0.05


async def test_provider_call_adds_every_attempt_and_the_backoff():
    a = Scripted("a", [error_for_status(503, "busy"), 0.05])
    gw = gateway({"a": a})
    pc, call = provider_call(gw), make_call(gw, "a", tier=None)
    assert (await pc(call)).complete and call.retries == 1
    assert call.upstream_s >= 0.05


async def test_provider_call_times_a_stream_to_its_last_event():
    a = Scripted("a", [0.05])
    gw = gateway({"a": a})
    pc, call = provider_call(gw), make_call(gw, "a", tier=None, stream=True)
    answer = await pc(call)
    assert call.upstream_s == 0.0  # nothing sent yet: the stream starts when it is read
    events = [e async for e in answer.events]
    assert events and answer.complete and call.upstream_s >= 0.05
