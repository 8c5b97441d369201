"""AWS Bedrock Runtime `Converse` and `ConverseStream`, as the Bedrock API reference describes them.

- `POST /model/{modelId}/converse` (JSON) and `/model/{modelId}/converse-stream` (the binary
  event stream, aws.py): `messageStart`, `contentBlockStart` (tool uses), `contentBlockDelta`,
  `contentBlockStop`, `messageStop` with the `stopReason`, then `metadata` with `usage` and
  `metrics`; shapes as botocore's `bedrock-runtime` service model types them;
- requests signed with SigV4 for service `bedrock` by a configured access key pair (keys.py), or
  a Bedrock API key as `Authorization: Bearer` (Bedrock user guide, "Use an Amazon Bedrock API
  key"); errors are `{"message"}` with `x-amzn-errortype` (ValidationException 400,
  AccessDeniedException 403, ResourceNotFoundException 404, ThrottlingException 429, ...);
- model ids are the base ids (`amazon.nova-lite-v1:0`) or cross-region inference profiles with a
  geography prefix (`us.amazon.nova-lite-v1:0`); an unknown one is a ValidationException, as
  Bedrock answers "The provided model identifier is invalid.";
- `usage`: `inputTokens` (input neither read from nor written to the prompt cache),
  `outputTokens`, `totalTokens`.

The request is read into the emulator's neutral `ChatRequest` through the OpenAI wire's parser
(one home for prompt counting), so the same deterministic model answers. Token counts use
o200k for every model here (an approximation: Bedrock's models have tokenizers of their own).
Prompt caching (`cachePoint`), rate limits and injected faults are not emulated on this wire.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import orjson

from thrifty_emulator.asgi import DisconnectWatch, Receive, Send, read_body
from thrifty_emulator.aws import EVENT_STREAM, SignedRequest, error, event, verify_sigv4
from thrifty_emulator.errors import BodyTooLarge
from thrifty_emulator.generate import ChatRequest, Completion
from thrifty_emulator.keys import KeySpec
from thrifty_emulator.models import ModelSpec
from thrifty_emulator.openai_wire import OpenAIWire
from thrifty_emulator.prompt_cache import deferred_writes
from thrifty_emulator.usage import TokenCounts
from thrifty_emulator.wire import WireError, pieces

SERVICE = "bedrock"  # the SigV4 signing name of bedrock-runtime (botocore's service model)
_PATH = re.compile(r"/model/([^/]+)/(converse|converse-stream)")
_GEOGRAPHY = re.compile(r"(?:us|eu|apac|global|us-gov|jp|au|ca)\.")  # inference profile prefixes
_STOP = {"end": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence", "tool_use": "tool_use"}
_TOP_FIELDS = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig", "additionalModelRequestFields",
               "promptVariables", "additionalModelResponseFieldPaths", "requestMetadata", "performanceConfig",
               "serviceTier", "outputConfig"}
_CONFIG = {"maxTokens": "max_tokens", "temperature": "temperature", "topP": "top_p", "stopSequences": "stop"}
_TYPES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
          413: "ValidationException", 429: "ThrottlingException", 500: "InternalServerException",
          503: "ServiceUnavailableException"}


def _spec(name: str, context: int, max_output: int) -> ModelSpec:
    # Context and output limits from the Bedrock model cards (Nova: "Amazon Nova models" user
    # guide; Claude 3.5 Haiku: Anthropic's model table).
    return ModelSpec(name=name, wire="bedrock", provider="aws", ttft_ms=350, tokens_per_s=150, prompt_caching=False,
                     context_window=context, max_output_tokens=max_output)


MODELS = {m.name: m for m in (_spec("amazon.nova-micro-v1:0", 128_000, 10_000),
                                _spec("amazon.nova-lite-v1:0", 300_000, 10_000),
                                _spec("amazon.nova-pro-v1:0", 300_000, 10_000),
                                _spec("anthropic.claude-3-5-haiku-20241022-v1:0", 200_000, 8_192))}


def model_spec(model_id: str) -> ModelSpec | None:
    """The model a model id names: a base id, or an inference profile's geography + base id."""
    return MODELS.get(model_id) or MODELS.get(_GEOGRAPHY.sub("", model_id, count=1))


