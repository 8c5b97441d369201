"""The learned cascade: a policy's answer stage (routing/learned.py) trained on recorded answers,
its file (version 3; versions 1 and 2 still read), the router and the gateway serving it (the
peer's consistency sample scored, a low score escalated, the sample's ledger row), and the
evaluation replaying it on recorded answers with the peer paid."""

from __future__ import annotations

import argparse
import asyncio
import json
from decimal import Decimal
from types import SimpleNamespace

import openai
import pytest

from tests.conftest import start_stack
from tests.ledger_util import wait_rows
from tests.routing.test_learned_router import write
from thrifty.cli import eval_router, train_router
from thrifty.contract import Answer, Call
from thrifty.contract.usage import Usage
from thrifty.core.policy import CallPolicy
from thrifty.core.recorder import Exchange, Recorder
from thrifty.errors import ConfigError, ThriftyError
from thrifty.pricing import Accountant, PriceBook
from thrifty.providers.deployments import Deployments
from thrifty.routing import Router, RoutingConfig, features_from_prompt
from thrifty.routing.eval import load_setup, prepare, read_rows, replay
from thrifty.routing.learned import ANSWER_FEATURES, CHEAP_FEATURES, FORMAT, load_policy
from thrifty.routing.learned_train import evaluate_policy, train_policy
from thrifty.routing.stage import ModelRoute
from thrifty.shaping.prepare import Preparer
from thrifty.shaping.prompt_cache import PromptCachePlanner
from thrifty.wire import OPENAI_CHAT

ROUTING = {"tiers": {"fast": ["small", "small-b"], "strong": ["big"]}, "default_tier": "strong",
           "rules": [{"name": "everything", "tier": "strong"}],
           "escalation": {"checks": ["empty"], "max_steps": 1}}
ITEMS = ("apple", "river", "cloud", "stone", "tiger", "lemon", "piano", "grape")
COSTS = {"small": 0.001, "small-b": 0.002, "big": 0.01}


def question(i: int) -> str:
    return (f"Question {i}: which of these is a {ITEMS[i % len(ITEMS)]}?\nA) the first\nB) the second\n"
            "C) the third\nD) the fourth\nAnswer with the letter only.")


def rows(n: int = 60) -> list[dict]:
    """The same kind of prompt throughout (the prompt says nothing); the cheap model is right
    exactly when its answer agrees with the peer's, the big model always."""
    out = []
    for i in range(n):
        agree = i % 3 != 0
        cheap = "B" if agree else "A"
        out.append({"prompt": question(i), "cohort": "agree" if agree else "disagree", "outcomes": {
            "small": {"score": 1.0 if agree else 0.0, "cost_usd": COSTS["small"], "answer": cheap},
            "small-b": {"score": 1.0, "cost_usd": COSTS["small-b"], "answer": "B"},
            "big": {"score": 1.0, "cost_usd": COSTS["big"], "answer": "B"}}})
    return out


@pytest.fixture
def files(tmp_path):
    return write(tmp_path, "rows.jsonl", rows()), write(tmp_path, "routing.yaml", ROUTING), tmp_path


def trained(files, **kw):
    data, config, _ = files
    return train_policy(read_rows(data), load_setup(config), **kw)


def test_training_makes_an_answer_stage_that_escalates_disagreement(files):
    policy = trained(files)
    stage = policy.answer
    assert stage is not None and stage.peer_model == "small-b"  # the cheap tier's other deployment
    f = features_from_prompt(question(101))
    agree, disagree = stage.score(f, "B", "B"), stage.score(f, "A", "B")
    assert agree >= stage.threshold > disagree
    # The prompt-only model cannot tell them apart: same prompt shape, both kinds.
    assert policy.use_cheap(f)[0] == policy.use_cheap(features_from_prompt(question(102)))[0]
    # The saved threshold reaches the target out of fold, paying cheap + peer on every call.
    chosen = next(g for g in stage.grid if g["threshold"] == stage.threshold)
    assert chosen["quality_vs_strong"] == 1.0
    assert chosen["cost_usd"] == pytest.approx(COSTS["small"] + COSTS["small-b"] + COSTS["big"] / 3)
    assert policy.trained_on["answer_stage"]["rows"] == 60


