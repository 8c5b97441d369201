"""Vertex AI as a provider: Gemini (`kind: vertex`) and Claude (`kind: vertex_anthropic`) in front of
the emulator's Vertex model URLs, called through the official openai and anthropic SDKs; access
tokens static or minted from a service account key against the emulator's token endpoint."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import start_stack
from tests.ledger_util import wait_row
from thrifty.cli import localstack
from thrifty.config import ProviderConfig, VertexOptions, parse_config
from thrifty.contract.usage import Usage
from thrifty.errors import ConfigError
from thrifty.pricing import PriceBook
from thrifty.providers.vertex import AccessToken, VertexAnthropicProvider, VertexGeminiProvider

PROJECT = "thrifty-test"
FLASH = "gemini-2.5-flash"
HAIKU = "claude-haiku-4-5@20251001"  # Vertex's id: the version after `@`
HAIKU_BILLED = "claude-haiku-4-5"  # the emulator bills by its model name
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


def _service_account(path: Path, token_uri: str, email: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({"type": "service_account", "project_id": PROJECT, "private_key_id": "k1",
                                "private_key": pem, "client_email": email, "client_id": "1",
                                "token_uri": token_uri}))
    return str(path)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vertex")

    def edit(config: dict) -> None:
        base = config["providers"]["openai"]["base_url"].removesuffix("/v1")
        sa = _service_account(tmp / "sa.json", f"{base}/token", f"gateway@{PROJECT}.iam.gserviceaccount.com")
        revoked = _service_account(tmp / "revoked.json", f"{base}/token", f"revoked@{PROJECT}.iam.gserviceaccount.com")

        def vertex(kind: str, location: str, **kw) -> dict:
            return {"kind": kind, "base_url": base, "timeout_s": 10,
                    "vertex": {"project": PROJECT, "location": location, **kw.pop("vertex", {})}, **kw}

        config["providers"].update({
            "vertex": vertex("vertex", "us-central1", api_key="emulator-key"),
            "vertex-claude": vertex("vertex_anthropic", "us-east5", api_key="emulator-key"),
            "vertex-sa": vertex("vertex_anthropic", "global", vertex={"credentials": sa}),
            "vertex-gemini-sa": vertex("vertex", "global", vertex={"credentials": sa}),
            "vertex-revoked": vertex("vertex", "global", vertex={"credentials": revoked}),
            "vertex-wrong-token": vertex("vertex_anthropic", "us-east5", api_key="not-the-token"),
        })
        deps = config["deployments"]
        deps[FLASH] = {"provider": "vertex", "model": FLASH, "price_provider": "google"}
        deps[HAIKU] = {"provider": "vertex-claude", "model": HAIKU, "price_provider": "google"}
        deps["claude-sa"] = {"provider": "vertex-sa", "model": HAIKU, "price_provider": "google"}
        deps["gemini-sa"] = {"provider": "vertex-gemini-sa", "model": FLASH, "price_provider": "google"}
        deps["gemini-revoked"] = {"provider": "vertex-revoked", "model": FLASH, "price_provider": "google"}
        deps["claude-wrong-token"] = {"provider": "vertex-wrong-token", "model": HAIKU, "price_provider": "google"}

    s = start_stack(tmp, edit=edit, timeout_s=5.0)
    yield s
    s.gateway.stop()
    s.emulator.stop()


@pytest.fixture
def client(stack):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        yield c


@pytest.fixture
def claude(stack):
    with anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0) as c:
        yield c


def _billing(stack) -> dict:
    return stack.billing()["models"]


def _invoiced(stack, before: dict, billed_as: str, model: str) -> tuple[dict, Decimal]:
    """What the emulator billed since `before`, and its price on genai-prices' Vertex (google) card."""
    after, old = _billing(stack)[billed_as], before.get(billed_as, {})
    delta = {k: v - old.get(k, 0) for k, v in after.items() if isinstance(v, int)}
    card = PriceBook().card(model, "google")
    assert card is not None and card.provider == "google"
    usage = Usage(input_tokens=delta["input_tokens"], cache_read_tokens=delta["cache_read_tokens"],
                  cache_write_5m_tokens=delta["cache_write_5m_tokens"],
                  cache_write_1h_tokens=delta["cache_write_1h_tokens"],
                  output_tokens=delta["output_tokens"], reasoning_tokens=delta["reasoning_tokens"])
    return delta, localstack.linear_cost(card, usage)