def invalid(message: str) -> WireError:
    return error(400, "ValidationException", message)


class BedrockWire(OpenAIWire):
    tool_id = ("tooluse_", 22)
    request_id_header = "x-amzn-requestid"
    stream_content_type = EVENT_STREAM

    def credential(self, headers: dict[str, str]) -> str | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def missing_key(self) -> WireError:
        return error(403, "MissingAuthenticationTokenException", "Missing Authentication Token", "authentication")

    def bad_key(self, key: str) -> WireError:
        return error(403, "UnrecognizedClientException", "The security token included in the request is invalid.",
                     "authentication")

    def authorize(self, req: SignedRequest, keys: tuple[KeySpec, ...]) -> KeySpec:
        """A SigV4 signature by a configured pair, or a configured key as a Bedrock API key."""
        if req.headers.get("authorization", "").lower().startswith("bearer "):
            return self.authenticate(req.headers, keys)
        return verify_sigv4(req, keys, SERVICE)

    def unknown_model(self, model: str) -> WireError:
        return invalid("The provided model identifier is invalid.")

    def invalid(self, message: str, param: str | None = None, code: str | None = None) -> WireError:
        return invalid(message)

    def error_body(self, err: WireError, request_id: str) -> dict[str, Any]:
        return {"message": err.message}

    def typed(self, err: WireError) -> WireError:
        """`err` with the `x-amzn-errortype` header botocore reads the error's type from."""
        err.headers.setdefault("x-amzn-errortype", _TYPES.get(err.status, "InternalServerException"))
        return err

    # --- requests -------------------------------------------------------------------------

    def parse_converse(self, body: Any, spec: ModelSpec, model_id: str, stream: bool) -> ChatRequest:
        if not isinstance(body, dict):
            raise invalid("Malformed input request, please reformat your input and try again.")
        unknown = sorted(set(body) - _TOP_FIELDS)
        if unknown:
            raise invalid(f"Malformed input request: extraneous key [{unknown[0]}] is not permitted, "
                          "please reformat your input and try again.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise invalid("A conversation must start with a user message. Try again with a conversation that "
                          "starts with a user message.")
        config = _config(body.get("inferenceConfig"), spec)
        return self.parse({"model": model_id, "stream": stream, "messages": _messages(body, messages),
                           **_tools(body), **config})

    # --- answers --------------------------------------------------------------------------

    @staticmethod
    def usage_body(u: TokenCounts) -> dict[str, Any]:
        return {"inputTokens": u.input_tokens, "outputTokens": u.output_tokens,
                "totalTokens": u.input_tokens + u.output_tokens}

    def render(self, c: Completion) -> dict[str, Any]:
        ch = c.choices[0]
        content: list[dict[str, Any]] = [{"text": ch.text}] if ch.text else []
        content += [{"toolUse": {"toolUseId": t.id, "name": t.name, "input": t.arguments}} for t in ch.tool_calls]
        return {"output": {"message": {"role": "assistant", "content": content or [{"text": ""}]}},
                "stopReason": _STOP[ch.finish], "usage": self.usage_body(c.usage),
                "metrics": {"latencyMs": int(c.spec.ttft_ms)}}

    def stream(self, c: Completion, per_piece: int) -> list[tuple[bytes, int]]:
        ch = c.choices[0]
        out: list[tuple[bytes, int]] = [(event("messageStart", b'{"role":"assistant"}'), 0)]
        index = 0
        if ch.text or not ch.tool_calls:
            for text, n in pieces(ch.text or "", self.tok, per_piece) or [("", 0)]:
                out.append((_event("contentBlockDelta", {"delta": {"text": text}, "contentBlockIndex": index}), n))
            out.append((_event("contentBlockStop", {"contentBlockIndex": index}), 0))
            index += 1
        for t in ch.tool_calls:
            start = {"toolUse": {"toolUseId": t.id, "name": t.name}}
            out.append((_event("contentBlockStart", {"start": start, "contentBlockIndex": index}), 0))
            out.append((_event("contentBlockDelta", {"delta": {"toolUse": {"input": t.arguments_json}},
                                                     "contentBlockIndex": index}), ch.output_tokens))
            out.append((_event("contentBlockStop", {"contentBlockIndex": index}), 0))
            index += 1
        out.append((_event("messageStop", {"stopReason": _STOP[ch.finish]}), 0))
        out.append((_event("metadata", {"usage": self.usage_body(c.usage),
                                        "metrics": {"latencyMs": int(c.spec.ttft_ms)}}), 0))
        return out