def test_no_answers_no_answer_stage_and_the_options(files, tmp_path):
    plain = [{**r, "outcomes": {m: {k: v for k, v in o.items() if k != "answer"} for m, o in r["outcomes"].items()}}
             for r in rows()]
    policy = train_policy(read_rows(write(tmp_path, "plain.jsonl", plain)), load_setup(files[1]))
    assert policy.answer is None
    assert trained(files, answer_stage=False).answer is None
    with pytest.raises(ThriftyError, match="no answer stage"):
        train_policy(read_rows(write(tmp_path, "plain.jsonl", plain)), load_setup(files[1]), answer_stage=True)
    # No other model in the cheap tier: the stage reads the cheap answer alone (RouterArena's case).
    alone = {**ROUTING, "tiers": {"fast": ["small"], "strong": ["big"]}}
    # (Asked for: on these rows one answer alone cannot beat asking the strong tier first, so the
    # automatic choice would serve prompt only, test_auto_training_serves_prompt_only_...)
    single = train_policy(read_rows(files[0]), load_setup(write(tmp_path, "alone.yaml", alone)), answer_stage=True)
    assert single.answer is not None and single.answer.peer_model is None
    with pytest.raises(ThriftyError, match="--peer 'nobody'"):
        trained(files, peer="nobody")


def test_version_3_round_trip_and_older_files(files, tmp_path):
    policy = trained(files)
    path = tmp_path / "policy.json"
    policy.save(str(path))
    raw = json.loads(path.read_text())
    assert raw["version"] == 3 and raw["answer"]["features"] == [*CHEAP_FEATURES, *ANSWER_FEATURES]
    again = load_policy(path)
    assert again.to_json() == policy.to_json()
    f = features_from_prompt(question(7))
    assert again.answer.score(f, "A", "B") == policy.answer.score(f, "A", "B")
    # Versions 1 and 2 (no answer stage) still load.
    old = {k: v for k, v in raw.items() if k != "answer"}
    for version in (None, 2):
        older = {**old, "version": version} if version else {k: v for k, v in old.items() if k != "version"}
        path.write_text(json.dumps(older))
        loaded = load_policy(path)
        assert loaded.answer is None and loaded.cheap == policy.cheap


@pytest.mark.parametrize("change, problem", [
    (lambda r: r.update(version=2), "needs version 3"),
    (lambda r: r["answer"].update(weights=[0.0]), "answer model has 1 weights"),
    (lambda r: r["answer"].update(feature_version=9), "answer feature version 9"),
    (lambda r: r["answer"].pop("threshold"), "malformed router policy"),
    (lambda r: r["answer"].update(consistency={"mode": "vibes"}), "answer.consistency"),
    (lambda r: r.update(answer=[1, 2]), "answer must be an object"),
])
def test_malformed_answer_stage_is_a_clear_error(files, tmp_path, change, problem):
    raw = trained(files).to_json()
    change(raw)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ThriftyError, match=problem):
        load_policy(path)


def cascade_router(path, **changes) -> Router:
    routing = {**ROUTING, "rules": [{"name": "learned", "tier": "strong", "policy": str(path)}], **changes}
    return Router(RoutingConfig.model_validate(routing))


def test_router_sends_a_cascade_to_the_cheap_tier_with_its_stage(files, tmp_path):
    policy = trained(files)
    path = tmp_path / "policy.json"
    policy.save(str(path))
    d = cascade_router(path).decide(features_from_prompt(question(5)), "thrifty/auto")
    assert (d.tier, d.deployment) == ("fast", "small") and "learned cascade" in d.reason
    assert d.answer_stage is not None and d.answer_threshold == policy.answer.threshold
    assert d.checks == ("empty", "policy")  # the default checks, then the answer stage
    up = cascade_router(path).escalate(d, features_from_prompt(question(5)), "policy: low")
    assert up.tier == "strong" and up.answer_stage is None
    with pytest.raises(ConfigError, match="escalation enabled"):
        cascade_router(path, escalation={"enabled": False})
    with pytest.raises(ConfigError, match="second deployment"):
        cascade_router(path, tiers={"fast": ["small"], "strong": ["big"]})


# --- the gateway's flow in process (the same stage, escalation and recorder as `thrifty serve`) ----------

