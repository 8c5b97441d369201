"""AWS Bedrock as a provider: a gateway with `kind: bedrock` providers in front of the emulator's
Converse / ConverseStream routes, called through the official openai and anthropic SDKs; the
emulator itself checked with botocore's own bedrock-runtime client (its SigV4 signer, its
service model's parser and its event-stream decoder)."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import anthropic
import botocore.session
import httpx
import openai
import pytest
from botocore.config import Config as BotoConfig
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters

from tests.conftest import start_stack
from tests.ledger_util import wait_row
from thrifty.cli import localstack
from thrifty.config import BedrockOptions, ProviderConfig
from thrifty.contract.usage import Usage
from thrifty.errors import InvalidRequest, RateLimited, UpstreamError
from thrifty.pricing import PriceBook
from thrifty.providers.bedrock import BedrockProvider, resolve_credentials, signing_region
from thrifty.redact import Redactor
from thrifty.wire import BEDROCK, OPENAI_CHAT, upstream_request
from thrifty.wire.bedrock_translate import BedrockToCanonicalStream, response_to_canonical, usage_from_bedrock
from thrifty_emulator import aws
from thrifty_emulator.keys import DEFAULT_AWS_KEY, DEFAULT_AWS_SECRET, KeySpec

NOVA = "amazon.nova-lite-v1:0"
HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
PAIR = f"{DEFAULT_AWS_KEY}:{DEFAULT_AWS_SECRET}"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
HI = [{"role": "user", "content": "hi"}]


def _add_bedrock(config: dict) -> None:
    base = config["providers"]["openai"]["base_url"].removesuffix("/v1")
    providers, deployments = config["providers"], config["deployments"]
    providers["bedrock"] = {"kind": "bedrock", "base_url": base, "api_key": PAIR, "timeout_s": 10}
    providers["bedrock-fields"] = {"kind": "bedrock", "base_url": base, "bedrock": {
        "region": "eu-west-1", "access_key_id": DEFAULT_AWS_KEY, "secret_access_key": DEFAULT_AWS_SECRET}}
    providers["bedrock-api-key"] = {"kind": "bedrock", "base_url": base, "api_key": "emulator-key"}
    providers["bedrock-wrong-secret"] = {"kind": "bedrock", "base_url": base,
                                         "api_key": f"{DEFAULT_AWS_KEY}:not-the-secret-at-all"}
    deployments["nova-lite"] = {"provider": "bedrock", "model": NOVA, "price_provider": "aws"}
    deployments["haiku-bedrock"] = {"provider": "bedrock", "model": f"us.{HAIKU}", "price_provider": "aws"}
    deployments["nova-fields"] = {"provider": "bedrock-fields", "model": NOVA, "price_provider": "aws"}
    deployments["nova-api-key"] = {"provider": "bedrock-api-key", "model": NOVA, "price_provider": "aws"}
    deployments["nova-wrong-secret"] = {"provider": "bedrock-wrong-secret", "model": NOVA, "price_provider": "aws"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("bedrock"), edit=_add_bedrock, timeout_s=5.0)
    yield s
    s.gateway.stop()
    s.emulator.stop()


@pytest.fixture
def client(stack):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        yield c


def _boto(stack, secret: str = DEFAULT_AWS_SECRET):
    return botocore.session.get_session().create_client(
        "bedrock-runtime", region_name="us-west-2", endpoint_url=stack.emulator.url, aws_access_key_id=DEFAULT_AWS_KEY,
        aws_secret_access_key=secret, config=BotoConfig(retries={"max_attempts": 0}))


def _billing(stack) -> dict:
    return stack.billing()["models"]


def _invoiced(stack, before: dict, model: str) -> tuple[dict, Decimal]:
    """What the emulator billed `model` since `before`, priced from genai-prices' aws card."""
    after, old = _billing(stack)[model], before.get(model, {})
    delta = {k: v - old.get(k, 0) for k, v in after.items() if isinstance(v, int)}
    card = PriceBook().card(model, "aws")
    assert card is not None and card.provider == "aws"
    usage = Usage(input_tokens=delta["input_tokens"], cache_read_tokens=delta["cache_read_tokens"],
                  output_tokens=delta["output_tokens"])
    return delta, localstack.linear_cost(card, usage)


