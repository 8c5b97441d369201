"""`thrifty export finetune`: which calls become training examples, their shape, and the split."""

from __future__ import annotations

import json
from typing import Any

import pytest

from thrifty.analysis.finetune import export_finetune, holdout_path, in_holdout
from thrifty.config import parse_config

from tests.analysis.traffic_rows import traffic


CONFIG = parse_config({
    "providers": {"openai": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1"}},
    "deployments": {"mini": {"provider": "openai", "model": "gpt-4o-mini"},
                    "big": {"provider": "openai", "model": "gpt-4o"}},
    "keys": {"k": {"tenant": "t"}},
    "routing": {"tiers": {"fast": ["mini"], "standard": ["big"]}, "default_tier": "standard",
                "rules": [{"when": {"request_type": "classification"}, "tier": "fast"}]},
})


def openai_call(prompt: str, answer: str | None, model: str, **extra: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": prompt}]}
    resp = None if answer is None else {"id": "x", "object": "chat.completion", "model": model, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]}
    return {"model": model, "status": 200, "request_body": json.dumps(body),
            "response_body": None if resp is None else json.dumps(resp), **extra}


CLASSIFY = "Classify the sentiment of this review: great phone"


def test_keeps_tier_requests_answered_by_a_stronger_model(tmp_path: Any) -> None:
    rows = [
        openai_call(CLASSIFY, "positive", "gpt-4o", request_type="classification"),  # kept
        openai_call(CLASSIFY, "positive", "gpt-4o-mini"),  # the tier answered itself
        openai_call("Write a poem about the sea", "Waves...", "gpt-4o"),  # the rules put it in standard
        openai_call(CLASSIFY, None, "gpt-4o"),  # no stored answer
        {**openai_call(CLASSIFY, "positive", "gpt-4o"), "status": 500},  # failed call
        openai_call(CLASSIFY, "positive", "some-other-model"),  # outside the routing tiers
    ]
    out = tmp_path / "train.jsonl"
    report = export_finetune(traffic(rows), CONFIG, "fast", str(out), holdout=0.0)
    assert report.train == 1 and report.holdout == 0
    assert report.by_request_type == {"classification": 1}
    assert report.skipped == {"answered by the tier itself or a weaker one": 1,
                              "the routing rules put it in another tier": 1,
                              "served by a model outside the routing tiers": 1}
    (line,) = out.read_text().splitlines()
    assert json.loads(line) == {"messages": [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": CLASSIFY},
                                             {"role": "assistant", "content": "positive"}]}


def test_anthropic_bodies_become_chat_messages(tmp_path: Any) -> None:
    body = {"model": "gpt-4o", "max_tokens": 10, "system": "Be brief.",
            "messages": [{"role": "user", "content": CLASSIFY}]}
    resp = {"id": "msg_1", "type": "message", "role": "assistant", "model": "gpt-4o",
            "content": [{"type": "text", "text": "positive"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 5, "output_tokens": 1}}
    rows = [{"model": "gpt-4o", "request_body": json.dumps(body), "response_body": json.dumps(resp)}]
    out = tmp_path / "a.jsonl"
    report = export_finetune(traffic(rows), CONFIG, "fast", str(out), holdout=0.0)
    assert report.train == 1
    messages = json.loads(out.read_text())["messages"]
    assert messages[-1] == {"role": "assistant", "content": "positive"}
    assert {"role": "user", "content": CLASSIFY} in messages


def test_holdout_split_is_deterministic_and_near_the_share(tmp_path: Any) -> None:
    rows = [{**openai_call(f"{CLASSIFY} #{i}", "positive", "gpt-4o"), "id": f"call-{i}"} for i in range(400)]
    out = tmp_path / "t.jsonl"
    first = export_finetune(traffic(rows), CONFIG, "fast", str(out), holdout=0.25)
    assert first.train + first.holdout == 400
    assert 60 <= first.holdout <= 140
    held = {json.loads(line)["messages"][1]["content"] for line in open(holdout_path(str(out)))}
    expected = {f"{CLASSIFY} #{i}" for i in range(400) if in_holdout(f"call-{i}", 0.25)}
    assert held == expected
    again = export_finetune(traffic(list(reversed(rows))), CONFIG, "fast", str(tmp_path / "u.jsonl"), holdout=0.25)
    assert again.holdout == first.holdout


def test_bad_inputs_are_refused(tmp_path: Any) -> None:
    con = traffic([])
    with pytest.raises(ValueError, match="unknown tier"):
        export_finetune(con, CONFIG, "tiny", str(tmp_path / "x.jsonl"))
    with pytest.raises(ValueError, match="holdout"):
        export_finetune(con, CONFIG, "fast", str(tmp_path / "x.jsonl"), holdout=1.5)
    no_routing = CONFIG.model_copy(update={"routing": None})
    with pytest.raises(ValueError, match="routing"):
        export_finetune(con, no_routing, "fast", str(tmp_path / "x.jsonl"))
    assert holdout_path("data/train.jsonl") == "data/train.holdout.jsonl"


def test_cli_exports_from_a_wire_log(tmp_path: Any, capsys: Any) -> None:
    from thrifty.cli.main import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("providers: {openai: {kind: openai, base_url: 'http://127.0.0.1:1/v1'}}\n"
                   "deployments: {mini: {provider: openai, model: gpt-4o-mini}, big: {provider: openai, model: gpt-4o}}\n"
                   "keys: {k: {tenant: t}}\n"
                   "routing: {tiers: {fast: [mini], standard: [big]}, default_tier: standard,\n"
                   "  rules: [{when: {request_type: classification}, tier: fast}]}\n")
    call = openai_call(CLASSIFY, "positive", "gpt-4o")
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"timestamp": 1_700_000_000, "request": json.loads(call["request_body"]),
                               "response": json.loads(call["response_body"])}) + "\n")
    out = tmp_path / "ft.jsonl"
    assert main(["export", "finetune", str(log), "--tier", "fast", "--config", str(cfg), "--out", str(out),
                 "--holdout", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train"] == 1 and report["by_request_type"] == {"classification": 1}
    assert json.loads(out.read_text())["messages"][-1] == {"role": "assistant", "content": "positive"}
    assert main(["export", "finetune", str(log), "--tier", "nope", "--config", str(cfg), "--out", str(out)]) == 1
