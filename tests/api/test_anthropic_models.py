"""`GET /v1/models` and `/v1/models/{id}` in Anthropic's shape for the anthropic SDK (it sends
`anthropic-version` and `x-api-key`), paged as Anthropic pages; OpenAI's shape for the rest."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest
from anthropic.types import ModelInfo

from tests.sdk_strict import strict
from thrifty.cli import localstack


@pytest.fixture
def ant(stack):
    with anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0) as c:
        yield c


def _served() -> list[str]:
    return sorted([*localstack.LOCAL_DEPLOYMENTS, "fast", "smart"])  # deployments and aliases, by name


def test_the_anthropic_sdk_lists_every_model_in_its_shape(ant):
    page = ant.models.list()
    assert [m.id for m in page] == _served()  # the SDK follows has_more / last_id over all pages
    first = ant.models.list(limit=3)
    assert [m.id for m in first.data] == _served()[:3] and first.has_more
    assert first.first_id == _served()[0] and first.last_id == _served()[2]
    assert all(m.type == "model" and m.display_name and m.created_at for m in first.data)


def test_each_model_object_is_strictly_the_sdks_type(stack, ant):
    raw = ant.models.with_raw_response.list(limit=1)
    for item in raw.json()["data"]:
        strict(ModelInfo, json.dumps(item))
    one = ant.models.with_raw_response.retrieve("claude-haiku-4-5")
    assert strict(ModelInfo, one.text()).id == "claude-haiku-4-5"


def test_after_and_before_id_page_like_anthropic(stack):
    headers = {"x-api-key": stack.key, "anthropic-version": "2023-06-01"}
    served = _served()
    after = httpx.get(f"{stack.url}/v1/models", params={"after_id": served[1], "limit": 2}, headers=headers).json()
    assert [m["id"] for m in after["data"]] == served[2:4] and after["has_more"] is True
    before = httpx.get(f"{stack.url}/v1/models", params={"before_id": served[3], "limit": 2}, headers=headers).json()
    assert [m["id"] for m in before["data"]] == served[1:3] and before["has_more"] is True
    last = httpx.get(f"{stack.url}/v1/models", params={"after_id": served[-2]}, headers=headers).json()
    assert [m["id"] for m in last["data"]] == served[-1:] and last["has_more"] is False


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"after_id": "nope"}])
def test_bad_paging_is_a_400_in_anthropic_shape(stack, params):
    r = httpx.get(f"{stack.url}/v1/models", params=params,
                  headers={"x-api-key": stack.key, "anthropic-version": "2023-06-01"})
    body = r.json()
    assert r.status_code == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


def test_a_bad_key_is_refused_in_anthropic_shape(stack):
    with anthropic.Anthropic(base_url=stack.url, api_key="nope", max_retries=0) as c:
        with pytest.raises(anthropic.AuthenticationError) as exc:
            c.models.list()
    assert exc.value.body["error"]["type"] == "authentication_error"


def test_an_unknown_model_is_a_404_in_anthropic_shape(ant):
    with pytest.raises(anthropic.NotFoundError) as exc:
        ant.models.retrieve("no-such-model")
    assert exc.value.body["type"] == "error"


def test_the_openai_sdk_still_gets_openais_shape(stack):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        models = c.models.list()
        assert [m.id for m in models] == _served() and all(m.object == "model" for m in models)
