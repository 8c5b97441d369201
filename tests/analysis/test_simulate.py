"""`thrifty simulate`: each lever's saving on a constructed traffic table with a known answer."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from thrifty.analysis.simulate import Simulator as _Simulator, format_waterfall
from thrifty.config import parse_config
from thrifty.core.policy import Policies
from thrifty.pricing import PriceBook

from tests.analysis.traffic_rows import traffic

M = Decimal(1_000_000)
BOOK = PriceBook()


def Simulator(cfg: Any, **kw: Any) -> _Simulator:  # noqa: N802 - reads as the class it builds
    """The simulator as the CLI builds it: the config's route policies passed in."""
    return _Simulator(cfg, Policies(cfg), **kw)


def config(**extra: Any) -> Any:
    base = {
        "providers": {"openai": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1"},
                      "anthropic": {"kind": "anthropic", "base_url": "http://127.0.0.1:1"}},
        "deployments": {"gpt-4o": {"provider": "openai", "model": "gpt-4o"},
                        "gpt-4o-mini": {"provider": "openai", "model": "gpt-4o-mini"}},
        "keys": {"k": {"tenant": "t"}},
    }
    return parse_config({**base, **extra})


def price(model: str, **usage: int) -> Decimal:
    from thrifty.contract import Usage

    return BOOK.cost(model, Usage(**usage)).total


def card(model: str) -> Any:
    return BOOK.card(model)


def assert_adds_up(sim: Any) -> None:
    total = sum((t.saved_usd + t.estimated_usd for t in sim.levers.values()), Decimal(0))
    assert total == sim.baseline_usd - sim.simulated_usd