# --- Gemini on Vertex -------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_gemini_on_vertex_is_priced_as_invoiced(stack, client, stream):
    before = _billing(stack)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What does a gateway do?"}]
    if stream:
        with client.chat.completions.with_streaming_response.create(
                model=FLASH, max_tokens=4000, messages=messages, stream=True,
                stream_options={"include_usage": True}) as resp:
            rid = resp.headers["x-thrifty-request-id"]
            chunks = list(resp.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        raw = client.chat.completions.with_raw_response.create(model=FLASH, max_tokens=4000, messages=messages)
        rid, text = raw.headers["x-thrifty-request-id"], raw.parse().choices[0].message.content
    assert text
    row = wait_row(stack.ledger_path, rid)
    assert (row.status, row.provider, row.served_model, row.stream) == (200, "vertex", FLASH, stream)
    delta, invoice = _invoiced(stack, before, FLASH, FLASH)
    assert delta["requests"] == 1 and delta["reasoning_tokens"] > 0  # 2.5 Flash thinks, billed as output
    assert (delta["input_tokens"], delta["output_tokens"]) == (row.prompt_tokens, row.completion_tokens)
    assert row.cost_usd == invoice > 0, (row.cost_usd, invoice)


def test_gemini_on_vertex_tool_call_round_trip(stack, client):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    r = client.chat.completions.create(model=FLASH, max_tokens=4000, messages=messages, tools=[WEATHER],
                                       tool_choice="required")
    assert r.choices[0].finish_reason == "tool_calls"
    tc = r.choices[0].message.tool_calls[0]
    assert tc.function.name == "get_weather" and "city" in json.loads(tc.function.arguments)
    messages += [r.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": tc.id, "content": '{"temp_c": 18}'}]
    r2 = client.chat.completions.create(model=FLASH, max_tokens=4000, tools=[WEATHER], messages=messages)
    assert r2.choices[0].message.content and r2.choices[0].finish_reason in ("stop", "length")


# --- Claude on Vertex -------------------------------------------------------------------------

def test_claude_on_vertex_is_priced_as_invoiced_on_the_vertex_card(stack, claude):
    before = _billing(stack)
    raw = claude.messages.with_raw_response.create(model=HAIKU, max_tokens=300, system="Be brief.",
                                                   messages=[{"role": "user", "content": "What does a gateway do?"}])
    m = raw.parse()
    assert m.content[0].text and m.stop_reason in ("end_turn", "max_tokens")
    assert m.model == "claude-haiku-4-5-20251001"  # Vertex answers with the dated id
    row = wait_row(stack.ledger_path, raw.headers["x-thrifty-request-id"])
    assert (row.status, row.provider, row.served_model) == (200, "vertex-claude", HAIKU)
    delta, invoice = _invoiced(stack, before, HAIKU_BILLED, HAIKU)
    assert delta["requests"] == 1 and delta["output_tokens"] == m.usage.output_tokens
    assert row.cost_usd == Decimal(raw.headers["x-thrifty-cost-usd"]) == invoice > 0, (row.cost_usd, invoice)


def test_claude_on_vertex_prompt_caching_is_priced_as_invoiced(stack, claude):
    """Vertex caches Claude prompts as Anthropic does; the writes and reads are priced on the Vertex card."""
    system = [{"type": "text", "text": " ".join(f"clause {i} of the policy." for i in range(1500)),
               "cache_control": {"type": "ephemeral"}}]
    before = _billing(stack)
    usages, rids = [], []
    for _ in range(2):
        raw = claude.messages.with_raw_response.create(model=HAIKU, max_tokens=100, system=system,
                                                       messages=[{"role": "user", "content": "Summarise it."}])
        usages.append(raw.parse().usage)
        rids.append(raw.headers["x-thrifty-request-id"])
    assert usages[0].cache_creation_input_tokens > 4096 and usages[1].cache_read_input_tokens > 4096
    delta, invoice = _invoiced(stack, before, HAIKU_BILLED, HAIKU)
    assert delta["cache_write_5m_tokens"] == usages[0].cache_creation_input_tokens
    assert delta["cache_read_tokens"] == usages[1].cache_read_input_tokens
    assert sum(wait_row(stack.ledger_path, rid).cost_usd for rid in rids) == invoice > 0


def test_claude_on_vertex_streams_with_tools(stack, claude):
    before = _billing(stack)
    tool = {"name": "get_weather", "description": "Weather in a city",
            "input_schema": WEATHER["function"]["parameters"]}
    with claude.messages.stream(model=HAIKU, max_tokens=300, tools=[tool], tool_choice={"type": "any"},
                                messages=[{"role": "user", "content": "Weather in Paris?"}]) as s:
        final = s.get_final_message()
        rid = s.response.headers["x-thrifty-request-id"]
    use = next(b for b in final.content if b.type == "tool_use")
    assert final.stop_reason == "tool_use" and use.name == "get_weather" and "city" in use.input
    row = wait_row(stack.ledger_path, rid)
    delta, invoice = _invoiced(stack, before, HAIKU_BILLED, HAIKU)
    assert (row.stream, row.completion_tokens, delta["output_tokens"]) == (True, final.usage.output_tokens,
                                                                           final.usage.output_tokens)
    assert row.cost_usd == invoice > 0
    after = claude.messages.create(model=HAIKU, max_tokens=300, tools=[tool], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C"}]}])
    assert after.content[0].type == "text" and after.content[0].text


def test_openai_clients_reach_claude_on_vertex(client):
    r = client.chat.completions.create(model=HAIKU, max_tokens=200, messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content and r.usage.completion_tokens > 0


def test_count_tokens_is_asked_of_vertex(claude):
    raw = claude.messages.with_raw_response.count_tokens(model=HAIKU, messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-thrifty-token-count"] == "provider" and raw.parse().input_tokens > 0


# --- credentials ------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["claude-sa", "gemini-sa"])
def test_a_service_account_key_gets_its_token_from_the_token_endpoint(client, model):
    r = client.chat.completions.create(model=model, max_tokens=2000, messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content


class _FakeCredentials:
    """google-auth's credentials as AccessToken uses them: `valid`, `token`, `refresh`."""

    def __init__(self) -> None:
        self.token, self.valid, self.refreshes = None, False, 0
        self.quota_project_id = "billing-project"

    def refresh(self, request) -> None:
        self.refreshes += 1
        self.token, self.valid = f"ya29.{self.refreshes}", True


def test_a_token_is_minted_once_and_refreshed_when_it_expires(monkeypatch):
    token = AccessToken(None, VertexOptions(project="p"), "vertex")
    creds = _FakeCredentials()
    monkeypatch.setattr(token, "_load", lambda: creds)

    async def calls() -> None:
        await asyncio.gather(*(token.ensure() for _ in range(5)))  # concurrent calls: one refresh
        assert (creds.refreshes, token.headers["authorization"]) == (1, "Bearer ya29.1")
        creds.valid = False  # google-auth: expired, or about to
        await token.ensure()

    asyncio.run(calls())
    assert token.headers == {"authorization": "Bearer ya29.2", "x-goog-user-project": "billing-project"}


@pytest.mark.parametrize("model", ["claude-wrong-token", "gemini-revoked"])
def test_refused_credentials_are_the_gateways_502(stack, client, claude, model):
    before = _billing(stack)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502 and info.value.body["code"] == "upstream_credentials_refused"
    assert "not-the-token" not in json.dumps(info.value.body)
    with pytest.raises(anthropic.APIStatusError) as ainfo:
        claude.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert ainfo.value.status_code == 502 and ainfo.value.body["type"] == "error"  # Anthropic's shape
    assert _billing(stack) == before


# --- the emulator's Vertex surface, checked with the anthropic SDK's own Vertex client ----------

def test_the_emulator_speaks_claude_on_vertex_to_the_anthropic_vertex_client(stack):
    with anthropic.AnthropicVertex(region="us-east5", project_id=PROJECT, access_token="emulator-key",
                                   base_url=f"{stack.emulator.url}/v1", max_retries=0) as v:
        m = v.messages.create(model=HAIKU, max_tokens=100, messages=[{"role": "user", "content": "hi"}])
        with v.messages.stream(model=HAIKU, max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
            streamed = s.get_final_message()
        counted = v.messages.count_tokens(model=HAIKU, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.NotFoundError) as missing:
            v.messages.create(model="claude-9@20990101", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text and m.usage.output_tokens > 0
    assert streamed.content[0].text and streamed.stop_reason in ("end_turn", "max_tokens")
    assert counted.input_tokens > 0
    assert missing.value.body["error"]["status"] == "NOT_FOUND"  # Vertex's shape, not Anthropic's


def test_the_emulator_answers_vertex_errors_in_googles_shapes(stack):
    root = f"{stack.emulator.url}/v1/projects/{PROJECT}/locations/us-east5/publishers"
    claude_url = f"{root}/anthropic/models/{HAIKU}:rawPredict"
    body = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    auth = {"authorization": "Bearer emulator-key"}
    assert httpx.post(claude_url, headers=auth, json=body).status_code == 200
    missing = httpx.post(claude_url, json=body)
    assert (missing.status_code, missing.json()["error"]["status"]) == (401, "UNAUTHENTICATED")
    wrong = httpx.post(claude_url, headers={"authorization": "Bearer nope"}, json=body)
    assert wrong.status_code == 401 and "invalid authentication credentials" in wrong.json()["error"]["message"]
    no_version = httpx.post(claude_url, headers=auth, json={k: v for k, v in body.items() if k != "anthropic_version"})
    assert no_version.status_code == 400 and no_version.json()["error"]["type"] == "invalid_request_error"
    with_model = httpx.post(claude_url, headers=auth, json={**body, "model": HAIKU})
    assert with_model.status_code == 400 and "model" in with_model.json()["error"]["message"]
    gemini_url = f"{root}/google/models/{FLASH}:generateContent"
    gbody = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 300}}
    ok = httpx.post(gemini_url, headers=auth, json=gbody).json()
    assert ok["candidates"][0]["content"]["role"] == "model" and ok["usageMetadata"]["promptTokenCount"] > 0
    assert httpx.post(gemini_url, headers={"x-goog-api-key": "emulator-key"}, json=gbody).status_code == 401
    unknown = httpx.post(gemini_url.replace(FLASH, "gemini-9"), headers=auth, json=gbody)
    assert unknown.status_code == 404 and "Publisher Model" in unknown.json()["error"]["message"]


def test_the_token_endpoint_refuses_bad_grants(stack):
    url = f"{stack.emulator.url}/token"
    assert httpx.post(url, data={"grant_type": "password"}).json()["error"] == "unsupported_grant_type"
    bad = httpx.post(url, data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "x.y"})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_grant")
    ok = httpx.post(url, data={"grant_type": "refresh_token", "refresh_token": "r", "client_id": "c",
                               "client_secret": "s"}).json()
    assert ok["token_type"] == "Bearer" and ok["expires_in"] == 3599
    gemini_url = (f"{stack.emulator.url}/v1/projects/{PROJECT}/locations/global/publishers/google/models/"
                  f"{FLASH}:generateContent")
    answer = httpx.post(gemini_url, headers={"authorization": f"Bearer {ok['access_token']}"},
                        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert answer.status_code == 200


# --- configuration and URLs -------------------------------------------------------------------

@pytest.mark.parametrize("location, host", [
    ("global", "https://aiplatform.googleapis.com"),
    ("us-east5", "https://us-east5-aiplatform.googleapis.com"),
    ("eu", "https://aiplatform.eu.rep.googleapis.com"),
])
def test_the_endpoint_follows_the_location(location, host):
    gemini = VertexGeminiProvider("g", ProviderConfig(kind="vertex", api_key="t",
                                                      vertex={"project": "p", "location": location}))
    claude = VertexAnthropicProvider("c", ProviderConfig(kind="vertex_anthropic", api_key="t",
                                                         vertex={"project": "p", "location": location}))
    models = f"{host}/v1/projects/p/locations/{location}/publishers"
    assert gemini.url_for({"model": FLASH}, stream=True) == f"{models}/google/models/{FLASH}:streamGenerateContent?alt=sse"
    body = claude.for_vertex({"model": HAIKU, "stream": True, "max_tokens": 5, "messages": []})
    assert body.url == f"{models}/anthropic/models/{HAIKU}:streamRawPredict"
    assert "model" not in body and body["anthropic_version"] == "vertex-2023-10-16"
    assert claude.endpoint("/v1/messages/count_tokens") == f"{models}/anthropic/models/count-tokens:rawPredict"


@pytest.mark.parametrize("provider, problem", [
    ({"kind": "vertex", "base_url": "http://x"}, "needs a vertex: block"),
    ({"kind": "openai", "base_url": "http://x", "vertex": {"project": "p"}}, "only for kind vertex"),
    ({"kind": "vertex", "vertex": {"project": "p", "location": "US East"}}, "not a Vertex AI location"),
])
def test_vertex_options_are_checked(provider, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_config({"providers": {"v": provider}, "deployments": {"m": {"provider": "v", "model": "m"}}}, "t.yaml")
