"""Bad input and upstream failures: right status, right error shape, and a ledger row for every
call that reached the gateway with a valid key."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.ledger_util import wait_row


def post(stack, path, body=None, *, raw=None, key=None, headers=None):
    h = {"authorization": f"Bearer {key or stack.key}", "content-type": "application/json", **(headers or {})}
    return httpx.post(f"{stack.url}{path}", headers=h, content=raw, json=body, timeout=30)


def openai_error(r):
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    return err


def anthropic_error(r):
    body = r.json()
    assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}
    return body["error"]


def test_malformed_json(stack):
    r = post(stack, "/v1/chat/completions", raw=b'{"model": "gpt-4o",')
    assert r.status_code == 400 and openai_error(r)["type"] == "invalid_request_error"
    row = wait_row(stack.ledger_path, r.headers["x-thrifty-request-id"])
    assert row.status == 400 and row.error_type == "invalid_request"


def test_missing_and_unknown_model(stack):
    r = post(stack, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and openai_error(r)["param"] == "model"
    r = post(stack, "/v1/chat/completions", {"model": "gpt-99", "messages": [{"role": "user", "content": "x"}]})
    err = openai_error(r)
    assert r.status_code == 404 and err["code"] == "model_not_found" and "gpt-99" in err["message"]
    row = wait_row(stack.ledger_path, r.headers["x-thrifty-request-id"])
    assert row.requested_model == "gpt-99" and row.status == 404


def test_anthropic_errors_use_anthropic_shape(stack):
    r = post(stack, "/v1/messages", {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and anthropic_error(r)["type"] == "invalid_request_error"
    r = post(stack, "/v1/messages", {"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and anthropic_error(r)["type"] == "not_found_error"


def test_oversize_body(stack):
    big = b'{"model":"gpt-4o","messages":[{"role":"user","content":"' + b"x" * (9 * 1024 * 1024) + b'"}]}'
    r = post(stack, "/v1/chat/completions", raw=big)
    assert r.status_code == 413 and openai_error(r)["message"].startswith("request body")
    wait_row(stack.ledger_path, r.headers["x-thrifty-request-id"])


def test_wrong_key_is_refused_and_not_recorded(stack):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key="sk-wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    with anthropic.Anthropic(base_url=stack.url, api_key="sk-wrong", max_retries=0) as c:
        with pytest.raises(anthropic.AuthenticationError):
            c.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    r = post(stack, "/v1/chat/completions", {"model": "gpt-4o", "messages": []}, key="sk-wrong")
    assert r.status_code == 401
    from thrifty.ledger import RowFilter, SQLiteLedger

    import time
    time.sleep(0.3)
    assert not SQLiteLedger(str(stack.ledger_path)).rows(RowFilter(request_id=r.headers["x-thrifty-request-id"]))


@pytest.mark.parametrize("fault,status,exc", [("429", 429, openai.RateLimitError),
                                              ("500", 500, openai.InternalServerError),
                                              ("503", 503, openai.InternalServerError)])
def test_upstream_errors_openai_surface(stack, fault, status, exc):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        with pytest.raises(exc) as info:
            c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                                      extra_headers={"x-emulator-fault": fault})
    resp = info.value.response
    assert resp.status_code == status
    if status == 429:
        assert resp.headers.get("retry-after")
    row = wait_row(stack.ledger_path, resp.headers["x-thrifty-request-id"])
    assert row.status == status and row.error_type and row.cost_usd in (None, 0)


def test_upstream_error_translated_to_anthropic_shape(stack):
    with anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0) as c:
        with pytest.raises(anthropic.RateLimitError) as info:
            c.messages.create(model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}],
                              extra_headers={"x-emulator-fault": "429"})
    assert info.value.body["error"]["type"] == "rate_limit_error"


def test_upstream_timeout(stack):
    # The stack's providers time out after 3 s; the emulator is told to wait 10 s.
    r = post(stack, "/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
             headers={"x-emulator-fault": "timeout", "x-emulator-fault-delay": "10"})
    assert r.status_code == 504 and openai_error(r)["type"] == "timeout_error"
    row = wait_row(stack.ledger_path, r.headers["x-thrifty-request-id"])
    assert row.status == 504 and row.error_type == "timeout"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5"])
def test_dropped_stream_ends_with_an_error_event(stack, model):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        raw = c.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "x"}], stream=True,
            extra_headers={"x-emulator-fault": "drop"})
        with pytest.raises(openai.APIError):
            for _ in raw.parse():
                pass
    row = wait_row(stack.ledger_path, raw.headers["x-thrifty-request-id"])
    assert row.stream and row.status == 502 and row.error_type == "upstream" and row.cost_usd is None


def test_unknown_route_and_health(stack):
    assert httpx.get(f"{stack.url}/health").json() == {"status": "ok"}
    r = httpx.get(f"{stack.url}/v1/nothing-here")
    assert r.status_code == 404 and openai_error(r)