@pytest.mark.parametrize("deployment, model", [("nova-lite", NOVA), ("haiku-bedrock", HAIKU)])
def test_whole_answer_is_priced_as_invoiced(stack, client, deployment, model):
    before = _billing(stack)
    raw = client.chat.completions.with_raw_response.create(
        model=deployment, max_tokens=400, messages=[{"role": "system", "content": "Be brief."},
                                                    {"role": "user", "content": "What does a gateway do?"}])
    r = raw.parse()
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")
    row = wait_row(stack.ledger_path, raw.headers["x-thrifty-request-id"])
    assert (row.status, row.provider) == (200, "bedrock")
    delta, invoice = _invoiced(stack, before, model)
    assert delta["requests"] == 1
    assert (delta["input_tokens"], delta["output_tokens"]) == (row.prompt_tokens, row.completion_tokens)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (row.prompt_tokens, row.completion_tokens)
    assert row.cost_usd == Decimal(raw.headers["x-thrifty-cost-usd"]) == invoice > 0, (row.cost_usd, invoice)


def test_stream_over_the_event_stream_is_priced_as_invoiced(stack, client):
    before = _billing(stack)
    with client.chat.completions.with_streaming_response.create(
            model="nova-lite", max_tokens=400, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Tell me a short story"}]) as resp:
        rid = resp.headers["x-thrifty-request-id"]
        chunks = list(resp.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = next(c.usage for c in chunks if c.usage is not None)
    assert text and finishes in (["stop"], ["length"])
    row = wait_row(stack.ledger_path, rid)
    assert (row.status, row.stream, row.completion_tokens) == (200, True, usage.completion_tokens)
    delta, invoice = _invoiced(stack, before, NOVA)
    assert delta["requests"] == 1 and delta["output_tokens"] == row.completion_tokens
    assert row.cost_usd == invoice > 0, (row.cost_usd, invoice)


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_round_trip(stack, client, stream):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    kw = {"model": "haiku-bedrock", "max_tokens": 400, "tools": [WEATHER], "tool_choice": "required"}
    if stream:
        chunks = list(client.chat.completions.create(messages=messages, stream=True, **kw))
        calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
        call_id, name = calls[0].id, calls[0].function.name
        args = "".join(c.function.arguments or "" for c in calls)
    else:
        r = client.chat.completions.create(messages=messages, **kw)
        assert r.choices[0].finish_reason == "tool_calls"
        tc = r.choices[0].message.tool_calls[0]
        call_id, name, args = tc.id, tc.function.name, tc.function.arguments
    assert call_id.startswith("tooluse_") and name == "get_weather" and "city" in json.loads(args)
    messages += [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]},
        {"role": "tool", "tool_call_id": call_id, "content": '{"temp_c": 18}'}]
    r2 = client.chat.completions.create(model="haiku-bedrock", max_tokens=400, tools=[WEATHER], messages=messages)
    assert r2.choices[0].message.content and r2.choices[0].finish_reason in ("stop", "length")


def test_anthropic_clients_reach_bedrock_too(stack):
    with anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0) as c:
        m = c.messages.create(model="haiku-bedrock", max_tokens=400, system="Be brief.", messages=HI)
        with c.messages.stream(model="haiku-bedrock", max_tokens=400, messages=HI) as s:
            streamed = s.get_final_message()
        with pytest.raises(anthropic.APIStatusError) as info:
            c.messages.create(model="nova-wrong-secret", max_tokens=10, messages=HI)
    assert m.content[0].text and m.stop_reason in ("end_turn", "max_tokens") and m.usage.output_tokens > 0
    assert streamed.content[0].text and streamed.usage.output_tokens > 0
    assert info.value.status_code == 502 and info.value.body["type"] == "error"  # Anthropic's shape


