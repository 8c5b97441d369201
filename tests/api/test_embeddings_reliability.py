"""Embeddings through the reliability policy and through Azure: the official openai SDK against
`thrifty serve` against `thrifty emulate`.

`x-emulator-fault: 503` reaches only the providers that forward it, so one deployment of a model
fails while another (an Azure deployment of the same model, which forwards no fault header) answers.
"""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import start_stack
from tests.ledger_util import wait_row
from thrifty.config import AZURE_API_VERSION, parse_config
from thrifty.providers.azure import AzureOpenAIProvider

MODEL = "text-embedding-3-small"
FAULT = {"x-emulator-fault": "503"}


def _azure(config: dict, name: str, api_version: str) -> None:
    config["providers"][name] = {"kind": "azure", "api_key": "emulator-key", "timeout_s": 5, "forward_headers": [],
                                 "base_url": config["providers"]["openai"]["base_url"].removesuffix("/v1"),
                                 "azure": {"api_version": api_version}}


def _edit(config: dict) -> None:
    _azure(config, "azure", AZURE_API_VERSION)
    _azure(config, "azure-v1", "v1")
    deps = config["deployments"]
    deps["azure-emb"] = {"provider": "azure", "model": MODEL, "tier": "embedding", "price_provider": "azure"}
    deps["azure-v1-emb"] = {"provider": "azure-v1", "model": MODEL, "tier": "embedding", "price_provider": "azure"}
    config["reliability"] = {"backoff_base_s": 0.01, "backoff_max_s": 0.02,
                             "breaker": {"min_calls": 50}}  # the breaker is tested on its own below


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("emb_reliability"), edit=_edit, timeout_s=5.0)
    yield s
    s.gateway.stop()
    s.emulator.stop()


@pytest.fixture
def client(stack):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        yield c


def _faults(stack, model: str) -> int:
    return stack.billing()["models"].get(model, {}).get("faults", 0)


@pytest.mark.parametrize("deployment", ["azure-emb", "azure-v1-emb"])
def test_azure_deployments_serve_embeddings(stack, client, deployment):
    model = MODEL
    raw = client.embeddings.with_raw_response.create(model=deployment, input=["first text", "second text"])
    r = raw.parse()
    assert [d.index for d in r.data] == [0, 1] and r.model == model and r.usage.prompt_tokens > 0
    direct = httpx.post(f"{stack.emulator.url}/v1/embeddings", headers={"authorization": "Bearer emulator-key"},
                        json={"model": model, "input": ["first text", "second text"]}).json()
    for got, want in zip(r.data, direct["data"]):  # the same model's vectors (the SDK asks for float32 base64)
        assert got.embedding == pytest.approx(want["embedding"], abs=1e-6)
    row = wait_row(stack.ledger_path, raw.headers["x-thrifty-request-id"])
    assert (row.status, row.provider, row.served_model) == (200, deployment.removesuffix("-emb"), model)
    assert row.cost_usd is not None and row.cost_usd > 0


def test_a_failing_deployment_is_retried_then_moved_to_the_same_model_elsewhere(stack, client):
    before = _faults(stack, MODEL)
    raw = client.embeddings.with_raw_response.create(model=MODEL, input="retry me", extra_headers=FAULT)
    assert raw.parse().data[0].embedding
    assert raw.headers["x-thrifty-model"] == MODEL
    row = wait_row(stack.ledger_path, raw.headers["x-thrifty-request-id"])
    # The OpenAI deployment failed twice (the first attempt and its one same-deployment retry),
    # then an Azure deployment of the same model answered (of two equally priced, the first by name).
    assert _faults(stack, MODEL) - before == 2
    assert (row.status, row.provider, row.retries) == (200, "azure", 2)


def test_no_move_to_another_model(stack, client):
    # text-embedding-3-large has no other deployment here: retried on its own, then the error.
    before = _faults(stack, "text-embedding-3-large")
    with pytest.raises(openai.APIStatusError) as exc:
        client.embeddings.create(model="text-embedding-3-large", input="no peer", extra_headers=FAULT)
    assert exc.value.status_code == 503
    assert _faults(stack, "text-embedding-3-large") - before == 3  # 1 + max_retries (2), all on it


