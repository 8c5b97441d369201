"""Stored responses (`responses.store: true`): the official openai SDK's `responses.create`,
`.retrieve`, `.delete` and a conversation through `previous_response_id`, against `thrifty serve`
against `thrifty emulate`; tenant isolation; `store: false`; and storage off (the default)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from tests.conftest import delete_redis_prefix, start_stack
from tests.ledger_util import wait_row
from tests.sdk_strict import strict
from thrifty.cli import localstack

MODEL = "gpt-4o-mini"


def _storing(**responses):
    def edit(config: dict) -> None:
        config["responses"] = {"store": True, **responses}
    return edit


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("responses_store"), timeout_s=3.0, store_bodies=True, edit=_storing())
    yield s
    s.gateway.stop()
    s.emulator.stop()


def _client(stack, key: str = localstack.DEMO_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0)


@pytest.fixture
def client(stack):
    with _client(stack) as c:
        yield c


@pytest.fixture
def other(stack):
    with _client(stack, localstack.OTHER_KEY) as c:
        yield c


def test_a_created_response_is_retrieved_whole_then_deleted(stack, client, openai_spec):
    r = client.responses.create(model=MODEL, input="Name one prime number.", max_output_tokens=40)
    raw = client.responses.with_raw_response.retrieve(r.id)
    strict(Response, raw.content)
    openai_spec.validate("Response", json.loads(raw.content))  # OpenAI's OpenAPI spec, as getResponse answers
    got = raw.parse()
    assert got.id == r.id and got.output_text == r.output_text and got.usage == r.usage
    assert client.responses.delete(r.id) is None
    with pytest.raises(openai.NotFoundError) as exc:
        client.responses.retrieve(r.id)
    assert exc.value.status_code == 404 and r.id in exc.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)  # gone: a second delete is 404 too


def test_a_two_turn_conversation_sends_and_bills_the_whole_prompt(stack, client):
    first = client.responses.create(model=MODEL, instructions="Answer in one line.",
                                    input="Remember the word PELICAN-42.", max_output_tokens=40)
    raw = client.responses.with_raw_response.create(model=MODEL, previous_response_id=first.id,
                                                    input="Which word did I ask you to remember?",
                                                    max_output_tokens=40)
    strict(Response, raw.content)
    second = raw.parse()
    assert second.previous_response_id == first.id and second.id != first.id
    # Billed for the earlier turn (its input and its answer) plus the new question.
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    row = wait_row(stack.ledger_path, raw.headers["x-thrifty-request-id"])
    assert row.status == 200 and row.prompt_tokens + row.cached_tokens == second.usage.input_tokens
    sent = json.loads(row.request_body)  # what was served and paid for: the whole conversation
    assert "previous_response_id" not in sent and "instructions" not in sent  # not carried over (OpenAI)
    texts = json.dumps(sent["input"])
    assert "PELICAN-42" in texts and first.output_text[:20] in texts and "Which word" in texts
    # A third turn chains on the second: all three questions are in its prompt.
    third = client.responses.create(model=MODEL, previous_response_id=second.id, input="Thanks.")
    assert third.usage.input_tokens > second.usage.input_tokens + second.usage.output_tokens


def test_a_streamed_response_is_stored_and_chains(stack):
    with httpx.stream("POST", f"{stack.url}/v1/responses", timeout=30,
                      headers={"authorization": f"Bearer {stack.key}"},
                      json={"model": MODEL, "input": "Count to three.", "stream": True}) as r:
        assert r.status_code == 200
        frames = [f for f in r.read().decode().split("\n\n") if f]
    events = [json.loads(f.split("\ndata: ", 1)[1]) for f in frames]
    for f in frames:
        strict(ResponseStreamEvent, f.split("\ndata: ", 1)[1])
    done = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    with _client(stack) as c:
        assert c.responses.retrieve(done["id"]).output_text == "".join(
            p["text"] for item in done["output"] for p in item.get("content") or ())
        with c.responses.stream(model=MODEL, previous_response_id=done["id"], input="And on?") as s:
            final = s.get_final_response()
        assert final.previous_response_id == done["id"]
        assert final.usage.input_tokens > done["usage"]["input_tokens"]


def test_responses_are_visible_only_to_their_tenant(stack, client, other):
    r = client.responses.create(model=MODEL, input="A private question.")
    for call in (lambda: other.responses.retrieve(r.id), lambda: other.responses.delete(r.id)):
        with pytest.raises(openai.NotFoundError) as exc:
            call()
        assert exc.value.status_code == 404  # exactly as an id never made
    with pytest.raises(openai.BadRequestError) as exc:
        other.responses.create(model=MODEL, previous_response_id=r.id, input="Go on.")
    assert exc.value.code == "previous_response_not_found" and exc.value.param == "previous_response_id"
    assert client.responses.retrieve(r.id).id == r.id  # the other tenant's delete did not remove it


def test_store_false_is_honoured(stack, client):
    r = client.responses.create(model=MODEL, input="Do not keep this.", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(model=MODEL, previous_response_id=r.id, input="More.")
    assert exc.value.code == "previous_response_not_found"


def test_an_unknown_previous_response_is_a_recorded_400(stack):
    r = httpx.post(f"{stack.url}/v1/responses", headers={"authorization": f"Bearer {stack.key}"}, timeout=30,
                   json={"model": MODEL, "input": "hi", "previous_response_id": "resp_nope"})
    err = r.json()["error"]
    assert r.status_code == 400 and err["type"] == "invalid_request_error"
    assert err["code"] == "previous_response_not_found" and "resp_nope" in err["message"]
    row = wait_row(stack.ledger_path, r.headers["x-thrifty-request-id"])
    assert (row.status, row.error_type) == (400, "invalid_request")
    bad = httpx.post(f"{stack.url}/v1/responses", headers={"authorization": f"Bearer {stack.key}"}, timeout=30,
                     json={"model": MODEL, "input": "hi", "previous_response_id": 7})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "previous_response_id"
    no_key = httpx.post(f"{stack.url}/v1/responses", json={"model": MODEL, "input": "hi"}, timeout=30)
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"


def test_wrong_method_on_a_stored_response_is_405(stack):
    r = httpx.put(f"{stack.url}/v1/responses/resp_1", headers={"authorization": f"Bearer {stack.key}"})
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET"


def test_a_response_over_the_size_cap_is_answered_but_not_kept(tmp_path):
    s = start_stack(tmp_path, timeout_s=3.0, edit=_storing(max_response_bytes=1024))
    try:
        with _client(s) as c:
            small = c.responses.create(model=MODEL, input="Hi.", max_output_tokens=16)
            big = c.responses.create(model=MODEL, input="word " * 2000, max_output_tokens=16)
            assert big.output_text
            assert c.responses.retrieve(small.id).id == small.id
            with pytest.raises(openai.NotFoundError):
                c.responses.retrieve(big.id)
    finally:
        s.gateway.stop()
        s.emulator.stop()


def test_storage_off_by_default_says_how_to_turn_it_on(tmp_path):
    s = start_stack(tmp_path, timeout_s=3.0)
    try:
        with _client(s) as c:
            r = c.responses.create(model=MODEL, input="Hi.")
            with pytest.raises(openai.NotFoundError) as exc:
                c.responses.retrieve(r.id)
            assert "responses.store: true" in exc.value.message
            with pytest.raises(openai.NotFoundError):
                c.responses.delete(r.id)
            with pytest.raises(openai.BadRequestError) as exc:
                c.responses.create(model=MODEL, previous_response_id=r.id, input="More.")
            assert exc.value.param == "previous_response_id" and "responses.store: true" in exc.value.message
    finally:
        s.gateway.stop()
        s.emulator.stop()


def test_redis_backend_shares_responses_between_gateways(tmp_path, redis_url):
    prefix = f"thrifty-test-responses-{tmp_path.name}:"
    edit = _storing(backend="redis", redis_url=redis_url, prefix=prefix, ttl_s=60)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = start_stack(tmp_path / "a", timeout_s=3.0, edit=edit)
    b = start_stack(tmp_path / "b", timeout_s=3.0, edit=edit)
    try:
        with _client(a) as ca, _client(b) as cb:
            r = ca.responses.create(model=MODEL, input="Stored in Redis.")
            assert cb.responses.retrieve(r.id).output_text == r.output_text  # another replica sees it
            follow = cb.responses.create(model=MODEL, previous_response_id=r.id, input="And?")
            assert follow.previous_response_id == r.id
            cb.responses.delete(r.id)
            with pytest.raises(openai.NotFoundError):
                ca.responses.retrieve(r.id)
    finally:
        for s in (a, b):
            s.gateway.stop()
            s.emulator.stop()
        delete_redis_prefix(redis_url, prefix)


def test_a_down_redis_store_never_fails_the_answer(tmp_path):
    # Port 9 on loopback: nothing listens, so every Redis command fails at once.
    s = start_stack(tmp_path, timeout_s=3.0, edit=_storing(backend="redis", redis_url="redis://127.0.0.1:9/0"))
    try:
        with _client(s) as c:
            r = c.responses.create(model=MODEL, input="Answered though not kept.")
            assert r.output_text  # storing failed (logged); the answer is still good
            with pytest.raises(openai.APIStatusError) as exc:
                c.responses.retrieve(r.id)
            assert exc.value.status_code == 503 and exc.value.code == "response_store_unavailable"
            assert "127.0.0.1" not in exc.value.message  # where the store lives is not the client's to know
            with pytest.raises(openai.APIStatusError) as exc:
                c.responses.create(model=MODEL, previous_response_id=r.id, input="More.")
            assert exc.value.status_code == 503
    finally:
        s.gateway.stop()
        s.emulator.stop()