def test_an_anthropic_tool_round_trip_through_converse(stack):
    tool = {"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER["function"]["parameters"]}
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    with anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0) as c:
        m = c.messages.create(model="haiku-bedrock", max_tokens=400, tools=[tool], tool_choice={"type": "any"},
                              messages=messages)
        use = next(b for b in m.content if b.type == "tool_use")
        assert m.stop_reason == "tool_use" and use.name == "get_weather" and "city" in use.input
        messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                   "content": [{"type": "text", "text": "18 C"}]}]}]
        m2 = c.messages.create(model="haiku-bedrock", max_tokens=400, tools=[tool], messages=messages)
    assert m2.content[0].type == "text" and m2.content[0].text and m2.stop_reason in ("end_turn", "max_tokens")


@pytest.mark.parametrize("deployment", ["nova-fields", "nova-api-key"])
def test_key_pair_fields_and_bedrock_api_keys_authenticate(client, deployment):
    r = client.chat.completions.create(model=deployment, max_tokens=100, messages=HI)
    assert r.choices[0].message.content and r.usage.completion_tokens > 0


def test_a_signature_aws_refuses_is_the_gateways_502(stack, client):
    before = _billing(stack)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="nova-wrong-secret", max_tokens=10, messages=HI)
    assert info.value.status_code == 502 and info.value.body["code"] == "upstream_credentials_refused"
    assert "InvalidSignatureException" in info.value.body["message"]
    assert "not-the-secret-at-all" not in json.dumps(info.value.body)
    assert _billing(stack) == before