def test_prompt_cache_from_prefix_hashes_openai_rules() -> None:
    rows = [
        {"ts": 0.0, "model": "gpt-4o", "input_tokens": 1536, "output_tokens": 10, "prefix_hashes": ["a", "b", "c"]},
        # 60 s later the same three blocks: all 1536 tokens read from the cache
        {"ts": 60.0, "model": "gpt-4o", "input_tokens": 1536, "output_tokens": 10, "prefix_hashes": ["a", "b", "c"]},
        # shares two blocks, but 1000 tokens is under the 1024-token minimum: nothing read
        {"ts": 61.0, "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 10, "prefix_hashes": ["a", "b"]},
        # 400 s after the last use: the entry expired (300 s idle)
        {"ts": 461.0, "model": "gpt-4o", "input_tokens": 1536, "output_tokens": 10, "prefix_hashes": ["a", "b", "c"]},
    ]
    sim = Simulator(config()).run(traffic(rows))
    c = card("gpt-4o")
    assert sim.levers["prompt_cache"].saved_usd == 1536 * (c.input - c.cache_read) / M
    assert sim.levers["prompt_cache"].estimated_usd == 0
    assert sim.baseline_usd == 3 * price("gpt-4o", input_tokens=1536, output_tokens=10) + price(
        "gpt-4o", input_tokens=1000, output_tokens=10)
    assert_adds_up(sim)
    assert "exact_cache" in sim.not_available  # no bodies in a token-only trace


def test_prompt_cache_anthropic_pays_the_write_and_reads_at_a_tenth() -> None:
    rows = [{"ts": t, "model": "claude-sonnet-4-5", "input_tokens": 2048, "output_tokens": 0,
             "prefix_hashes": [1, 2, 3, 4]} for t in (0.0, 100.0)]
    sim = Simulator(config()).run(traffic(rows))
    c = card("claude-sonnet-4-5")
    write_cost = 2048 * (c.cache_write_5m - c.input) / M
    read_saving = 2048 * (c.input - c.cache_read) / M
    assert sim.levers["prompt_cache"].saved_usd == read_saving - write_cost
    assert_adds_up(sim)


def test_prompt_cache_off_for_the_route_keeps_what_was_observed() -> None:
    rows = [{"ts": t, "model": "gpt-4o", "input_tokens": 2048, "output_tokens": 0, "prefix_hashes": [1, 2, 3, 4]}
            for t in (0.0, 1.0)]
    sim = Simulator(config(levers={"prompt_cache": {"enabled": False}})).run(traffic(rows))
    assert sim.levers["prompt_cache"].calls == 0
    assert sim.simulated_usd == sim.baseline_usd


def test_batch_route_prices_deferrable_calls_at_the_batch_price() -> None:
    rows = [{"ts": 0.0, "model": "gpt-4o", "feature": "nightly", "input_tokens": 1000, "output_tokens": 200},
            {"ts": 1.0, "model": "gpt-4o", "feature": "chat", "input_tokens": 1000, "output_tokens": 200}]
    cfg = config(routes=[{"name": "nightly", "match": {"feature": "nightly"}, "defer": True}])
    sim = Simulator(cfg).run(traffic(rows))
    one = price("gpt-4o", input_tokens=1000, output_tokens=200)
    assert sim.levers["batch"].saved_usd == one * (1 - card("gpt-4o").batch_discount)
    assert sim.levers["batch"].calls == 1
    assert_adds_up(sim)


def test_output_cap_saves_the_tokens_past_the_cap_as_an_estimate() -> None:
    rows = [{"ts": 0.0, "model": "gpt-4o", "feature": "summary", "input_tokens": 100, "output_tokens": 500},
            {"ts": 1.0, "model": "gpt-4o", "feature": "summary", "input_tokens": 100, "output_tokens": 50}]
    cfg = config(routes=[{"name": "s", "match": {"feature": "summary"}, "output_cap": 100}])
    sim = Simulator(cfg).run(traffic(rows))
    assert sim.levers["shaping"].estimated_usd == 400 * card("gpt-4o").output / M
    assert sim.levers["shaping"].saved_usd == 0
    assert_adds_up(sim)


def test_routing_downgrades_by_rule_an_estimated_saving() -> None:
    rows = [{"ts": 0.0, "model": "gpt-4o", "request_type": "classification", "input_tokens": 1000,
             "output_tokens": 10},
            {"ts": 1.0, "model": "gpt-4o", "request_type": "code", "input_tokens": 1000, "output_tokens": 10}]
    routing = {"tiers": {"fast": ["gpt-4o-mini"], "standard": ["gpt-4o"]}, "default_tier": "standard",
               "allow_downgrade": True,
               "rules": [{"when": {"request_type": "classification"}, "tier": "fast"}]}
    sim = Simulator(config(routing=routing)).run(traffic(rows))
    expect = price("gpt-4o", input_tokens=1000, output_tokens=10) - price("gpt-4o-mini", input_tokens=1000,
                                                                          output_tokens=10)
    assert sim.levers["routing"].estimated_usd == expect
    assert sim.levers["routing"].calls == 1
    assert_adds_up(sim)


def test_routing_quality_change_from_outcomes() -> None:
    rows = [{"ts": 0.0, "model": "gpt-4o", "request_type": "classification", "prompt_text": "is this spam?",
             "input_tokens": 100, "output_tokens": 1}]
    routing = {"tiers": {"fast": ["gpt-4o-mini"], "standard": ["gpt-4o"]}, "default_tier": "standard",
               "allow_downgrade": True, "rules": [{"when": {"request_type": "classification"}, "tier": "fast"}]}
    outcomes = {"is this spam?": {"gpt-4o": 1.0, "gpt-4o-mini": 0.5}}
    sim = Simulator(config(routing=routing), outcomes=outcomes).run(traffic(rows))
    assert sim.quality == {"matched_calls": 1, "baseline_score": 1.0, "simulated_score": 0.5, "change": -0.5}


def test_exact_cache_answers_a_repeat_of_a_deterministic_request() -> None:
    body = json.dumps({"model": "gpt-4o", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]})
    hot = json.dumps({"model": "gpt-4o", "temperature": 1, "messages": [{"role": "user", "content": "hi"}]})
    rows = [{"ts": float(t), "tenant": "t", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 10,
             "request_body": b} for t, b in ((0, body), (5, body), (6, hot), (7, hot))]
    sim = Simulator(config()).run(traffic(rows))
    assert sim.levers["exact_cache"].calls == 1
    assert sim.levers["exact_cache"].saved_usd == price("gpt-4o", input_tokens=10, output_tokens=10)
    assert_adds_up(sim)


