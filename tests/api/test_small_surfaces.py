"""One model by id, Anthropic's count_tokens and 405 on a wrong method, through the official SDKs."""

from __future__ import annotations

import json
import urllib.request

import anthropic
import httpx
import openai
import pytest

from tests.ledger_util import wait_row
from thrifty.ledger import RowFilter, SQLiteLedger

MESSAGES = [{"role": "user", "content": "How many tokens is this question, roughly speaking?"}]


@pytest.fixture
def oai(stack):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        yield c


@pytest.fixture
def ant(stack):
    with anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0) as c:
        yield c


def test_openai_models_retrieve(oai):
    m = oai.models.retrieve("gpt-4o-mini")
    assert m.id == "gpt-4o-mini" and m.object == "model" and m.owned_by == "thrifty:openai"
    assert oai.models.retrieve("smart").id == "smart"  # aliases too
    with pytest.raises(openai.NotFoundError) as info:
        oai.models.retrieve("no-such-model")
    assert info.value.body["code"] == "model_not_found"


def test_anthropic_models_retrieve(ant):
    m = ant.models.retrieve("claude-sonnet-4-5")
    assert m.type == "model" and m.id == "claude-sonnet-4-5" and m.display_name and m.created_at
    with pytest.raises(anthropic.NotFoundError) as info:
        ant.models.retrieve("no-such-model")
    assert info.value.body["error"]["type"] == "not_found_error"


def test_models_retrieve_needs_a_valid_key(stack):
    r = httpx.get(f"{stack.url}/v1/models/gpt-4o", headers={"authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_count_tokens_on_an_anthropic_provider_is_the_providers_count(stack, ant):
    raw = ant.messages.with_raw_response.count_tokens(model="claude-haiku-4-5", messages=MESSAGES,
                                                      system="Be brief.")
    counted = raw.parse()
    assert raw.headers["x-thrifty-token-count"] == "provider"
    # The emulator's own count of the same request, asked directly.
    req = urllib.request.Request(f"{stack.emulator.url}/v1/messages/count_tokens", method="POST",
                                 data=json.dumps({"model": "claude-haiku-4-5", "messages": MESSAGES,
                                                  "system": "Be brief."}).encode(),
                                 headers={"x-api-key": "emulator-key", "anthropic-version": "2023-06-01",
                                          "content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        assert counted.input_tokens == json.load(r)["input_tokens"] > 0


def test_count_tokens_on_an_openai_provider_is_counted_locally(ant):
    raw = ant.messages.with_raw_response.count_tokens(model="gpt-4o-mini", messages=MESSAGES)
    short = raw.parse().input_tokens
    assert raw.headers["x-thrifty-token-count"] == "local"
    longer = ant.messages.count_tokens(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": MESSAGES[0]["content"] * 10}])
    assert 0 < short < longer.input_tokens


def test_count_tokens_is_not_recorded(stack, ant):
    raw = ant.messages.with_raw_response.count_tokens(model="claude-haiku-4-5", messages=MESSAGES)
    rid = raw.headers["x-thrifty-request-id"]
    later = ant.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=20, messages=MESSAGES)
    wait_row(stack.ledger_path, later.headers["x-thrifty-request-id"])  # rows are written in order
    assert SQLiteLedger(str(stack.ledger_path)).rows(RowFilter(request_ids=(rid,))) == []


def test_count_tokens_bad_input_in_anthropic_shape(stack, ant):
    with pytest.raises(anthropic.BadRequestError) as info:
        ant.messages.count_tokens(model="claude-haiku-4-5", messages="not a list")  # type: ignore[arg-type]
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError):
        ant.messages.count_tokens(model="no-such-model", messages=MESSAGES)
    with (pytest.raises(anthropic.AuthenticationError),
          anthropic.Anthropic(base_url=stack.url, api_key="nope", max_retries=0) as bad):
        bad.messages.count_tokens(model="claude-haiku-4-5", messages=MESSAGES)


@pytest.mark.parametrize("method, path, allow, shape", [
    ("GET", "/v1/chat/completions", "POST", "openai"),
    ("PUT", "/v1/embeddings", "POST", "openai"),
    ("POST", "/v1/models", "GET", "openai"),
    ("DELETE", "/v1/models/gpt-4o", "GET", "openai"),
    ("GET", "/v1/messages", "POST", "anthropic"),
    ("GET", "/v1/messages/count_tokens", "POST", "anthropic"),
])
def test_wrong_method_is_405_with_allow(stack, method, path, allow, shape):
    r = httpx.request(method, f"{stack.url}{path}", headers={"authorization": f"Bearer {stack.key}"})
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    body = r.json()
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    else:
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "method_not_allowed"


def test_unknown_path_is_still_404(stack):
    r = httpx.get(f"{stack.url}/v1/no-such-thing", headers={"authorization": f"Bearer {stack.key}"})
    assert r.status_code == 404


def test_openai_sdk_sees_405_as_an_error(oai):
    with pytest.raises(openai.APIStatusError) as info:
        oai.get("/chat/completions", cast_to=object)
    assert info.value.status_code == 405
