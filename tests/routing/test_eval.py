"""The replay engine on a small labelled set whose numbers are worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from thrifty.errors import ConfigError, ThriftyError
from thrifty.routing.eval import evaluate, load_setup, prepare, read_rows, replay

ROUTING = {
    "tiers": {"fast": ["small"], "heavy": ["big"]},
    "default_tier": "heavy",
    "rules": [{"name": "trivial", "when": {"request_type": "classification"}, "tier": "fast"},
              {"name": "math", "when": {"request_type": "reasoning"}, "tier": "heavy"}],
    "escalation": {"checks": ["empty", "refusal"]},
}
REFUSAL = "I'm sorry, but I can't help with that."


def rows() -> list[dict]:
    out = []
    for i in range(4):
        out.append({"prompt": f"Classify the sentiment of review {i}: loved it", "cohort": "classify",
                    "outcomes": {"small": {"score": 1, "cost_usd": 0.001, "answer": "positive"},
                                 "big": {"score": 1, "cost_usd": 0.01, "answer": "positive"}}})
    for i in range(2):
        out.append({"prompt": f"Classify the sentiment of review {i}: meh", "cohort": "classify",
                    "outcomes": {"small": {"score": 0, "cost_usd": 0.001, "answer": REFUSAL},
                                 "big": {"score": 1, "cost_usd": 0.01, "answer": "neutral"}}})
    for i in range(4):
        out.append({"prompt": f"Solve for x: {i}x + 1 = 9", "cohort": "math",
                    "outcomes": {"small": {"score": 0, "cost_usd": 0.001, "answer": "x = 3"},
                                 "big": {"score": 1, "cost_usd": 0.01, "answer": "x = 8"}}})
    return out


def write(tmp: Path, name: str, data) -> str:
    path = tmp / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in data))
    else:
        path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture
def files(tmp_path):
    return write(tmp_path, "rows.jsonl", rows()), write(tmp_path, "routing.yaml", ROUTING)


def test_rules_and_cascade_against_the_strong_model(files):
    data, config = files
    report = evaluate(read_rows(data), load_setup(config))
    assert (report["strong"], report["weak"]) == ("big", "small")
    rules, cascade = report["methods"]["rules"], report["methods"]["rules+cascade"]
    assert rules["quality"] == pytest.approx(0.8) and rules["cost_usd"] == pytest.approx(0.0046)
    assert rules["quality_vs_strong"] == pytest.approx(0.8) and rules["cost_vs_strong"] == pytest.approx(0.46)
    assert rules["tier_share"] == {"fast": 0.6, "heavy": 0.4} and rules["escalation_rate"] == 0
    # The two refusals climb to the heavy tier, paying for both calls.
    assert cascade["quality"] == pytest.approx(1.0) and cascade["cost_usd"] == pytest.approx(0.0066)
    assert cascade["escalation_rate"] == pytest.approx(0.2)
    assert cascade["beats"] == {"random": True, "longer_prompt": True}
    # Its single point joined to the extremes: u = (0.0066-0.001)/0.009, PGR 1 from there on.
    u = (0.0066 - 0.001) / 0.009
    assert cascade["apgr"] == pytest.approx(u / 2 + (1 - u))
    assert report["methods"]["random"]["apgr"] == pytest.approx(0.5)
    assert cascade["cohorts"]["math"] == pytest.approx({
        "n": 4, "quality": 1.0, "strong_quality": 1.0, "weak_quality": 0.0, "quality_vs_strong": 1.0,
        "cost_vs_strong": 1.0, "random_quality_at_same_cost": 1.0, "longer_prompt_quality_at_same_cost": 1.0,
        "beats_random": False, "beats_longer_prompt": False})
    assert report["methods"]["oracle"]["quality"] == 1.0
    assert report["models"]["small"]["quality"] == pytest.approx(0.4)


def test_calibration_fits_rules_on_train_that_run_in_the_router(tmp_path, files):
    data, config = files
    setup = load_setup(config)
    bare = {**ROUTING, "rules": []}  # nothing hand-written: everything to heavy
    report = evaluate(read_rows(data), load_setup(write(tmp_path, "bare.yaml", bare)), train_rows=read_rows(data),
                      calibrate_options={"min_support": 2})
    cal = report["methods"]["calibrated"]
    assert report["methods"]["rules"]["cost_vs_strong"] == pytest.approx(1.0)
    assert cal["quality_vs_strong"] == pytest.approx(1.0) and cal["cost_vs_strong"] < 0.7
    fitted = report["calibrated_routing"]["rules"]
    assert any(r["tier"] == "fast" and r["when"].get("request_type") == "classification" for r in fitted)
    # The saved rules are plain config: the same router replays them to the same numbers.
    from thrifty.routing import RoutingConfig

    routing = RoutingConfig.model_validate(report["calibrated_routing"])
    served = replay(prepare(read_rows(data), setup), setup, routing)
    assert sum(s.cost for s in served) / len(served) == pytest.approx(cal["cost_usd"])


def test_gateway_config_shape_maps_deployments_to_models_and_prices_null_costs(tmp_path):
    data = rows()
    for r in data:
        r["outcomes"] = {"model-s": r["outcomes"]["small"], "model-b": {**r["outcomes"]["big"], "cost_usd": None}}
    config = {"providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:1"}},
              "deployments": {"small": {"provider": "p", "model": "model-s"},
                              "big": {"provider": "p", "model": "model-b"}},
              "prices": {"model-b": {"input": 10, "output": 30}},
              "keys": {"k": {"tenant": "t"}}, "routing": ROUTING}
    report = evaluate(read_rows(write(tmp_path, "r.jsonl", data)), load_setup(write(tmp_path, "c.yaml", config)),
                      output_tokens=100)
    assert report["strong"] == "model-b" and report["data"]["estimated_costs"] == 10
    assert report["models"]["model-b"]["cost_usd"] > 0.003  # 100 output tokens at $30/M plus the input


def test_rows_missing_a_routed_model_are_dropped_and_counted(tmp_path):
    data = rows()
    del data[0]["outcomes"]["big"]
    report = evaluate(read_rows(write(tmp_path, "r.jsonl", data)), load_setup(write(tmp_path, "c.yaml", ROUTING)))
    assert report["data"]["rows"] == 9 and report["data"]["dropped"] == 1


@pytest.mark.parametrize("line, problem", [
    ("not json", ":1: not JSON"),
    ('{"prompt": 1, "outcomes": {}}', "expected {"),
    ('{"prompt": "p", "outcomes": {"m": {"score": "high"}}}', "outcomes.m.score must be a number"),
    ('{"prompt": "p", "outcomes": {"m": {"score": 1, "cost_usd": -1}}}', "cost_usd must be a non-negative"),
    ('{"prompt": "p", "outcomes": {"m": {"score": 1}}, "cohort": 3}', "cohort must be a string"),
    ('{"prompt": "p", "outcomes": {}}', "no outcomes"),
])
def test_bad_rows_name_their_line(tmp_path, line, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ThriftyError) as err:
        read_rows(str(path))
    assert problem in str(err.value)


def test_bad_configs_and_files(tmp_path):
    with pytest.raises(ThriftyError, match="cannot read data file"):
        read_rows(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ThriftyError, match="no rows"):
        read_rows(write(tmp_path, "empty.jsonl", []))
    with pytest.raises(ConfigError) as err:
        load_setup(write(tmp_path, "c.yaml", {**ROUTING, "default_tier": "nope"}))
    assert "default_tier" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_setup(write(tmp_path, "g.yaml", {"deployments": {"small": {"provider": "p", "model": "s"}},
                                              "routing": ROUTING}))
    assert "routing.tiers.heavy" in str(err.value) and "'big'" in str(err.value)
    with pytest.raises(ThriftyError, match="no row has an outcome for every model"):
        evaluate(read_rows(write(tmp_path, "r.jsonl", [{"prompt": "p", "outcomes": {"x": {"score": 1}}}])),
                 load_setup(write(tmp_path, "ok.yaml", ROUTING)))