def test_bad_input_is_a_400_in_the_clients_shape(client):
    with pytest.raises(openai.BadRequestError) as info:  # Converse takes image bytes, not URLs
        client.chat.completions.create(model="nova-lite", max_tokens=10, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert "data URL" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:  # above the model's output maximum
        client.chat.completions.create(model="haiku-bedrock", max_tokens=9000, messages=HI)
    assert "ValidationException" in info.value.body["message"]


# --- the emulator, as botocore's client sees it -----------------------------------------------

def test_the_emulator_speaks_converse_to_botocore(stack):
    boto = _boto(stack)
    r = boto.converse(modelId=f"eu.{NOVA}", messages=[{"role": "user", "content": [{"text": "hi"}]}],
                      inferenceConfig={"maxTokens": 60, "temperature": 0.1})
    assert r["output"]["message"]["role"] == "assistant" and r["stopReason"] in ("end_turn", "max_tokens")
    u = r["usage"]
    assert u["totalTokens"] == u["inputTokens"] + u["outputTokens"] and r["metrics"]["latencyMs"] >= 0
    tools = {"tools": [{"toolSpec": {"name": "w", "inputSchema": {"json": WEATHER["function"]["parameters"]}}}],
             "toolChoice": {"tool": {"name": "w"}}}
    events = list(boto.converse_stream(modelId=HAIKU, messages=[{"role": "user", "content": [{"text": "hi"}]}],
                                       toolConfig=tools)["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds == ["messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop",
                     "metadata"]
    assert events[1]["contentBlockStart"]["start"]["toolUse"]["name"] == "w"
    assert "city" in json.loads(events[2]["contentBlockDelta"]["delta"]["toolUse"]["input"])
    assert events[4]["messageStop"]["stopReason"] == "tool_use" and events[5]["metadata"]["usage"]["outputTokens"] > 0


@pytest.mark.parametrize("call, error_type, status", [
    (lambda s: _boto(s, "wrong").converse(modelId=NOVA, messages=[{"role": "user", "content": [{"text": "x"}]}]),
     "InvalidSignatureException", 403),
    (lambda s: _boto(s).converse(modelId="amazon.nova-9", messages=[{"role": "user", "content": [{"text": "x"}]}]),
     "ValidationException", 400),
    (lambda s: _boto(s).converse(modelId=NOVA, messages=[{"role": "assistant", "content": [{"text": "x"}]}]),
     "ValidationException", 400),
    (lambda s: _boto(s).converse(modelId=NOVA, messages=[{"role": "user", "content": [
        {"toolResult": {"toolUseId": "t", "content": [{"text": "1"}]}}]}]), "ValidationException", 400),
    (lambda s: _boto(s).converse(modelId=NOVA, messages=[{"role": "user", "content": [{"text": "  "}]}]),
     "ValidationException", 400),
])
def test_the_emulator_answers_awss_errors(stack, call, error_type, status):
    with pytest.raises(ClientError) as info:
        call(stack)
    err = info.value.response
    assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == (error_type, status)
    assert err["Error"]["Message"]


def test_unsigned_and_half_signed_requests(stack):
    url = f"{stack.emulator.url}/model/{NOVA}/converse"
    body = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    unsigned = httpx.post(url, json=body)
    assert unsigned.status_code == 403 and unsigned.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    partial = httpx.post(url, json=body, headers={"authorization": "AWS4-HMAC-SHA256 Credential=x"})
    assert partial.status_code == 400 and partial.headers["x-amzn-errortype"] == "IncompleteSignatureException"
    bearer = httpx.post(url, json=body, headers={"authorization": "Bearer emulator-key"})
    assert bearer.status_code == 200 and bearer.json()["stopReason"]
    pair_as_bearer = httpx.post(url, json=body, headers={"authorization": f"Bearer {DEFAULT_AWS_KEY}"})
    assert pair_as_bearer.status_code == 403


def _signed(path: str, body: bytes) -> aws.SignedRequest:
    """A request signed now by botocore's signer, as the emulator receives it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method="POST", url=f"http://h{path}", data=body, headers={"content-type": "application/json"})
    SigV4Auth(Credentials(DEFAULT_AWS_KEY, DEFAULT_AWS_SECRET), "bedrock", "us-east-1").add_auth(req)
    return aws.SignedRequest("POST", path, "", {k.lower(): v for k, v in req.headers.items()} | {"host": "h"}, body)


def test_sigv4_verification_checks_the_clock_body_and_service():
    keys = (KeySpec(DEFAULT_AWS_KEY, secret=DEFAULT_AWS_SECRET),)
    req = _signed("/model/a%3A0/converse", b"{}")
    now = time.time()
    assert aws.verify_sigv4(req, keys, "bedrock", now=now).key == DEFAULT_AWS_KEY
    with pytest.raises(aws.WireError, match="Signature expired"):
        aws.verify_sigv4(req, keys, "bedrock", now=now + 16 * 60)
    with pytest.raises(aws.WireError, match="does not match"):
        aws.verify_sigv4(aws.SignedRequest("POST", req.raw_path, "", req.headers, b"{ }"), keys, "bedrock", now=now)
    with pytest.raises(aws.WireError, match="correct service"):
        aws.verify_sigv4(req, keys, "s3", now=now)


def test_event_stream_frames_decode_with_botocore():
    buf = EventStreamBuffer()
    buf.add_data(aws.event("messageStop", b'{"stopReason":"end_turn"}') + aws.exception("throttlingException", b"{}"))
    first, second = list(buf)
    assert first.headers == {":event-type": "messageStop", ":content-type": "application/json", ":message-type": "event"}
    assert json.loads(first.payload) == {"stopReason": "end_turn"}
    assert second.headers[":message-type"] == "exception"


def test_exception_frames_mid_stream_become_gateway_errors():
    provider = BedrockProvider("bedrock", ProviderConfig(kind="bedrock", api_key=PAIR))
    buf = EventStreamBuffer()
    buf.add_data(aws.event("messageStart", b'{"role":"assistant"}')
                 + aws.exception("throttlingException", b'{"message":"Too many tokens, please wait."}')
                 + aws.exception("modelStreamErrorException", b'{"message":"boom"}'))
    start, throttled, failed = list(buf)
    assert provider._event(start) == {"messageStart": {"role": "assistant"}}
    with pytest.raises(RateLimited, match="Too many tokens"):
        provider._event(throttled)
    with pytest.raises(UpstreamError, match="modelStreamErrorException: boom"):
        provider._event(failed)


# --- translation, usage and configuration -----------------------------------------------------

def test_canonical_request_to_converse():
    png = "iVBORw0KGgo="
    body = {"model": "x", "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": "END",
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
            "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "messages": [{"role": "system", "content": "S"},
                         {"role": "user", "content": [{"type": "text", "text": "Q"}, {
                             "type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]},
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"id": "c1", "type": "function", "function": {"name": "get_weather",
                                                                           "arguments": '{"city": "P"}'}}]},
                         {"role": "tool", "tool_call_id": "c1", "content": '{"t": 1}'},
                         {"role": "user", "content": "and?"}]}
    out = upstream_request(OPENAI_CHAT, BEDROCK, body, NOVA, 1024)
    assert out["modelId"] == NOVA and out["system"] == [{"text": "S"}]
    assert out["messages"] == [
        {"role": "user", "content": [{"text": "Q"}, {"image": {"format": "png", "source": {"bytes": png}}}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "c1", "name": "get_weather",
                                                       "input": {"city": "P"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "c1", "content": [{"json": {"t": 1}}]}},
                                     {"text": "and?"}]}]
    assert out["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]}
    assert out["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": WEATHER["function"]["parameters"]}
    assert out["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}
    assert BEDROCK.requested_schema(out) == {"type": "object"}
    assert BEDROCK.output_cap(BEDROCK.with_output_cap(out, 7)) == 7 and BEDROCK.stops(out) == ["END"]
    with pytest.raises(InvalidRequest):
        upstream_request(OPENAI_CHAT, BEDROCK, {**body, "n": 2}, NOVA, 1024)
    # Valid as botocore's service model types a ConverseRequest (modelId is its URI member).
    validate_parameters(out, botocore.session.get_session().get_service_model("bedrock-runtime")
                        .operation_model("Converse").input_shape)


def test_blank_text_is_left_out_of_converse(client):
    """Converse refuses blank text blocks and empty turns; OpenAI clients send both (an empty
    assistant answer, an empty tool result): they are left out, the turns kept alternating."""
    messages = [{"role": "system", "content": " "}, {"role": "user", "content": "Q"},
                {"role": "assistant", "content": ""}, {"role": "user", "content": [{"type": "text", "text": ""}]},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": ""}, {"role": "user", "content": "and?"}]
    out = upstream_request(OPENAI_CHAT, BEDROCK, {"model": "x", "tools": [WEATHER], "messages": messages}, NOVA, 1)
    assert "system" not in out and [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][2]["content"] == [{"toolResult": {"toolUseId": "c1", "content": [{"json": {}}]}},
                                             {"text": "and?"}]
    r = client.chat.completions.create(model="nova-lite", max_tokens=50, tools=[WEATHER], messages=messages)
    assert r.choices[0].message.content or r.choices[0].message.tool_calls


def test_usage_cache_reads_and_writes_by_ttl():
    u = usage_from_bedrock({"inputTokens": 40, "outputTokens": 20, "totalTokens": 160, "cacheReadInputTokens": 60,
                            "cacheWriteInputTokens": 40, "cacheDetails": [{"ttl": "1h", "inputTokens": 10},
                                                                          {"ttl": "5m", "inputTokens": 30}]})
    assert u == Usage(input_tokens=40, cache_read_tokens=60, cache_write_5m_tokens=30, cache_write_1h_tokens=10,
                      output_tokens=20)
    assert usage_from_bedrock(BEDROCK.usage_body(u)) == u


@pytest.mark.parametrize("reason, expected", [("end_turn", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
                                              ("guardrail_intervened", "content_filter"), ("stop_sequence", "stop")])
def test_answers_and_stop_reasons(reason, expected):
    resp = {"output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "hmm"}}}, {"text": "Hi"}]}},
        "stopReason": reason, "usage": {"inputTokens": 5, "outputTokens": 1, "totalTokens": 6}}
    out = response_to_canonical(resp, NOVA)
    assert out["choices"][0]["message"]["content"] == "Hi"  # reasoning is not the answer
    assert out["choices"][0]["finish_reason"] == expected and out["usage"]["prompt_tokens"] == 5


def test_stream_events_to_canonical():
    t = BedrockToCanonicalStream(NOVA)
    out = t.feed({"messageStart": {"role": "assistant"}})
    out += t.feed({"contentBlockDelta": {"delta": {"text": "He"}, "contentBlockIndex": 0}})
    out += t.feed({"contentBlockStart": {"start": {"toolUse": {"toolUseId": "tu1", "name": "f"}}, "contentBlockIndex": 1}})
    out += t.feed({"contentBlockDelta": {"delta": {"toolUse": {"input": '{"a":'}}, "contentBlockIndex": 1}})
    out += t.feed({"contentBlockDelta": {"delta": {"toolUse": {"input": "1}"}}, "contentBlockIndex": 1}})
    out += t.feed({"messageStop": {"stopReason": "tool_use"}})
    out += t.feed({"metadata": {"usage": {"inputTokens": 3, "outputTokens": 6, "totalTokens": 9,
                                          "cacheReadInputTokens": 2}, "metrics": {"latencyMs": 1}}})
    out += t.close()
    deltas = [c["choices"][0]["delta"] for c in out if c["choices"]]
    assert deltas[1] == {"content": "He"}
    assert deltas[2]["tool_calls"][0]["id"] == "tu1" and deltas[2]["tool_calls"][0]["function"]["name"] == "f"
    assert "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:5]) == '{"a":1}'
    assert out[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert t.usage == Usage(input_tokens=3, cache_read_tokens=2, output_tokens=6)
    assert out[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 2


def test_config_region_endpoint_and_credentials():
    cfg = ProviderConfig(kind="bedrock", bedrock={"region": "eu-central-1"}, api_key="AKIDEXAMPLE:s3cr3t-key:tok3n-value")
    assert cfg.base_url == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    assert signing_region(cfg.bedrock, cfg.base_url) == "eu-central-1"
    assert signing_region(BedrockOptions(), "https://bedrock-runtime.ap-south-1.amazonaws.com") == "ap-south-1"
    assert signing_region(BedrockOptions(), "http://127.0.0.1:9000") == "us-east-1"
    creds = resolve_credentials(cfg, {})
    assert (creds.access_key, creds.secret_key, creds.token) == ("AKIDEXAMPLE", "s3cr3t-key", "tok3n-value")
    assert resolve_credentials(ProviderConfig(kind="bedrock", api_key="ABSKbedrockkey"), {}) == "ABSKbedrockkey"
    env = {"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "envsecret"}
    assert resolve_credentials(ProviderConfig(kind="bedrock"), env).access_key == "AKIDENV"
    assert resolve_credentials(ProviderConfig(kind="bedrock"), {}) is None
    assert "s3cr3t-key" not in Redactor(cfg.secret_values()).secrets("signing with s3cr3t-key failed")
    with pytest.raises(ValueError, match="only for kind: bedrock"):
        ProviderConfig(kind="openai", base_url="http://x", bedrock={"region": "us-east-1"})
    with pytest.raises(ValueError, match="not an AWS region"):
        ProviderConfig(kind="bedrock", bedrock={"region": "US East"})
    with pytest.raises(ValueError, match="go together"):
        ProviderConfig(kind="bedrock", bedrock={"access_key_id": "AKIDEXAMPLE"})
