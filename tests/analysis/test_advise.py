"""`thrifty advise`: the self-hosting arithmetic on a constructed traffic table with a known answer."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from thrifty.analysis.advise import SECONDS_PER_MONTH, Assumptions, Throughput, advise, format_advice

from tests.analysis.traffic_rows import traffic


# Round numbers: 1 GPU at $1/h, 100 h a month, prefill 1000 tok/s, decode 100 tok/s, full utilisation.
SIMPLE = Assumptions(gpu_usd_per_hour=1.0, utilisation=1.0, ops_usd_per_month=50.0, hours_per_month=100.0,
                     sizes={8: Throughput(prefill_tps=1000, decode_tps=100, gpus_per_replica=1)},
                     tier_sizes={"fast": 8})


def month_of(rows_per_month: int) -> list[dict[str, Any]]:
    """Two calls spanning exactly one month (so the month factor is 1)."""
    return [{"ts": 0.0, "tier": "fast", "input_tokens": rows_per_month, "output_tokens": 0,
             "cost_usd": Decimal("100")},
            {"ts": SECONDS_PER_MONTH, "tier": "fast", "input_tokens": 0, "output_tokens": 36_000_000,
             "cost_usd": Decimal("100")}]


def test_gpu_hours_cost_and_break_even_by_hand() -> None:
    # 360M input tokens / 1000 tok/s = 100 h; 36M output / 100 tok/s = 100 h: 200 GPU hours busy.
    advice = advise(traffic(month_of(360_000_000)), SIMPLE)
    assert advice.month_factor == pytest.approx(1.0)
    (t,) = advice.tiers
    assert t.tokens_per_month == pytest.approx(396_000_000)
    assert t.api_usd_per_month == pytest.approx(200.0)
    assert t.gpu_hours_per_month == pytest.approx(200.0)
    assert t.self_host_usd_per_month == pytest.approx(200.0 + 50.0)
    assert not t.worth_it
    # API: 200/396M per token; GPUs: 200/396M per token too: the API is never dearer per token.
    assert t.break_even_tokens_per_month is None


def test_break_even_on_the_always_on_floor() -> None:
    # A pricier API ($1000 a month) at a tenth of the volume: 20 busy hours < the 100 h floor.
    rows = month_of(36_000_000)
    rows[1]["output_tokens"] = 3_600_000
    for r in rows:
        r["cost_usd"] = Decimal("500")
    (t,) = advise(traffic(rows), SIMPLE).tiers
    assert t.gpu_hours_per_month == pytest.approx(20.0)
    assert t.self_host_usd_per_month == pytest.approx(100.0 + 50.0)  # the floor, plus ops
    assert t.worth_it
    per_token = 1000.0 / 39_600_000
    assert t.break_even_tokens_per_month == pytest.approx(150.0 / per_token)


def test_extrapolates_a_short_trace_to_a_month() -> None:
    rows = [{"ts": 0.0, "model": "m", "input_tokens": 1000, "output_tokens": 100, "cost_usd": Decimal("1")},
            {"ts": 3600.0, "model": "m", "input_tokens": 1000, "output_tokens": 100, "cost_usd": Decimal("1")}]
    advice = advise(traffic(rows), SIMPLE.with_overrides({"tier_sizes": {"m": 8}}))
    assert advice.month_factor == pytest.approx(SECONDS_PER_MONTH / 3600)
    assert advice.tiers[0].api_usd_per_month == pytest.approx(2 * SECONDS_PER_MONTH / 3600)


def test_no_fp8_slows_throughput_by_the_stated_factor() -> None:
    fast = advise(traffic(month_of(360_000_000)), SIMPLE).tiers[0]
    slow = advise(traffic(month_of(360_000_000)), SIMPLE.with_overrides({"fp8": False, "bf16_factor": 0.5})).tiers[0]
    assert slow.gpu_hours_per_month == pytest.approx(2 * fast.gpu_hours_per_month)


def test_every_assumption_is_printed_and_overridable() -> None:
    a = Assumptions().with_overrides({"gpu_usd_per_hour": 4.0, "sizes": {70: {"decode_tps": 500}}})
    assert a.gpu_usd_per_hour == 4.0 and a.sizes[70].decode_tps == 500 and a.sizes[70].prefill_tps == 2500
    names = {row["name"] for row in a.listed()}
    assert {"gpu_usd_per_hour", "utilisation", "fp8", "ops_usd_per_month", "sizes.8", "sizes.70"} <= names
    text = format_advice(advise(traffic(month_of(1000)), a))
    assert "gpu_usd_per_hour = 4.0" in text and "50-200M" in text
    with pytest.raises(ValueError, match="unknown assumption"):
        Assumptions().with_overrides({"gpu_price": 1})
    with pytest.raises(ValueError, match="utilisation"):
        Assumptions().with_overrides({"utilisation": 2})


def test_a_cheap_tier_defaults_to_a_small_model() -> None:
    # $0.10 and $10 per million tokens, either side of the $1 assumption
    rows = [{"ts": 0.0, "tier": "fast", "input_tokens": 1000, "output_tokens": 0, "cost_usd": Decimal("0.0001")},
            {"ts": 10.0, "tier": "heavy", "input_tokens": 1000, "output_tokens": 0, "cost_usd": Decimal("0.01")}]
    sizes = {t.tier: t.model_size_b for t in advise(traffic(rows)).tiers}
    assert sizes == {"fast": 8, "heavy": 70}


def test_no_time_span_is_refused() -> None:
    with pytest.raises(ValueError, match="time span"):
        advise(traffic([{"ts": 5.0, "model": "m", "input_tokens": 1, "output_tokens": 1}]))


def test_cli_prints_json_with_overridden_assumptions(tmp_path: Any, capsys: Any) -> None:
    import json

    from thrifty.cli.main import main

    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,1000,100\n"
                     "2023-11-16 19:00:00,1000,100\n")
    extra = tmp_path / "a.yaml"
    extra.write_text("ops_usd_per_month: 100\nsizes: {70: {decode_tps: 999}}\n")
    assert main(["advise", str(trace), "--model", "gpt-4o", "--assumptions", str(extra),
                 "--gpu-usd-per-hour", "3", "--size", "gpt-4o=70", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    values = {a["name"]: a["value"] for a in out["assumptions"]}
    assert values["ops_usd_per_month"] == 100 and values["gpu_usd_per_hour"] == 3.0
    assert values["sizes.70"]["decode_tps"] == 999
    assert out["tiers"][0]["model_size_b"] == 70
    extra.write_text("gpu_price: 1\n")
    assert main(["advise", str(trace), "--model", "gpt-4o", "--assumptions", str(extra)]) == 1
    assert "unknown assumption" in capsys.readouterr().err
