"""The emulator's batch APIs, driven by the official SDKs: OpenAI's Batch API (with its Files API)
and Anthropic's Message Batches, their state machines, partial failure, cancel, expiry, and
billing at batch prices kept apart from interactive billing (docs/emulator.md, "Batch jobs")."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from thrifty.contract.usage import Usage
from thrifty.pricing import PriceBook
from thrifty_emulator.batch_jobs import BATCH_FAULT_MARKER

OPENAI_DONE = ("completed", "failed", "expired", "cancelled")


def _start(start_emulator: Callable[..., Any], tmp: Path, **config: float) -> Any:
    path = tmp / "emulator.json"
    path.write_text(json.dumps(config))
    return start_emulator("--latency-scale", "0", "--seed", "7", "--config", str(path))


@pytest.fixture(scope="module")
def quick(start_emulator, tmp_path_factory):
    """Batches end 0.2 s after creation."""
    return _start(start_emulator, tmp_path_factory.mktemp("quick"), batch_seconds=0.2)


@pytest.fixture(scope="module")
def slow(start_emulator, tmp_path_factory):
    """Batches take 20 s: validating for the first 2 s, so a cancel right after creation runs nothing;
    cancelling lasts 2 s."""
    return _start(start_emulator, tmp_path_factory.mktemp("slow"), batch_seconds=20)


@pytest.fixture(scope="module")
def expiring(start_emulator, tmp_path_factory):
    """Batches would take 0.4 s but the completion window closes at 0.25 s: of 4 lines, due at
    0.12, 0.20, 0.28 and 0.36 s, the last two expire."""
    return _start(start_emulator, tmp_path_factory.mktemp("expiring"), batch_seconds=0.4, batch_expire_seconds=0.25)


def _wait(get: Callable[[], Any], done: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + 20
    while True:
        value = get()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"still not done: {value}"
        time.sleep(0.05)


def _chat_line(custom_id: str, content: str = "Summarise our refund policy.", **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "max_tokens": 40, "messages": [{"role": "user", "content": content}],
                     **body}}


def _upload(client: openai.OpenAI, lines: list[Any], name: str = "input.jsonl") -> Any:
    data = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()
    return client.files.create(file=(name, data), purpose="batch")


def _jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _batch_cost(bill: dict[str, Any], model: str, *, batch: bool) -> Decimal:
    usage = Usage(input_tokens=bill["input_tokens"], cache_read_tokens=bill["cache_read_tokens"],
                  cache_write_5m_tokens=bill["cache_write_5m_tokens"],
                  cache_write_1h_tokens=bill["cache_write_1h_tokens"], output_tokens=bill["output_tokens"],
                  reasoning_tokens=bill["reasoning_tokens"])
    cost = PriceBook().cost(model, usage, batch=batch)
    assert cost is not None
    return cost.total


# --- OpenAI ------------------------------------------------------------------------------------


def test_openai_batch_runs_lines_with_partial_failure_and_bills_at_batch_price(quick):
    quick.reset()
    client = quick.openai()
    lines = [_chat_line("ok-1"), _chat_line("ok-2", "Name three shipping carriers."),
             _chat_line("too-long", max_tokens=10**6), _chat_line("fault", f"Hello {BATCH_FAULT_MARKER}")]
    uploaded = _upload(client, lines)
    assert uploaded.purpose == "batch" and uploaded.status == "processed" and uploaded.filename == "input.jsonl"
    assert client.files.retrieve(uploaded.id).bytes == uploaded.bytes

    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"team": "support", "run": "7"})
    assert batch.status == "validating" and batch.request_counts.total == 4
    assert batch.metadata == {"team": "support", "run": "7"} and batch.model == "gpt-4o-mini"
    done = _wait(lambda: client.batches.retrieve(batch.id), lambda b: b.status in OPENAI_DONE)
    assert done.status == "completed" and done.completed_at and done.in_progress_at and done.finalizing_at
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 2)

    output = _jsonl(client.files.content(done.output_file_id).text)
    errors = {e["custom_id"]: e for e in _jsonl(client.files.content(done.error_file_id).text)}
    assert sorted(o["custom_id"] for o in output) == ["ok-1", "ok-2"]
    for line in output:
        assert line["error"] is None and line["id"].startswith("batch_req_")
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"]
        openai.types.chat.ChatCompletion.model_validate(line["response"]["body"])
    assert errors["too-long"]["response"]["status_code"] == 400
    assert errors["too-long"]["response"]["body"]["error"]["param"] == "max_tokens"
    assert errors["fault"]["response"]["status_code"] == 500
    assert errors["fault"]["response"]["body"]["error"]["type"] == "server_error"
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"

    billing = quick.billing()
    assert billing["models"] == {}, "batch lines are not billed as interactive calls"
    bill = billing["batch"]["models"]["gpt-4o-mini"]
    used = [o["response"]["body"]["usage"] for o in output]
    assert bill["requests"] == 2 and bill["faults"] == 1
    assert bill["input_tokens"] == sum(u["prompt_tokens"] for u in used)
    assert bill["output_tokens"] == sum(u["completion_tokens"] for u in used)
    assert done.usage is not None and done.usage.output_tokens == bill["output_tokens"]
    # Priced at genai-prices' batch rates: half of the interactive price for the same tokens.
    assert _batch_cost(bill, "gpt-4o-mini", batch=True) * 2 == _batch_cost(bill, "gpt-4o-mini", batch=False)


def test_openai_embeddings_batch(quick):
    quick.reset()
    client = quick.openai()
    line = {"custom_id": "e1", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": ["refunds", "shipping"], "dimensions": 8}}
    batch = client.batches.create(input_file_id=_upload(client, [line]).id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    done = _wait(lambda: client.batches.retrieve(batch.id), lambda b: b.status in OPENAI_DONE)
    body = _jsonl(client.files.content(done.output_file_id).text)[0]["response"]["body"]
    embedding = openai.types.CreateEmbeddingResponse.model_validate(body)
    assert [len(d.embedding) for d in embedding.data] == [8, 8]
    assert quick.billing()["batch"]["models"]["text-embedding-3-small"]["input_tokens"] == body["usage"]["prompt_tokens"]


def test_openai_malformed_file_fails_validation_with_line_errors(quick):
    quick.reset()
    client = quick.openai()
    other_url = {**_chat_line("c"), "url": "/v1/embeddings"}
    other_model = _chat_line("d")
    other_model["body"]["model"] = "gpt-4o"
    missing_method = {k: v for k, v in _chat_line("e").items() if k != "method"}
    uploaded = _upload(client, [_chat_line("a"), "{not json", _chat_line("a"), other_url, other_model, missing_method])
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    failed = _wait(lambda: client.batches.retrieve(batch.id), lambda b: b.status in OPENAI_DONE)
    assert failed.status == "failed" and failed.failed_at and failed.output_file_id is None
    assert failed.errors is not None
    assert [(e.code, e.line) for e in failed.errors.data] == [
        ("invalid_json_line", 2), ("duplicate_custom_id", 3), ("url_mismatch", 4), ("model_mismatch", 5),
        ("missing_required_parameter", 6)]
    assert failed.errors.data[-1].param == "method"
    assert quick.billing()["batch"]["models"] == {}, "a file that failed validation runs nothing"


@pytest.mark.parametrize("change, param", [
    ({"completion_window": "1h"}, "completion_window"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"endpoint": "/v1/responses"}, "endpoint"),
    ({"input_file_id": "file-nope"}, "input_file_id"),
])
def test_openai_create_is_validated(quick, change, param):
    client = quick.openai()
    uploaded = _upload(client, [_chat_line("a")])
    args = {"input_file_id": uploaded.id, "endpoint": "/v1/chat/completions", "completion_window": "24h", **change}
    with pytest.raises(openai.APIStatusError) as caught:
        client.batches.create(**args)
    assert caught.value.status_code in (400, 404)
    assert caught.value.body["param"] == param


def test_openai_upload_rules_and_unknown_parameters(quick):
    client = quick.openai()
    with pytest.raises(openai.BadRequestError, match="Must be .jsonl"):
        client.files.create(file=("input.csv", b"a,b\n"), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("input.jsonl", b"{}\n"), purpose="nonsense")  # type: ignore[arg-type]
    uploaded = _upload(client, [_chat_line("a")])
    with pytest.raises(openai.BadRequestError, match="Unrecognized request argument supplied: priority"):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
                              extra_body={"priority": "high"})
    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    with pytest.raises(openai.AuthenticationError):
        quick.openai(api_key="sk-wrong-key-1234").batches.list()


def test_openai_list_is_newest_first_and_pages(quick):
    client = quick.openai()
    old = _upload(client, [_chat_line("a")])
    client.batches.create(input_file_id=old.id, endpoint="/v1/chat/completions", completion_window="24h")
    quick.reset()
    assert client.batches.list().data == [], "a reset forgets batches"
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(old.id)  # ... and files
    uploaded = _upload(client, [_chat_line("a")])
    ids = [client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                 completion_window="24h").id for _ in range(3)]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == [ids[2], ids[1]] and first.has_more
    assert [b.id for b in client.batches.list(limit=2, after=ids[1]).data] == [ids[0]]
    assert [b.id for b in client.batches.list(limit=2)] == list(reversed(ids)), "the SDK pages through all"


def test_openai_cancel_cancels_lines_not_run_and_bills_nothing(slow):
    slow.reset()
    client = slow.openai()
    batch = client.batches.create(input_file_id=_upload(client, [_chat_line("a"), _chat_line("b")]).id,
                                  endpoint="/v1/chat/completions", completion_window="24h")
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    done = _wait(lambda: client.batches.retrieve(batch.id), lambda b: b.status in OPENAI_DONE)
    assert done.status == "cancelled" and done.cancelled_at and done.output_file_id is None
    errors = _jsonl(client.files.content(done.error_file_id).text)
    assert [(e["custom_id"], e["response"], e["error"]["code"]) for e in errors] == [
        ("a", None, "batch_cancelled"), ("b", None, "batch_cancelled")]
    assert done.request_counts.failed == 2 and done.request_counts.completed == 0
    assert slow.billing()["batch"]["models"] == {}
    with pytest.raises(openai.APIStatusError) as caught:
        client.batches.cancel(batch.id)
    assert caught.value.status_code == 409


def test_openai_lines_past_the_window_expire(expiring):
    expiring.reset()
    client = expiring.openai()
    lines = [_chat_line(f"l{i}", f"Question number {i}?") for i in range(4)]
    batch = client.batches.create(input_file_id=_upload(client, lines).id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    done = _wait(lambda: client.batches.retrieve(batch.id), lambda b: b.status in OPENAI_DONE)
    assert done.status == "expired" and done.expired_at
    assert [o["custom_id"] for o in _jsonl(client.files.content(done.output_file_id).text)] == ["l0", "l1"]
    expired = _jsonl(client.files.content(done.error_file_id).text)
    assert [(e["custom_id"], e["error"]["code"]) for e in expired] == [("l2", "batch_expired"), ("l3", "batch_expired")]
    assert expiring.billing()["batch"]["models"]["gpt-4o-mini"]["requests"] == 2


# --- Anthropic ---------------------------------------------------------------------------------


def _request(custom_id: str, content: str = "Summarise our refund policy.", **params: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "params": {"model": "claude-haiku-4-5", "max_tokens": 40,
                                               "messages": [{"role": "user", "content": content}], **params}}


def _ended(client: anthropic.Anthropic, batch_id: str) -> Any:
    return _wait(lambda: client.messages.batches.retrieve(batch_id), lambda b: b.processing_status == "ended")


def test_anthropic_batch_partial_failure_results_and_batch_billing(quick):
    quick.reset()
    client = quick.anthropic()
    batch = client.messages.batches.create(requests=[
        _request("ok-1"), _request("ok-2", "Name three carriers."), _request("too-long", max_tokens=10**6),
        _request("fault", f"Hi {BATCH_FAULT_MARKER}")])
    assert batch.type == "message_batch" and batch.processing_status == "in_progress"
    assert batch.results_url is None and batch.request_counts.processing == 4
    assert batch.expires_at > batch.created_at
    done = _ended(client, batch.id)
    assert done.ended_at and done.results_url and done.results_url.endswith(f"/{batch.id}/results")
    counts = done.request_counts
    assert (counts.processing, counts.succeeded, counts.errored, counts.canceled, counts.expired) == (0, 2, 2, 0, 0)

    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["ok-1"].type == "succeeded" and results["ok-2"].type == "succeeded"
    assert results["too-long"].type == "errored"
    assert results["too-long"].error.error.type == "invalid_request_error"
    assert "max_tokens" in results["too-long"].error.error.message
    assert results["fault"].type == "errored" and results["fault"].error.error.type == "api_error"

    bill = quick.billing()["batch"]["models"]["claude-haiku-4-5"]
    messages = [results[c].message for c in ("ok-1", "ok-2")]
    assert bill["requests"] == 2
    assert bill["input_tokens"] == sum(m.usage.input_tokens for m in messages)
    assert bill["output_tokens"] == sum(m.usage.output_tokens for m in messages)
    assert _batch_cost(bill, "claude-haiku-4-5", batch=True) * 2 == _batch_cost(bill, "claude-haiku-4-5", batch=False)
    assert quick.billing()["models"] == {}


def test_anthropic_prompt_cache_works_inside_a_batch(quick, long_text):
    quick.reset()
    client = quick.anthropic()
    system = [{"type": "text", "text": long_text(5000, "Batch cache. "), "cache_control": {"type": "ephemeral"}}]
    batch = client.messages.batches.create(requests=[_request(f"r{i}", f"Question {i}", system=system)
                                                     for i in range(2)])
    _ended(client, batch.id)
    usage = {r.custom_id: r.result.message.usage for r in client.messages.batches.results(batch.id)}
    assert usage["r0"].cache_creation_input_tokens > 0 and usage["r0"].cache_read_input_tokens == 0
    assert usage["r1"].cache_read_input_tokens == usage["r0"].cache_creation_input_tokens
    bill = quick.billing()["batch"]["models"]["claude-haiku-4-5"]
    assert bill["cache_read_tokens"] == usage["r1"].cache_read_input_tokens
    assert bill["cache_write_5m_tokens"] == usage["r0"].cache_creation_input_tokens


@pytest.mark.parametrize("body, message", [
    ({"requests": [_request("a")], "metadata": {"k": "v"}}, "metadata: Extra inputs are not permitted"),
    ({"requests": []}, "at least 1 item"),
    ({"requests": [_request("not ok!")]}, "requests.0.custom_id: String should match pattern"),
    ({"requests": [_request("a"), _request("a")]}, "requests.1.custom_id: Duplicate custom_id"),
    ({"requests": [{**_request("a"), "extra": 1}]}, "requests.0.extra: Extra inputs are not permitted"),
    ({}, "requests: Field required"),
])
def test_anthropic_create_is_validated_strictly(quick, body, message):
    response = quick.http.post("/v1/messages/batches", json=body,
                               headers={"x-api-key": "emulator-key", "anthropic-version": "2023-06-01"})
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


def test_anthropic_list_pages_with_after_and_before(quick):
    quick.reset()
    client = quick.anthropic()
    ids = [client.messages.batches.create(requests=[_request("a")]).id for _ in range(3)]
    first = client.messages.batches.list(limit=2)
    assert [b.id for b in first.data] == [ids[2], ids[1]] and first.has_more
    assert first.first_id == ids[2] and first.last_id == ids[1]
    assert [b.id for b in client.messages.batches.list(limit=2, after_id=ids[1]).data] == [ids[0]]
    assert [b.id for b in client.messages.batches.list(limit=2, before_id=ids[0]).data] == [ids[2], ids[1]]
    assert [b.id for b in client.messages.batches.list(limit=2)] == list(reversed(ids))


def test_anthropic_cancel_then_delete(slow):
    slow.reset()
    client = slow.anthropic()
    batch = client.messages.batches.create(requests=[_request("a"), _request("b")])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(batch.id)  # not ended yet
    early = slow.http.get(f"/v1/messages/batches/{batch.id}/results", headers={"x-api-key": "emulator-key"})
    assert early.status_code == 400 and early.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        client.messages.batches.results(batch.id)  # the SDK itself waits for results_url
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at
    done = _ended(client, batch.id)
    assert done.request_counts.canceled == 2
    assert [r.result.type for r in client.messages.batches.results(batch.id)] == ["canceled", "canceled"]
    assert slow.billing()["batch"]["models"] == {}
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def test_anthropic_requests_past_the_window_expire(expiring):
    expiring.reset()
    client = expiring.anthropic()
    batch = client.messages.batches.create(requests=[_request(f"r{i}", f"Question {i}") for i in range(4)])
    done = _ended(client, batch.id)
    assert (done.request_counts.succeeded, done.request_counts.expired) == (2, 2)
    assert [r.result.type for r in client.messages.batches.results(batch.id)] == [
        "succeeded", "succeeded", "expired", "expired"]


def test_anthropic_batches_need_a_key(quick):
    with pytest.raises(anthropic.AuthenticationError):
        quick.anthropic(api_key="wrong").messages.batches.list()


def test_a_streaming_line_is_refused_in_its_result(quick):
    quick.reset()
    client = quick.anthropic()
    batch = client.messages.batches.create(requests=[_request("s", stream=True), _request("ok")])
    _ended(client, batch.id)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["ok"].type == "succeeded"
    assert results["s"].type == "errored" and results["s"].error.error.message.startswith("stream:")


def test_billing_runs_the_lines_that_are_due_without_the_batch_being_read(quick):
    quick.reset()
    client = quick.anthropic()
    client.messages.batches.create(requests=[_request("a"), _request("b")])
    time.sleep(0.4)  # past the batch's end (0.2 s): nobody has read the batch since it was created
    assert quick.billing()["batch"]["models"]["claude-haiku-4-5"]["requests"] == 2
