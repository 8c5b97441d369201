"""Azure OpenAI as a provider: a gateway with `kind: azure` providers in front of the emulator's
Azure URLs, called through the official openai SDK (a plain OpenAI client to the gateway)."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import openai
import pytest

from tests.conftest import start_stack
from tests.ledger_util import wait_row
from thrifty.cli import localstack
from thrifty.config import AZURE_API_VERSION, parse_config
from thrifty.errors import ConfigError
from thrifty.pricing import PriceBook
from thrifty.providers.azure import AzureOpenAIProvider
from thrifty_emulator.azure import FILTER_MARKER

# gateway deployment -> (provider, model priced as, the emulator model that bills it)
AZURE = {
    "azure-gpt-4o": ("azure", "gpt-4o", "gpt-4o"),  # Azure deployment named after the snapshot
    "azure-v1-mini": ("azure-v1", "gpt-4o-mini", "gpt-4o-mini"),  # the v1 API form
}


def _add_azure(config: dict) -> None:
    def provider(api_key: str, **azure) -> dict:
        return {"kind": "azure", "base_url": config["providers"]["openai"]["base_url"].removesuffix("/v1"),
                "api_key": api_key, "timeout_s": 10, "azure": azure}

    config["providers"]["azure"] = provider("emulator-key", api_version="2024-10-21",
                                            deployments={"gpt-4o": "gpt-4o-2024-08-06"})
    config["providers"]["azure-v1"] = provider("emulator-key", api_version="v1")
    config["providers"]["azure-wrong-key"] = provider("not-the-emulator-key")
    for name, (prov, model, _) in AZURE.items():
        config["deployments"][name] = {"provider": prov, "model": model, "price_provider": "azure"}
    config["deployments"]["azure-wrong-key"] = {"provider": "azure-wrong-key", "model": "gpt-4o",
                                                "price_provider": "azure"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("azure"), edit=_add_azure, timeout_s=5.0)
    yield s
    s.gateway.stop()
    s.emulator.stop()


@pytest.fixture
def client(stack):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        yield c


def _billing(stack) -> dict:
    return stack.billing()["models"]


def _invoiced(stack, before: dict, emulator_model: str) -> tuple[dict, Decimal]:
    after = _billing(stack)[emulator_model]
    old = before.get(emulator_model, {})
    delta = {k: v - old.get(k, 0) for k, v in after.items() if isinstance(v, int)}
    card = PriceBook().card(emulator_model, "azure")
    assert card is not None and card.provider == "azure"
    from thrifty.contract.usage import Usage

    usage = Usage(input_tokens=delta["input_tokens"], cache_read_tokens=delta["cache_read_tokens"],
                  output_tokens=delta["output_tokens"], reasoning_tokens=delta["reasoning_tokens"])
    return delta, localstack.linear_cost(card, usage)


@pytest.mark.parametrize("deployment", sorted(AZURE))
def test_whole_answer_through_azure_is_priced_as_invoiced(stack, client, deployment):
    emulator_model = AZURE[deployment][2]
    before = _billing(stack)
    raw = client.chat.completions.with_raw_response.create(
        model=deployment, max_tokens=40, messages=[{"role": "user", "content": "What does a gateway do?"}])
    r = raw.parse()
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")
    assert r.model.startswith(emulator_model)  # Azure names the model behind the deployment
    row = wait_row(stack.ledger_path, raw.headers["x-thrifty-request-id"])
    assert (row.status, row.provider, row.served_model) == (200, AZURE[deployment][0], emulator_model)
    assert row.completion_tokens == r.usage.completion_tokens > 0
    delta, invoice = _invoiced(stack, before, emulator_model)
    assert delta["requests"] == 1
    assert (delta["input_tokens"], delta["output_tokens"]) == (row.prompt_tokens, row.completion_tokens)
    assert row.cost_usd == Decimal(raw.headers["x-thrifty-cost-usd"]) > 0
    assert row.cost_usd == invoice, (row.cost_usd, invoice)


@pytest.mark.parametrize("deployment", sorted(AZURE))
def test_stream_through_azure_is_priced_as_invoiced(stack, client, deployment):
    emulator_model = AZURE[deployment][2]
    before = _billing(stack)
    with client.chat.completions.with_streaming_response.create(
            model=deployment, max_tokens=40, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Tell me a short story"}]) as resp:
        rid = resp.headers["x-thrifty-request-id"]
        chunks = list(resp.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = next(c.usage for c in chunks if c.usage is not None)
    assert text and finishes in (["stop"], ["length"])
    row = wait_row(stack.ledger_path, rid)
    assert (row.status, row.stream, row.completion_tokens) == (200, True, usage.completion_tokens)
    delta, invoice = _invoiced(stack, before, emulator_model)
    assert delta["requests"] == 1 and delta["output_tokens"] == row.completion_tokens
    assert row.cost_usd == invoice > 0, (row.cost_usd, invoice)


@pytest.mark.parametrize("stream", [False, True])
def test_content_filter_finish_reason_reaches_the_client(stack, client, stream):
    messages = [{"role": "user", "content": f"Describe it {FILTER_MARKER}"}]
    if stream:
        chunks = list(client.chat.completions.create(model="azure-gpt-4o", max_tokens=30, stream=True,
                                                     messages=messages))
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["content_filter"]
    else:
        r = client.chat.completions.create(model="azure-gpt-4o", max_tokens=30, messages=messages)
        assert r.choices[0].finish_reason == "content_filter"
        assert r.choices[0].model_extra["content_filter_results"]["violence"]["filtered"] is True


def test_anthropic_clients_reach_azure_deployments_too(stack):
    import anthropic

    with anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0) as c:
        ok = c.messages.create(model="azure-gpt-4o", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
        filtered = c.messages.create(model="azure-gpt-4o", max_tokens=20,
                                     messages=[{"role": "user", "content": f"hi {FILTER_MARKER}"}])
    assert ok.content[0].text and ok.stop_reason in ("end_turn", "max_tokens")
    assert filtered.stop_reason == "refusal"  # Azure's content_filter, in Anthropic's words


def test_a_key_azure_refuses_is_the_gateways_502(stack, client):
    before = _billing(stack)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="azure-wrong-key", max_tokens=10,
                                       messages=[{"role": "user", "content": "hi"}])
    err = info.value
    assert err.status_code == 502
    assert err.body["code"] == "upstream_credentials_refused"
    assert "not-the-emulator-key" not in json.dumps(err.body)  # the gateway's key never reaches clients
    assert _billing(stack) == before  # refused before anything ran


def test_the_emulator_speaks_azures_url_form(stack):
    url = f"{stack.emulator.url}/openai/deployments/gpt-4o/chat/completions"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    ok = httpx.post(url, params={"api-version": AZURE_API_VERSION}, headers={"api-key": "emulator-key"}, json=body)
    assert ok.status_code == 200 and ok.json()["prompt_filter_results"][0]["prompt_index"] == 0
    no_version = httpx.post(url, headers={"api-key": "emulator-key"}, json=body)
    assert (no_version.status_code, no_version.json()) == (404, {"error": {"code": "404",
                                                                           "message": "Resource not found"}})
    # The right key, sent OpenAI's way: a deployment URL wants it in api-key.
    bearer_only_openai_style = httpx.post(url, params={"api-version": AZURE_API_VERSION}, json=body,
                                          headers={"authorization": "Bearer emulator-key"})
    assert bearer_only_openai_style.status_code == 401
    assert bearer_only_openai_style.json()["error"]["code"] == "401"
    unknown = httpx.post(url.replace("gpt-4o", "no-such-deployment"), params={"api-version": AZURE_API_VERSION},
                         headers={"api-key": "emulator-key"}, json=body)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "DeploymentNotFound")


def test_the_official_azure_clients_talk_to_the_emulator(stack):
    """The emulator's Azure forms as the openai SDK's own Azure client builds them (URL, api-key, api-version)."""
    messages = [{"role": "user", "content": "hi"}]
    with openai.AzureOpenAI(azure_endpoint=stack.emulator.url, api_key="emulator-key",
                            api_version=AZURE_API_VERSION, max_retries=0) as azure:
        r = azure.chat.completions.create(model="gpt-4o-mini", max_tokens=5, messages=messages)
        assert r.choices[0].message.content and r.model == "gpt-4o-mini-2024-07-18"
        chunks = list(azure.chat.completions.create(model="gpt-4o-mini", max_tokens=5, messages=messages,
                                                    stream=True))
        assert chunks[0].choices == [] and chunks[-1].choices[0].finish_reason in ("stop", "length")
        with pytest.raises(openai.NotFoundError):
            azure.chat.completions.create(model="no-such-deployment", max_tokens=5, messages=messages)
    with openai.AzureOpenAI(azure_endpoint=stack.emulator.url, api_key="wrong", api_version=AZURE_API_VERSION,
                            max_retries=0) as azure, pytest.raises(openai.AuthenticationError):
        azure.chat.completions.create(model="gpt-4o-mini", max_tokens=5, messages=messages)
    # The v1 API: a plain OpenAI client on {endpoint}/openai/v1/, the deployment as the model.
    with openai.OpenAI(base_url=f"{stack.emulator.url}/openai/v1/", api_key="emulator-key", max_retries=0) as v1:
        assert v1.chat.completions.create(model="gpt-4o", max_tokens=5, messages=messages).choices


# --- configuration ----------------------------------------------------------------------------

def _config(azure: dict | None = None, **provider) -> dict:
    p = {"kind": "azure", "base_url": "https://res.openai.azure.com", "api_key": "k", **provider}
    if azure is not None:
        p["azure"] = azure
    return {"providers": {"az": p}, "deployments": {"gpt-4o": {"provider": "az", "model": "gpt-4o"}},
            "keys": {"sk-1": {"tenant": "t"}}}


@pytest.mark.parametrize("version", [None, ""])
def test_a_missing_api_version_is_a_config_error(version):
    with pytest.raises(ConfigError) as info:
        parse_config(_config({"api_version": version}), "thrifty.yaml")
    msg = str(info.value)
    assert "providers.az.azure.api_version" in msg and "is required" in msg and AZURE_API_VERSION in msg


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"providers\.az\.azure\.api_version.*not an Azure OpenAI API version"):
        parse_config(_config({"api_version": "latest-and-greatest"}))
    bad = _config()
    del bad["providers"]["az"]["base_url"]
    with pytest.raises(ConfigError, match=r"providers\.az\.base_url"):
        parse_config(bad)
    with pytest.raises(ConfigError, match=r"providers\.az.*azure: only for kind: azure"):
        parse_config(_config({"api_version": "v1"}, kind="openai"))


def test_urls_auth_and_the_documented_default():
    config = parse_config(_config({"deployments": {"gpt-4o": "prod-4o"}}))
    assert config.providers["az"].azure.api_version == AZURE_API_VERSION == "2024-10-21"
    p = AzureOpenAIProvider("az", config.providers["az"])
    assert p.auth_headers() == {"api-key": "k"}
    assert p.url_for({"model": "gpt-4o"}) == ("https://res.openai.azure.com/openai/deployments/prod-4o/"
                                              "chat/completions?api-version=2024-10-21")
    other = p.url_for({"model": "gpt-4o-mini"})  # not listed: an Azure deployment of the model's name
    assert other.startswith("https://res.openai.azure.com/openai/deployments/gpt-4o-mini/")
    v1_config = _config({"api_version": "v1", "deployments": {"gpt-4o": "prod-4o"}},
                        base_url="https://r.openai.azure.com/openai/")
    v1 = AzureOpenAIProvider("az", parse_config(v1_config).providers["az"])
    assert v1.url_for({"model": "gpt-4o"}) == "https://r.openai.azure.com/openai/v1/chat/completions"
    assert v1._for_azure({"model": "gpt-4o", "n": 1}) == {"model": "prod-4o", "n": 1}  # v1: the body names it
    assert p._for_azure({"model": "gpt-4o"}) == {"model": "gpt-4o"}  # dated: the URL does
    defaults = AzureOpenAIProvider("az", parse_config(_config()).providers["az"])  # no azure: block at all
    assert defaults.url_for({"model": "x"}).endswith("/openai/deployments/x/chat/completions?api-version=2024-10-21")