def _event(event_type: str, payload: dict[str, Any]) -> bytes:
    return event(event_type, orjson.dumps(payload))


def _text(blocks: list[Any]) -> str:
    return "".join(b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str))


def _tool_result_text(result: dict[str, Any]) -> str:
    parts = []
    for block in result.get("content") or ():
        if isinstance(block, dict) and "json" in block:
            parts.append(orjson.dumps(block["json"]).decode())
        elif isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "".join(parts)


def _messages(body: dict[str, Any], messages: list[Any]) -> list[dict[str, Any]]:
    """Converse turns as the OpenAI parser reads them, checked as Converse checks them."""
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        if not isinstance(system, list):
            raise invalid("Malformed input request: system must be a list of content blocks")
        out.append({"role": "system", "content": _text(system)})
    has_tools = isinstance(body.get("toolConfig"), dict)
    previous = None
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            raise invalid(f"Malformed input request: messages[{i}].role must be one of [user, assistant]")
        if i == 0 and role != "user":
            raise invalid("A conversation must start with a user message. Try again with a conversation that "
                          "starts with a user message.")
        if role == previous:
            raise invalid("A conversation must alternate between user and assistant roles. Make sure the "
                          "conversation alternates between user and assistant roles and try again.")
        previous = role
        blocks = m.get("content")
        if not isinstance(blocks, list) or not blocks:
            raise invalid(f"The content field in the Message object at messages.{i} is empty. Add a ContentBlock "
                          "object to the content field and try again.")
        for k, block in enumerate(blocks):
            if isinstance(block, dict) and isinstance(block.get("text"), str) and not block["text"].strip():
                raise invalid(f"The text field in the ContentBlock object at messages.{i}.content.{k} is blank. "
                              "Add text to the text field, and try again.")
        uses = [b["toolUse"] for b in blocks if isinstance(b, dict) and isinstance(b.get("toolUse"), dict)]
        results = [b["toolResult"] for b in blocks if isinstance(b, dict) and isinstance(b.get("toolResult"), dict)]
        if (uses or results) and not has_tools:
            raise invalid("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
        text = _text(blocks)
        if role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": text or None}
            if uses:
                msg["tool_calls"] = [{"id": str(u.get("toolUseId") or ""), "type": "function", "function": {
                    "name": str(u.get("name") or ""), "arguments": orjson.dumps(u.get("input") or {}).decode()}}
                    for u in uses]
            out.append(msg)
            continue
        for r in results:
            out.append({"role": "tool", "tool_call_id": str(r.get("toolUseId") or ""), "content": _tool_result_text(r)})
        images = [b for b in blocks if isinstance(b, dict) and isinstance(b.get("image"), dict)]
        if text or images or not results:
            parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
            parts += [{"type": "image_url", "image_url": {"url": "data:image/{};base64,{}".format(
                b["image"].get("format") or "png", (b["image"].get("source") or {}).get("bytes") or "")}}
                for b in images]
            out.append({"role": "user", "content": parts or text})
    return out


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    config = body.get("toolConfig")
    if config is None:
        return {}
    tools = config.get("tools") if isinstance(config, dict) else None
    if not isinstance(tools, list) or not tools:
        raise invalid("Malformed input request: toolConfig.tools must be a non-empty list")
    specs = [t.get("toolSpec") for t in tools if isinstance(t, dict)]
    if not all(isinstance(s, dict) and s.get("name") and isinstance((s.get("inputSchema") or {}).get("json"), dict)
               for s in specs):
        raise invalid("Malformed input request: each tool needs toolSpec.name and toolSpec.inputSchema.json")
    out: dict[str, Any] = {"tools": [{"type": "function", "function": {
        k: v for k, v in (("name", s["name"]), ("description", s.get("description")),
                          ("parameters", s["inputSchema"]["json"])) if v is not None}} for s in specs]}
    choice = config.get("toolChoice") or {}
    if "any" in choice:
        out["tool_choice"] = "required"
    elif "tool" in choice:
        out["tool_choice"] = {"type": "function", "function": {"name": (choice["tool"] or {}).get("name")}}
    return out


def _config(raw: Any, spec: ModelSpec) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise invalid("Malformed input request: inferenceConfig must be an object")
    unknown = sorted(set(raw) - set(_CONFIG))
    if unknown:
        raise invalid(f"Malformed input request: extraneous key [{unknown[0]}] is not permitted in inferenceConfig")
    cap = raw.get("maxTokens")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise invalid("1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy "
                      "constraint: Member must have value greater than or equal to 1")
    if cap is not None and cap > spec.max_output_tokens:
        raise invalid(f"The maximum tokens you requested exceeds the model limit of {spec.max_output_tokens}. "
                      f"Try again with a maximum tokens value that is lower than {spec.max_output_tokens}.")
    return {_CONFIG[k]: v for k, v in raw.items()}


class BedrockRoutes:
    """`/model/{modelId}/converse` and `/converse-stream` onto the emulator's model."""

    def __init__(self, wire: BedrockWire, app: Any) -> None:
        self.wire, self._app = wire, app

    def match(self, method: str, scope: dict[str, Any]) -> tuple[BedrockWire, Any] | None:
        path = scope["path"].rstrip("/")
        m = _PATH.fullmatch(path)
        if method != "POST" or m is None:
            return None
        model_id, verb = m.groups()
        raw_path = scope.get("raw_path") or path.encode()
        query = scope.get("query_string", b"").decode("latin-1")

        async def handler(receive: Receive, send: Send, headers: dict[str, str]) -> None:
            try:
                await self._serve(model_id, verb == "converse-stream", raw_path.decode("latin-1"), query,
                                  receive, send, headers)
            except WireError as err:
                raise self.wire.typed(err) from None

        return self.wire, handler

    async def _serve(self, model_id: str, stream: bool, raw_path: str, query: str, receive: Receive, send: Send,
                     headers: dict[str, str]) -> None:
        app, wire = self._app, self.wire
        try:  # the signature covers the bytes as sent, so they are kept unparsed until it is checked
            raw = await read_body(receive, {}, app.config.max_body_bytes)
        except BodyTooLarge as exc:
            raise invalid(str(exc)) from None
        wire.authorize(SignedRequest("POST", raw_path, query, headers, raw), app.config.keys)
        spec = model_spec(model_id)
        if spec is None:
            raise wire.unknown_model(model_id)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        req = wire.parse_converse(body, spec, model_id, stream)
        with deferred_writes() as writes:
            usage = wire.input_usage(req, spec)
            choices = app._model.choices(req, spec, wire.tool_id, wire.tok)
            usage.output_tokens = sum(c.output_tokens for c in choices)
            completion = Completion(app._ids.make("", 22), 0, spec, req, usage, choices)
        watch = DisconnectWatch(receive)
        try:
            send_answer = app._stream if stream else app._whole
            outcome, generated = await send_answer(wire, completion, send, watch, False, writes)
        finally:
            watch.close()
        app.billing.charge(spec.name, dataclasses.replace(usage, output_tokens=min(generated, usage.output_tokens)),
                           outcome)


__all__ = ["MODELS", "BedrockRoutes", "BedrockWire", "model_spec"]