def _stage(policy_path) -> ModelRoute:
    routes = {n: SimpleNamespace(deployment=n, provider=SimpleNamespace(name="p", wire=OPENAI_CHAT), model=n,
                                 tier=None, price_provider=None) for n in ("small", "small-b", "big")}
    return ModelRoute(Deployments(routes), cascade_router(policy_path), Preparer(PromptCachePlanner(), 1024))


def _provider(answers: dict):
    sent: list[str] = []

    async def call_next(call: Call) -> Answer:
        sent.append(call.route.model)
        body = {"id": "x", "object": "chat.completion", "model": call.route.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answers[call.route.model]},
                             "finish_reason": "stop"}]}
        return Answer(body=body, usage=Usage(input_tokens=10, output_tokens=1),
                      cost=Decimal(str(COSTS[call.route.model])), complete=True)

    return call_next, sent


def _run(stage: ModelRoute, answers: dict, prompt: str, stream: bool = False):
    call = Call(request_id="thr_c", tenant="t", wire=OPENAI_CHAT, headers={},
                body={"model": "thrifty/auto", "messages": [{"role": "user", "content": prompt}]},
                model="thrifty/auto", stream=stream, feature="f",
                policy=CallPolicy(route="default", prompt_cache=False, exact_cache=None))
    call_next, sent = _provider(answers)
    answer = asyncio.run(stage(call, call_next))
    rows: list = []
    ledger = SimpleNamespace(record=rows.append)
    Recorder(ledger, Accountant(PriceBook())).record(  # type: ignore[arg-type]
        Exchange(request_id=call.request_id, started_at=0.0, tenant="t", surface="openai", status=200), call, answer)
    return call, answer, sent, rows


def test_gateway_escalates_a_disagreeing_call_and_keeps_an_agreeing_one(files, tmp_path):
    path = tmp_path / "policy.json"
    trained(files).save(str(path))
    stage = _stage(path)
    call, answer, sent, rows = _run(stage, {"small": "A", "small-b": "B", "big": "B"}, question(201))
    assert sent == ["small", "small-b", "big"] and call.route.model == "big"
    assert answer.body["choices"][0]["message"]["content"] == "B"
    assert [(r.request_id, r.served_model, r.error_type) for r in rows][:2] == [
        ("thr_c.1", "small-b", "consistency sample"), ("thr_c.2", "small", rows[1].error_type)]
    assert rows[1].error_type.startswith("escalated: policy: answer score ")
    assert rows[2].request_id == "thr_c" and rows[2].served_model == "big"
    assert sum(r.cost_usd for r in rows) == Decimal("0.013")  # cheap + peer + strong: the bill
    assert stage.snapshot()["by_check"] == {"policy": 1}

    call, answer, sent, rows = _run(stage, {"small": "B", "small-b": "B", "big": "B"}, question(202))
    assert sent == ["small", "small-b"] and call.route.model == "small" and call.tier == "fast"
    assert [(r.request_id, r.served_model, r.error_type) for r in rows] == [
        ("thr_c.1", "small-b", "consistency sample"), ("thr_c", "small", None)]
    assert stage.snapshot()["escalated"] == 1 and stage.snapshot()["checked"] == 2


def test_a_streamed_call_takes_no_sample(files, tmp_path):
    path = tmp_path / "policy.json"
    trained(files).save(str(path))
    call, _, sent, _ = _run(_stage(path), {"small": "A", "small-b": "B", "big": "B"}, question(203), stream=True)
    assert sent == ["small"] and call.route.model == "small"  # as the consistency check: streams skip it


def test_a_one_answer_stage_takes_no_sample_and_pays_no_peer(files, tmp_path):
    alone = {**ROUTING, "tiers": {"fast": ["small"], "strong": ["big"]}}
    policy = train_policy(read_rows(files[0]), load_setup(write(tmp_path, "alone.yaml", alone)), answer_stage=True)
    path = tmp_path / "policy.json"
    policy.save(str(path))
    _, _, sent, rows = _run(_stage(path), {"small": "A", "small-b": "B", "big": "B"}, question(204))
    assert "small-b" not in sent and all(r.error_type != "consistency sample" for r in rows)
    data = prepare(read_rows(files[0]), load_setup(files[1]))
    routing = RoutingConfig.model_validate({**ROUTING, "rules": [
        {"name": "learned", "tier": "strong", "policy": str(path)}]})
    for s in replay(data, load_setup(files[1]), routing):
        assert s.cost == pytest.approx(COSTS["small"] + (COSTS["big"] if s.escalated else 0.0))