def test_a_refusal_is_not_retried(stack, client):
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input="x", dimensions=99999)  # the provider's 400
    before = _faults(stack, MODEL)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input="x", extra_headers={"x-emulator-fault": "bogus"})
    assert _faults(stack, MODEL) == before


def test_reliability_off_is_one_attempt(tmp_path):
    def edit(config: dict) -> None:
        _edit(config)
        config["reliability"] = {"enabled": False}

    s = start_stack(tmp_path, edit=edit, timeout_s=5.0)
    try:
        with openai.OpenAI(base_url=f"{s.url}/v1", api_key=s.key, max_retries=0) as c:
            with pytest.raises(openai.APIStatusError) as exc:
                c.embeddings.create(model=MODEL, input="once", extra_headers=FAULT)
        assert exc.value.status_code == 503 and _faults(s, MODEL) == 1
    finally:
        s.gateway.stop()
        s.emulator.stop()


def test_an_open_breaker_sends_calls_to_the_same_model_elsewhere(tmp_path):
    def edit(config: dict) -> None:
        _edit(config)
        config["reliability"] = {"backoff_base_s": 0.01, "backoff_max_s": 0.02, "max_retries": 1,
                                 "same_deployment_retries": 0,
                                 "breaker": {"min_calls": 2, "failure_rate": 0.5, "cooldown_s": 600}}

    s = start_stack(tmp_path, edit=edit, timeout_s=5.0)
    try:
        with openai.OpenAI(base_url=f"{s.url}/v1", api_key=s.key, max_retries=0) as c:
            for text in ("one", "two"):
                c.embeddings.create(model=MODEL, input=text, extra_headers=FAULT)  # fails over to azure
            assert _faults(s, MODEL) == 2
            raw = c.embeddings.with_raw_response.create(model=MODEL, input="three")  # no fault asked for
            row = wait_row(s.ledger_path, raw.headers["x-thrifty-request-id"])
        # The breaker of the OpenAI deployment is open: the call went straight to Azure.
        assert (row.provider, row.retries) == ("azure", 0)
    finally:
        s.gateway.stop()
        s.emulator.stop()


def test_azure_embeddings_urls():
    config = parse_config({"providers": {"az": {"kind": "azure", "base_url": "https://r.openai.azure.com",
                                                "azure": {"deployments": {MODEL: "emb-prod"}}},
                                         "v1": {"kind": "azure", "base_url": "https://r.openai.azure.com/openai",
                                                "azure": {"api_version": "v1"}}},
                           "deployments": {"e": {"provider": "az", "model": MODEL}},
                           "keys": {"sk-1": {"tenant": "t"}}})
    az = AzureOpenAIProvider("az", config.providers["az"])
    assert az.endpoint("/embeddings", model=MODEL) == \
        f"https://r.openai.azure.com/openai/deployments/emb-prod/embeddings?api-version={AZURE_API_VERSION}"
    v1 = AzureOpenAIProvider("v1", config.providers["v1"])
    assert v1.endpoint("/embeddings", model=MODEL) == "https://r.openai.azure.com/openai/v1/embeddings"


def test_the_emulator_speaks_azures_embeddings_urls(stack):
    with openai.AzureOpenAI(azure_endpoint=stack.emulator.url, api_key="emulator-key",
                            api_version=AZURE_API_VERSION, max_retries=0) as azure:
        r = azure.embeddings.create(model=MODEL, input="hello")  # the SDK puts it in the deployment URL
        assert len(r.data[0].embedding) == 1536 and r.model == MODEL
        with pytest.raises(openai.NotFoundError):
            azure.embeddings.create(model="no-such-deployment", input="hello")
    url = f"{stack.emulator.url}/openai/deployments/{MODEL}/embeddings"
    no_version = httpx.post(url, headers={"api-key": "emulator-key"}, json={"input": "hi"})
    assert (no_version.status_code, no_version.json()["error"]["code"]) == (404, "404")
    bearer = httpx.post(url, params={"api-version": AZURE_API_VERSION}, json={"input": "hi"},
                        headers={"authorization": "Bearer emulator-key"})
    assert bearer.status_code == 401  # a deployment URL wants the key in api-key
    with openai.OpenAI(base_url=f"{stack.emulator.url}/openai/v1/", api_key="emulator-key", max_retries=0) as v1:
        assert v1.embeddings.create(model=MODEL, input="hello").data[0].embedding
