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


# --- request validation: every bad field is a 4xx naming the field, never a 5xx -------------------

def nested(depth: int) -> bytes:
    """A chat request whose `metadata` holds arrays nested so the whole body is `depth` deep."""
    inner = depth - 2  # the body object and `metadata` itself
    return (b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"metadata":{"k":'
            + b"[" * inner + b"]" * inner + b"}}")


@pytest.mark.parametrize("depth", [129, 254, 300, 1000])
def test_json_nested_too_deep_is_400(stack, depth):
    r = post(stack, "/v1/chat/completions", raw=nested(depth))
    err = openai_error(r)
    assert r.status_code == 400 and err["code"] == "json_too_deep" and "128" in err["message"]
    row = wait_row(stack.ledger_path, r.headers["x-thrifty-request-id"])
    assert row.status == 400


def test_json_nested_to_the_limit_passes_the_gateway(stack):
    r = post(stack, "/v1/chat/completions", raw=nested(128))
    assert r.status_code < 500 and (r.status_code == 200 or openai_error(r)["code"] != "json_too_deep")


@pytest.mark.parametrize("value", ["yes", 1, 0, "true", [], {}])
def test_stream_must_be_a_boolean(stack, value):
    r = post(stack, "/v1/chat/completions", {"model": "gpt-4o-mini", "stream": value,
                                             "messages": [{"role": "user", "content": "x"}]})
    err = openai_error(r)
    assert r.status_code == 400 and err["param"] == "stream" and "boolean" in err["message"]
    row = wait_row(stack.ledger_path, r.headers["x-thrifty-request-id"])
    assert row.status == 400 and not row.retries and row.served_model in (None, "")


@pytest.mark.parametrize("field,value,param", [
    ("max_tokens", -5, "max_tokens"), ("max_tokens", "10", "max_tokens"), ("max_tokens", True, "max_tokens"),
    ("max_completion_tokens", 0, "max_completion_tokens"), ("n", 2.5, "n"), ("temperature", "hot", "temperature"),
    ("top_p", [1], "top_p"), ("model", 7, "model"), ("messages", "hi", "messages"), ("messages", [], "messages"),
    ("messages", ["hi"], "messages[0]"), ("messages", [{"role": "robot", "content": "x"}], "messages[0].role"),
    ("messages", [{"role": "user", "content": 5}], "messages[0].content"), ("tools", {"a": 1}, "tools"),
    ("stop", [1, 2], "stop"), ("user", 12, "user"), ("stream_options", "usage", "stream_options"),
])
def test_openai_invalid_fields_name_the_param(stack, field, value, param):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], field: value}
    r = post(stack, "/v1/chat/completions", body)
    assert r.status_code == 400 and openai_error(r)["param"] == param


@pytest.mark.parametrize("field,value,named", [
    ("max_tokens", -5, "max_tokens: expected an integer >= 1, but got -5"), ("max_tokens", "5", "max_tokens"),
    ("stream", "yes", "stream"), ("system", 3, "system"), ("temperature", "x", "temperature"),
    ("messages", [{"role": "system", "content": "x"}], "messages.0.role"), ("stop_sequences", "END", "stop_sequences"),
    ("metadata", "u1", "metadata"), ("top_k", -1, "top_k"),
])
def test_anthropic_invalid_fields_are_named_in_the_message(stack, field, value, named):
    body = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], field: value}
    r = post(stack, "/v1/messages", body)
    err = anthropic_error(r)
    assert r.status_code == 400 and err["type"] == "invalid_request_error" and named in err["message"]


def test_anthropic_missing_max_tokens_says_required(stack):
    r = post(stack, "/v1/messages", {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and "max_tokens: field required" in anthropic_error(r)["message"]


@pytest.mark.parametrize("raw", [b"[]", b'"x"', b"null", b"1", b"\xff\xfe"])
def test_a_body_that_is_not_an_object_is_400(stack, raw):
    r = post(stack, "/v1/messages", raw=raw)
    assert r.status_code == 400 and anthropic_error(r)


# --- the admin API: bad query parameters and bodies are 400, never 500 --------------------------

ADMIN_KEY = "sk-admin-bad-input"


@pytest.fixture(scope="module")
def admin_stack(tmp_path_factory):
    from tests.conftest import start_stack

    def edit(config):
        config["admin"] = {"key": ADMIN_KEY}

    s = start_stack(tmp_path_factory.mktemp("admin-bad"), edit=edit, timeout_s=3.0)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def admin(stack, method, path, **kw):
    return httpx.request(method, f"{stack.url}{path}", headers={"authorization": f"Bearer {ADMIN_KEY}"},
                         timeout=30, **kw)


@pytest.mark.parametrize("query,param", [
    ("scope=zzz", "scope"), ("", "scope"), ("scope=tenant", "value"), ("scope=global&bogus=1", "bogus"),
    ("scope=%ff", "scope"),
])
def test_admin_spend_query_is_validated(admin_stack, query, param):
    r = admin(admin_stack, "GET", f"/admin/spend?{query}")
    assert r.status_code == 400 and openai_error(r)["param"] == param


@pytest.mark.parametrize("query,param", [
    ("since=yesterday", "since"), ("until=nan", "until"), ("since=1e400", "since"), ("group_by=colour", "group_by"),
    ("limit=5", "limit"),
])
def test_admin_savings_query_is_validated(admin_stack, query, param):
    r = admin(admin_stack, "GET", f"/admin/savings?{query}")
    assert r.status_code == 400 and openai_error(r)["param"] == param


@pytest.mark.parametrize("raw", [b"[" * 200 + b"]" * 200, b"[1]", b"{", b'{"tenant": 5}'])
def test_admin_bodies_are_validated(admin_stack, raw):
    r = admin(admin_stack, "POST", "/admin/keys", content=raw)
    assert r.status_code == 400 and openai_error(r)
    r = admin(admin_stack, "PUT", "/admin/budgets/b1", content=raw)
    assert r.status_code == 400 and openai_error(r)


def test_admin_budget_with_wrong_types_is_400(admin_stack):
    r = admin(admin_stack, "PUT", "/admin/budgets/b1", json={"scope": "tenant", "limit_usd": "lots"})
    assert r.status_code == 400 and openai_error(r)["code"] == "invalid_budget"


@pytest.mark.parametrize("method,path", [("PUT", "/admin/budgets/"), ("DELETE", "/admin/budgets/"),
                                         ("DELETE", "/admin/keys/"), ("DELETE", "/admin/keys/%00"),
                                         ("PUT", "/admin/budgets/%ff%fe")])
def test_admin_odd_paths_are_4xx(admin_stack, method, path):
    r = admin(admin_stack, method, path, json={"scope": "global", "limit_usd": 1})
    assert 400 <= r.status_code < 500 and openai_error(r)