# --- evaluation --------------------------------------------------------------------------------------------

def test_eval_replays_the_cascade_paying_the_peer(files, tmp_path):
    data_path, config, _ = files
    policy = trained(files)
    setup = load_setup(config)
    test = [r for r in read_rows(write(tmp_path, "test.jsonl", rows(30)))]
    data = prepare(test, setup)
    m = evaluate_policy(policy, data.rows, data.features, data.costs)
    assert m["model"] == "cascade" and m["peer_model"] == "small-b"
    at = m["at_threshold"]
    assert at["quality_vs_strong"] == 1.0 and at["strong_share"] == pytest.approx(1 / 3)
    assert at["cost_usd"] == pytest.approx(COSTS["small"] + COSTS["small-b"] + COSTS["big"] / 3)
    assert m["by_calls"]["apgr"] > 0.8 and m["cohorts"]["disagree"]["at_threshold"]["strong_share"] == 1.0
    prompt_only = evaluate_policy(policy, data.rows, data.features, data.costs, cascade=False)
    assert prompt_only["model"] == "cheap" and prompt_only["by_calls"]["apgr"] < m["by_calls"]["apgr"]
    # The router's replay (the gateway's decisions on recorded answers) pays the same.
    path = tmp_path / "policy.json"
    policy.save(str(path))
    routing = RoutingConfig.model_validate({**ROUTING, "rules": [
        {"name": "learned", "tier": "strong", "policy": str(path)}]})
    served = replay(data, setup, routing)
    assert sum(s.escalated for s in served) == 10
    assert sum(s.cost for s in served) / len(served) == pytest.approx(at["cost_usd"])


def test_cli_trains_and_scores_the_cascade(files, capsys):
    data, config, tmp = files
    out = str(tmp / "policy.json")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    train_router.add_parser(sub)
    eval_router.add_parser(sub)
    args = parser.parse_args(["train", "router", "--data", data, "--config", config, "--out", out,
                              "--holdout", "0.5"])
    assert args.run(args) == 0
    assert "answer stage (the cascade" in capsys.readouterr().out
    args = parser.parse_args(["eval", "router", "--data", data, "--config", config, "--policy", out, "--json"])
    assert args.run(args) == 0
    report = json.loads(capsys.readouterr().out)
    learned = report["methods"]["learned"]
    assert learned["model"] == "cascade" and "learned (prompt only)" in report["methods"]
    args = parser.parse_args(["eval", "router", "--data", data, "--config", config, "--policy", out])
    assert args.run(args) == 0
    assert "a cascade: every call pays small and the peer small-b" in capsys.readouterr().out
    args = parser.parse_args(["train", "router", "--data", data, "--config", config, "--out", out,
                              "--peer", "small-b", "--no-answer-stage"])
    with pytest.raises(ThriftyError, match="--peer needs the answer stage"):
        args.run(args)


# --- through a running gateway ------------------------------------------------------------------------------

AGREE, DISAGREE = question(301), question(302)