def test_exact_cache_entries_expire_with_the_route_ttl() -> None:
    body = json.dumps({"model": "gpt-4o", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]})
    rows = [{"ts": float(t), "tenant": "t", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 10,
             "request_body": body} for t in (0, 100)]
    sim = Simulator(config(levers={"exact_cache": {"ttl_s": 50}})).run(traffic(rows))
    assert sim.levers["exact_cache"].calls == 0


def test_unknown_model_is_counted_not_priced_and_missing_model_needs_one() -> None:
    rows = [{"ts": 0.0, "model": "no-such-model-xyz", "input_tokens": 10, "output_tokens": 1}]
    sim = Simulator(config()).run(traffic(rows))
    assert sim.unpriced_models == {"no-such-model-xyz": 1} and sim.priced_calls == 0
    with pytest.raises(ValueError, match="no model"):
        Simulator(config()).run(traffic([{"ts": 0.0, "input_tokens": 10, "output_tokens": 1}]))
    sim = Simulator(config(), default_model="gpt-4o").run(traffic([{"ts": 0.0, "input_tokens": 10,
                                                                    "output_tokens": 1}]))
    assert sim.baseline_usd == price("gpt-4o", input_tokens=10, output_tokens=1)


def test_waterfall_text_and_json_shape() -> None:
    rows = [{"ts": 0.0, "model": "gpt-4o", "feature": "nightly", "input_tokens": 1000, "output_tokens": 200}]
    cfg = config(routes=[{"name": "nightly", "match": {"feature": "nightly"}, "defer": True}])
    sim = Simulator(cfg).run(traffic(rows))
    text = format_waterfall(sim)
    assert "baseline" in text and "batch" in text and "simulated" in text
    out = sim.as_json()
    assert set(out) >= {"calls", "baseline_usd", "simulated_usd", "levers"}
    assert set(out["levers"]["batch"]) >= {"saved_usd", "estimated_usd"}
    assert out["calls"] == 1


def test_parallel_workers_give_the_sequential_answer() -> None:
    body = json.dumps({"model": "gpt-4o", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]})
    rows = [{"ts": float(i), "model": ("gpt-4o", "gpt-4o-mini")[i % 2], "feature": ("nightly", "chat")[i % 3 % 2],
             "request_type": ("classification", "code")[i % 2], "input_tokens": 100 + i, "output_tokens": 7 * i,
             **({"request_body": body, "tenant": "t"} if i % 5 == 0 else {}),
             **({"prefix_hashes": [1, 2, 3]} if i % 7 == 0 else {})} for i in range(300)]
    routing = {"tiers": {"fast": ["gpt-4o-mini"], "standard": ["gpt-4o"]}, "default_tier": "standard",
               "allow_downgrade": True, "rules": [{"when": {"request_type": "classification"}, "tier": "fast"}]}
    cfg = config(routing=routing, routes=[{"name": "n", "match": {"feature": "nightly"}, "defer": True,
                                           "output_cap": 500}])
    one = Simulator(cfg).run(traffic(rows), workers=1)
    two = Simulator(cfg).run(traffic(rows), workers=2)
    assert one.as_json() == two.as_json()
    assert_adds_up(two)
    assert {name for name, t in two.levers.items() if t.calls} >= {"exact_cache", "routing", "batch", "shaping"}


def test_cli_simulates_a_mooncake_style_trace(tmp_path: Any, capsys: Any) -> None:
    from thrifty.cli.main import main

    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": 1536, "output_length": 10,
                                         "hash_ids": [0, 1, 2]}) + "\n" for t in (0, 60_000)))
    cfg = tmp_path / "policy.yaml"
    cfg.write_text("providers: {openai: {kind: openai, base_url: 'http://127.0.0.1:1/v1'}}\n"
                   "deployments: {gpt-4o: {provider: openai, model: gpt-4o}}\nkeys: {k: {tenant: t}}\n")
    assert main(["simulate", str(trace), "--config", str(cfg), "--model", "gpt-4o", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    c = card("gpt-4o")
    assert out["calls"] == 2
    assert Decimal(str(out["levers"]["prompt_cache"]["saved_usd"])) == 1536 * (c.input - c.cache_read) / M
    assert main(["simulate", str(trace), "--config", str(cfg)]) == 1  # no model for a token-only trace
    assert "--model" in capsys.readouterr().err
    assert main(["simulate", str(trace), "--config", str(tmp_path / "missing.yaml")]) == 2
