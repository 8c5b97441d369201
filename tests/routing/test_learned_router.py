"""The learned router: fit on outcomes with a known answer, save/load, the router serving it, eval both ways."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import yaml

from thrifty.cli import eval_router, train_router
from thrifty.errors import ConfigError, ThriftyError
from thrifty.routing import Router, RoutingConfig, features_from_prompt
from thrifty.routing.eval import Row, load_setup, prepare, read_rows
from thrifty.routing.learned_train import (
    Policy,
    curve_metrics,
    digest,
    evaluate_policy,
    fit_logistic,
    load_policy,
    split_rows,
    sweep,
    train_policy,
)

ROUTING = {"tiers": {"fast": ["small"], "strong": ["big"]}, "default_tier": "strong",
           "rules": [{"name": "everything", "tier": "strong"}]}
WORDS = ("apple", "river", "cloud", "stone", "tiger", "lemon", "piano", "grape")


def short_prompt(i: int) -> str:
    return f"What colour is a {WORDS[i % len(WORDS)]} number {i}?"


def long_prompt(i: int) -> str:
    return (f"Case {i}: " + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(40)) + ". ") * 12 + \
        "Explain every step of the argument in detail."


def rows(n: int = 40) -> list[dict]:
    """Short prompts: the small model is as good (both right). Long ones: only the big model is right."""
    out = []
    for i in range(n):
        out.append({"prompt": short_prompt(i), "cohort": "short",
                    "outcomes": {"small": {"score": 1.0, "cost_usd": 0.001}, "big": {"score": 1.0, "cost_usd": 0.01}}})
        out.append({"prompt": long_prompt(i), "cohort": "long",
                    "outcomes": {"small": {"score": 0.0, "cost_usd": 0.001}, "big": {"score": 1.0, "cost_usd": 0.01}}})
    return out


def write(tmp_path, name: str, content) -> str:
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in content))
    else:
        path.write_text(yaml.safe_dump(content))
    return str(path)


@pytest.fixture
def files(tmp_path):
    return write(tmp_path, "rows.jsonl", rows()), write(tmp_path, "routing.yaml", ROUTING), tmp_path


def trained(files, target: float = 0.95) -> Policy:
    data, config, _ = files
    return train_policy(read_rows(data), load_setup(config), target=target)


def test_fit_logistic_separates_a_learnable_feature():
    x = np.array([[v] for v in range(20)], dtype=float)
    y = (x[:, 0] < 10).astype(float)
    model = fit_logistic(x, y, l2=0.1)
    assert model.probability([2.0]) > 0.9 and model.probability([17.0]) < 0.1


def test_policy_routes_short_prompts_cheap(files):
    policy = trained(files, target=1.0)
    assert (policy.cheap_tier, policy.strong_tier) == ("fast", "strong")
    assert (policy.cheap_model, policy.strong_model) == ("small", "big")
    for i in range(100, 105):  # prompts it never saw
        assert policy.use_cheap(features_from_prompt(short_prompt(i)))[0] is True
        assert policy.use_cheap(features_from_prompt(long_prompt(i)))[0] is False
    # The saved threshold is the cheapest reaching the target quality out of fold: the strong model's here.
    chosen = next(g for g in policy.grid if g["threshold"] == policy.threshold)
    assert chosen["quality_vs_strong"] == 1.0 and 0.5 <= chosen["strong_share"] <= 0.6


def test_save_load_round_trip(files, tmp_path):
    policy = trained(files)
    path = str(tmp_path / "policy.json")
    policy.save(path)
    again = load_policy(path)
    assert again.to_json() == policy.to_json()
    f = features_from_prompt(long_prompt(3))
    assert again.p_cheap(f) == policy.p_cheap(f)
    assert digest(short_prompt(0)) in again.trained_digests()


def test_bad_policy_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ThriftyError, match="not a router policy"):
        load_policy(bad)
    bad.write_text(json.dumps({"format": "thrifty.router-policy", "feature_version": 0}))
    with pytest.raises(ThriftyError, match="retrain"):
        load_policy(bad)
    with pytest.raises(ThriftyError, match="cannot read"):
        load_policy(tmp_path / "missing.json")


def test_router_serves_the_policy_in_process(files, tmp_path):
    policy = trained(files)
    path = tmp_path / "policy.json"
    policy.save(str(path))
    config = RoutingConfig.model_validate({**ROUTING, "rules": [
        {"name": "chat", "tier": "strong", "policy": str(path), "checks": []}]})
    router = Router(config)
    short = router.decide(features_from_prompt(short_prompt(7)), "thrifty/auto")
    long = router.decide(features_from_prompt(long_prompt(7)), "thrifty/auto")
    assert (short.tier, short.deployment) == ("fast", "small")
    assert (long.tier, long.deployment) == ("strong", "big")
    assert short.rule == "chat" and "learned" in short.reason
    # A configured threshold overrides the file's: above every probability sends all to the strong tier.
    always = Router(RoutingConfig.model_validate({**ROUTING, "rules": [
        {"name": "chat", "tier": "strong", "policy": str(path), "policy_threshold": 1.01}]}))
    assert always.decide(features_from_prompt(short_prompt(7)), "thrifty/auto").tier == "strong"


def test_policy_path_relative_to_the_config_file(files, tmp_path):
    (tmp_path / "policies").mkdir()
    trained(files).save(str(tmp_path / "policies" / "chat.json"))
    config_file = tmp_path / "policies" / "gateway.yaml"
    config_file.write_text("routing: {}\n")
    config = RoutingConfig.model_validate({**ROUTING, "rules": [
        {"name": "chat", "tier": "strong", "policy": "chat.json"}]})
    router = Router(config, config_path=str(config_file))
    assert router.decide(features_from_prompt(short_prompt(9)), "thrifty/auto").tier == "fast"


def test_router_rejects_a_policy_that_cannot_apply(files, tmp_path):
    path = tmp_path / "policy.json"
    trained(files).save(str(path))
    config = RoutingConfig.model_validate({**ROUTING, "rules": [{"name": "x", "tier": "fast", "policy": str(path)}]})
    with pytest.raises(ConfigError, match="not below"):
        Router(config)
    config = RoutingConfig.model_validate({**ROUTING, "rules": [{"name": "x", "tier": "strong",
                                                                  "policy": str(tmp_path / "none.json")}]})
    with pytest.raises(ConfigError, match="cannot read"):
        Router(config)


def test_embedding_model_is_used_when_an_embedding_is_given(files):
    data, config, _ = files

    def embed(texts):  # a stand-in embedder: one dimension says "long"
        return np.array([[1.0 if len(t) > 200 else 0.0, 0.5] for t in texts])

    policy = train_policy(read_rows(data), load_setup(config), embed=embed)
    assert policy.embedding is not None and policy.embedding_grid
    f = features_from_prompt(short_prompt(1))
    # The same short request, but an embedding that says "long": the embedding model decides.
    assert policy.use_cheap(f)[0] is True
    assert policy.p_cheap(f, [1.0, 0.5]) < policy.p_cheap(f, [0.0, 0.5])


def test_curve_metrics_known_answer():
    # Two rows the cheap model loses, two it ties; a perfect ranking recovers the whole gap at half the calls.
    scores = (np.array([0.0, 0.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0, 1.0]))
    costs = (np.full(4, 1.0), np.full(4, 3.0))
    p = np.array([0.1, 0.2, 0.9, 0.8])
    points = sweep(p, scores, costs)
    assert points[0] == (0.0, 1.0, 0.5) and points[2] == (0.5, 2.0, 1.0)
    m = curve_metrics(points, scores, costs)
    for way in ("by_cost", "by_calls"):
        assert m[way]["apgr"] == pytest.approx(0.75)
    assert m["by_cost"]["cpt50"]["u"] == pytest.approx(0.25)
    assert m["by_calls"]["cpt50"]["share_of_calls"] == pytest.approx(0.25)
    # Costs that differ per call separate the conventions: the two losers are the cheap ones to escalate.
    costs = (np.array([1.0, 1.0, 1.0, 1.0]), np.array([2.0, 2.0, 9.0, 9.0]))
    m = curve_metrics(sweep(p, scores, costs), scores, costs)
    assert m["by_calls"]["apgr"] == pytest.approx(0.75)
    assert m["by_cost"]["apgr"] > 0.9  # half the calls is a tenth of the cost gap


def test_evaluate_policy_per_cohort(files):
    data, config, _ = files
    setup = load_setup(config)
    policy = trained(files)
    tie, loss = read_rows(data)[0].outcomes, read_rows(data)[1].outcomes
    held = [Row(short_prompt(200), tie, "short"), Row(short_prompt(201), tie, "short"),
            Row(long_prompt(300), loss, "long")]
    d = prepare(held, setup)
    report = evaluate_policy(policy, d.rows, d.features, d.costs)
    # The one loser ranked first: the whole gap is recovered at 1/3 of calls, APGR = 1 - (1/3) / 2.
    assert report["by_calls"]["apgr"] == pytest.approx(1 - 1 / 6)
    assert report["by_calls"]["cpt50"]["share_of_calls"] == pytest.approx(1 / 6)
    assert set(report["cohorts"]) == {"short", "long"}
    assert report["at_threshold"]["quality_vs_strong"] == 1.0


def test_split_is_seeded_and_disjoint():
    rs = [Row(short_prompt(i), {}, None) for i in range(200)]
    train, held = split_rows(rs, 0.7, seed=3)
    assert len(train) + len(held) == 200 and 40 < len(train) < 80
    assert {r.prompt for r in train}.isdisjoint(r.prompt for r in held)
    assert [r.prompt for r in split_rows(rs, 0.7, seed=3)[0]] == [r.prompt for r in train]
    assert [r.prompt for r in split_rows(rs, 0.7, seed=4)[0]] != [r.prompt for r in train]


# --- the commands -------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="thrifty")
    sub = p.add_subparsers(dest="command", required=True)
    train_router.add_parser(sub)
    eval_router.add_parser(sub)
    return p


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


def test_train_then_eval_on_held_out_rows_both_ways(files, capsys):
    data, config, tmp = files
    policy = str(tmp / "policy.json")
    assert run(["train", "router", "--data", data, "--config", config, "--out", policy,
                "--holdout", "0.5", "--seed", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    trained_rows = summary["trained_on"]["rows"]
    assert trained_rows + summary["trained_on"]["held_out_rows"] == 80 and summary["cheap"]["grid"]

    assert run(["eval", "router", "--data", data, "--config", config, "--policy", policy, "--json",
                "--no-cascade"]) == 0
    report = json.loads(capsys.readouterr().out)
    learned = report["methods"]["learned"]
    assert learned["scored_on"] == {"rows": 80 - trained_rows, "excluded_trained_rows": trained_rows, "data": data}
    assert report["data"]["rows"] == 80 - trained_rows  # the whole report leaves the trained rows out
    losers = learned["cohorts"]["long"]["n"] / learned["n"]  # a perfect ranking: APGR = 1 - losers / 2
    for way in ("by_cost", "by_calls"):
        assert set(learned[way]) >= {"apgr", "cpt50", "cpt80"}
        assert learned[way]["apgr"] == pytest.approx(1 - losers / 2)
        assert set(learned["cohorts"]["long"][way]) >= {"apgr", "cpt50", "cpt80"}
    assert learned["by_calls"]["cpt50"]["share_of_calls"] == pytest.approx(losers / 2)
    assert set(report["conventions"]) == {"by_cost", "by_calls"}

    assert run(["eval", "router", "--data", data, "--config", config, "--policy", policy, "--no-cascade"]) == 0
    out = capsys.readouterr().out
    assert "by cost" in out and "by calls" in out and "trained-on rows left out" in out


def test_train_text_output_and_bad_input(files, capsys):
    data, config, tmp = files
    assert run(["train", "router", "--data", data, "--config", config, "--out", str(tmp / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "threshold" in out and "<- saved" in out and "fast (small) or strong (big)" in out
    with pytest.raises(ThriftyError, match="--holdout"):
        run(["train", "router", "--data", data, "--config", config, "--out", "x", "--holdout", "1"])
    with pytest.raises(ThriftyError, match="nothing held out"):
        run(["eval", "router", "--data", data, "--config", config, "--policy", str(tmp / "p.json")])
    same = write(tmp, "same.jsonl", [{**r, "outcomes": {"small": r["outcomes"]["big"], "big": r["outcomes"]["big"]}}
                                    for r in rows()])
    with pytest.raises(ThriftyError, match="only one kind"):
        run(["train", "router", "--data", same, "--config", config, "--out", "x"])