@pytest.fixture(scope="module")
def cascade_stack(tmp_path_factory):
    """The emulator replays recorded answers: on AGREE both fast deployments answer B, on DISAGREE
    they answer A and C. A hand-written cascade policy whose answer stage reads agreement only."""
    tmp = tmp_path_factory.mktemp("cascade")
    recorded = [{"prompt": p, "cohort": None, "outcomes": {
        "cheap": {"score": 1.0, "cost_usd": 0.0, "answer": a}, "peer": {"score": 1.0, "cost_usd": 0.0, "answer": b},
        "strong": {"score": 1.0, "cost_usd": 0.0, "answer": "B"}}} for p, a, b in ((AGREE, "B", "B"),
                                                                              (DISAGREE, "A", "C"))]
    (tmp / "outcomes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recorded))
    emu_cfg = tmp / "emulator.yaml"
    emu_cfg.write_text(json.dumps({"recorded": {"path": "outcomes.jsonl", "models": {
        "gpt-5-nano": "cheap", "gpt-4o-mini": "peer", "gpt-4o": "strong"}}}))
    weights = [0.0] * (len(CHEAP_FEATURES) + len(ANSWER_FEATURES))
    weights[len(CHEAP_FEATURES) + ANSWER_FEATURES.index("agree")] = 6.0  # agree: p 0.95; not: 0.05
    zeros = [0.0] * len(CHEAP_FEATURES)
    policy = {"format": FORMAT, "version": 3, "feature_version": 1,
              "tiers": {"cheap": "fast", "strong": "standard"},
              "models": {"cheap": "gpt-5-nano", "strong": "gpt-4o"}, "threshold": 0.5,
              "features": list(CHEAP_FEATURES), "cheap": {"weights": zeros, "bias": 0.0, "grid": []},
              "embedding": None, "trained_on": {},
              "answer": {"weights": weights, "bias": -3.0, "feature_version": 1, "threshold": 0.5,
                         "peer_model": "gpt-4o-mini", "consistency": {"mode": "auto", "threshold": 0.6}}}
    path = tmp / "policy.json"
    path.write_text(json.dumps(policy))

    def edit(cfg):
        cfg["routing"] = {"tiers": {"fast": ["gpt-5-nano", "gpt-4o-mini"], "standard": ["gpt-4o"]},
                          "default_tier": "standard",
                          "rules": [{"name": "learned", "tier": "standard", "policy": str(path)}],
                          "escalation": {"checks": ["empty"], "max_steps": 1}}

    s = start_stack(tmp, edit=edit, emulator_args=["--config", str(emu_cfg)])
    yield s
    s.gateway.stop()
    s.emulator.stop()


def ask(stack, prompt: str):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        return c.chat.completions.with_raw_response.create(
            model="thrifty/auto", messages=[{"role": "user", "content": prompt}])


def test_running_gateway_escalates_disagreement_and_records_the_sample(cascade_stack):
    s = cascade_stack
    raw = ask(s, DISAGREE)
    assert raw.headers["x-thrifty-tier"] == "standard" and raw.headers["x-thrifty-model"] == "gpt-4o"
    rid = raw.headers["x-thrifty-request-id"]
    rows = wait_rows(s.ledger_path, [rid, rid + ".1", rid + ".2"])
    assert rows[rid + ".1"].served_model == "gpt-4o-mini" and rows[rid + ".1"].error_type == "consistency sample"
    assert rows[rid + ".2"].served_model == "gpt-5-nano" and rows[rid + ".2"].tier == "fast"
    assert rows[rid + ".2"].error_type == "escalated: policy: answer score 0.05 < 0.50"
    assert rows[rid].served_model == "gpt-4o" and rows[rid].error_type is None

    raw = ask(s, AGREE)
    assert raw.headers["x-thrifty-tier"] == "fast" and raw.headers["x-thrifty-model"] == "gpt-5-nano"
    assert raw.parse().choices[0].message.content.strip() == "B"
    rid = raw.headers["x-thrifty-request-id"]
    rows = wait_rows(s.ledger_path, [rid, rid + ".1"])
    assert rows[rid + ".1"].error_type == "consistency sample" and rows[rid].error_type is None


def test_auto_training_serves_prompt_only_when_the_cascade_does_not_pay(tmp_path):
    """Where the answers cannot be trusted at the target (agreement says nothing: the cheap model is
    wrong half the time whatever the peer says), the cascade would escalate nearly everything after
    paying two cheap calls: `train router` without --answer-stage then serves the prompt-only policy,
    and says why; asking for the stage keeps it."""
    noisy = []
    for i in range(80):
        right = (i * 7) % 2 == 0 if i % 5 else i % 3 == 0
        noisy.append({"prompt": question(i), "cohort": None, "outcomes": {
            "small": {"score": float(right), "cost_usd": COSTS["small"], "answer": "B"},
            "small-b": {"score": 1.0, "cost_usd": COSTS["small-b"], "answer": "B"},
            "big": {"score": 1.0, "cost_usd": COSTS["big"], "answer": "B"}}})
    files = (write(tmp_path, "rows.jsonl", noisy), write(tmp_path, "routing.yaml", ROUTING), tmp_path)
    auto = trained(files, target=0.99, folds=4)
    assert auto.answer is None
    assert "prompt-only" in auto.trained_on["answer_stage"]["dropped"]
    kept = trained(files, target=0.99, folds=4, answer_stage=True)
    assert kept.answer is not None


def test_auto_training_keeps_the_cascade_where_it_pays(files):
    policy = trained(files, target=0.99, folds=4)
    assert policy.answer is not None and "dropped" not in policy.trained_on["answer_stage"]
