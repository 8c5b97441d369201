"""Google Gemini API (`generateContent`), as its REST reference describes it.

- `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse` (server-sent
  events, each a whole `GenerateContentResponse`; no end marker, the last carries `finishReason`);
- the key in `x-goog-api-key` (or `?key=`); none is 403 `PERMISSION_DENIED`, a wrong one is 400
  `INVALID_ARGUMENT` with reason `API_KEY_INVALID`, as Google answers;
- errors are `{"error": {"code", "message", "status"}}`; an unknown model is 404 `NOT_FOUND`;
- `usageMetadata`: `promptTokenCount` (all input), `candidatesTokenCount` (visible output),
  `thoughtsTokenCount` (2.5 models think by default; billed as output), `totalTokenCount`.

The request is read into the emulator's neutral `ChatRequest` through the OpenAI wire's parser
(one home for prompt counting and validation of the shared parts), so the same deterministic model
answers. Prompt caching, rate limits and injected faults are not emulated on this wire.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Mapping
from urllib.parse import parse_qs

import orjson

from thrifty_emulator.asgi import DisconnectWatch, Receive, Send
from thrifty_emulator.generate import ChatRequest, Completion
from thrifty_emulator.models import ModelSpec
from thrifty_emulator.openai_wire import OpenAIWire
from thrifty_emulator.prompt_cache import deferred_writes
from thrifty_emulator.wire import WireError, pieces

_PREFIX = "/v1beta/models/"
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_FINISH = {"end": "STOP", "length": "MAX_TOKENS", "stop_sequence": "STOP", "tool_use": "STOP"}
_TOP_FIELDS = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
               "cachedContent", "labels"}
_CONFIG = {"maxOutputTokens": "max_tokens", "temperature": "temperature", "topP": "top_p",
           "stopSequences": "stop", "candidateCount": "n", "seed": "seed"}
_CONFIG_IGNORED = {"topK", "responseMimeType", "responseSchema", "responseJsonSchema", "thinkingConfig",
                   "presencePenalty", "frequencyPenalty", "responseModalities"}


def _spec(name: str, reasoning: bool) -> ModelSpec:
    # Context and output limits from Google's model pages (Gemini 2.5: 1,048,576 in, 65,536 out).
    return ModelSpec(name=name, wire="gemini", provider="google", ttft_ms=400, tokens_per_s=180,
                     reasoning=reasoning, prompt_caching=False, context_window=1_048_576, max_output_tokens=65_536)


# 2.5 Flash and Pro think by default; Flash-Lite does not unless asked (thinkingConfig).
MODELS = {m.name: m for m in (_spec("gemini-2.5-flash", True), _spec("gemini-2.5-pro", True),
                                _spec("gemini-2.5-flash-lite", False))}


class GeminiWire(OpenAIWire):
    tool_id = ("call_", 24)
    request_id_header = "x-request-id"
    query_key: str | None = None  # `?key=` of the request at hand (set on a per-request copy)

    def credential(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("x-goog-api-key", "").strip() or self.query_key or None

    def missing_key(self) -> WireError:
        return WireError(403, "permission", "Method doesn't allow unregistered callers (callers without established "
                         "identity). Please use API Key or other form of API consumer identity to call this API.")

    def bad_key(self, key: str) -> WireError:
        return WireError(400, "invalid_request", "API key not valid. Please pass a valid API key.",
                         code="API_KEY_INVALID")

    def unknown_model(self, model: str) -> WireError:
        return WireError(404, "not_found", f"models/{model} is not found for API version v1beta, or is not "
                         "supported for generateContent. Call ListModels to see the list of available models "
                         "and their supported methods.")

    def error_body(self, err: WireError, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"code": err.status, "message": err.message,
                                 "status": _STATUS.get(err.status, "UNKNOWN")}
        if err.code == "API_KEY_INVALID":
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                                 "domain": "googleapis.com"}]
        return {"error": error}

    # --- requests -------------------------------------------------------------------------

    def parse_gemini(self, body: Any, model: str, stream: bool) -> ChatRequest:
        if not isinstance(body, dict):
            raise self.invalid("Invalid JSON payload received.")
        unknown = sorted(set(body) - _TOP_FIELDS)
        if unknown:
            raise self.invalid(f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.')
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise self.invalid("* GenerateContentRequest.contents: contents is not specified")
        return self.parse({"model": model, "stream": stream, "messages": _messages(body, contents, self),
                           **_tools(body), **_config(body.get("generationConfig"), self)})

    # --- answers --------------------------------------------------------------------------

    @staticmethod
    def _usage_metadata(c: Completion) -> dict[str, Any]:
        u = c.usage
        prompt = u.all_input_tokens
        out: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": u.output_tokens - u.reasoning_tokens,
                               "totalTokenCount": prompt + u.output_tokens,
                               "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
        if u.reasoning_tokens:
            out["thoughtsTokenCount"] = u.reasoning_tokens
        return out

    def render(self, c: Completion) -> dict[str, Any]:
        candidates = []
        for i, ch in enumerate(c.choices):
            parts: list[dict[str, Any]] = [{"functionCall": {"name": t.name, "args": t.arguments}}
                                           for t in ch.tool_calls]
            if ch.text or not parts:
                parts.insert(0, {"text": ch.text or ""})
            candidates.append({"content": {"parts": parts, "role": "model"}, "finishReason": _FINISH[ch.finish],
                               "index": i})
        return {"candidates": candidates, "usageMetadata": self._usage_metadata(c),
                "modelVersion": c.spec.response_model, "responseId": c.id}

    def stream(self, c: Completion, per_piece: int) -> list[tuple[bytes, int]]:
        ch = c.choices[0]  # streams of several candidates are not emulated
        head = {"modelVersion": c.spec.response_model, "responseId": c.id}
        running = {"promptTokenCount": c.usage.all_input_tokens}

        def event(parts: list[dict[str, Any]], last: bool = False) -> bytes:
            cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if last:
                cand["finishReason"] = _FINISH[ch.finish]
            usage = self._usage_metadata(c) if last else running
            return b"data: " + orjson.dumps({"candidates": [cand], "usageMetadata": usage, **head}) + b"\r\n\r\n"

        out: list[tuple[bytes, int]] = []
        if ch.tool_calls:
            calls = [{"functionCall": {"name": t.name, "args": t.arguments}} for t in ch.tool_calls]
            out.append((event(calls, last=True), ch.output_tokens - ch.reasoning_tokens))
            return out
        texts = pieces(ch.text or "", self.tok, per_piece) or [("", 0)]
        for k, (text, n) in enumerate(texts):
            out.append((event([{"text": text}], last=k == len(texts) - 1), n))
        return out


def _text(parts: Any, wire: GeminiWire) -> str:
    if not isinstance(parts, list):
        raise wire.invalid("Invalid value at 'contents.parts' (type.googleapis.com/google.ai.generativelanguage."
                           "v1beta.Part): parts must be a list")
    return "".join(p.get("text") or "" for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


def _messages(body: dict[str, Any], contents: list[Any], wire: GeminiWire) -> list[dict[str, Any]]:
    """Gemini turns as the OpenAI parser reads them (functionCall ids paired in order)."""
    out: list[dict[str, Any]] = []
    system = body.get("systemInstruction")
    if isinstance(system, dict):
        out.append({"role": "system", "content": _text(system.get("parts"), wire)})
    pending: list[str] = []
    for i, content in enumerate(contents):
        role = content.get("role", "user") if isinstance(content, dict) else None
        if role not in ("user", "model"):
            raise wire.invalid(f"Please use a valid role: user, model. (contents[{i}].role: {role!r})")
        parts = content.get("parts")
        text = _text(parts, wire)
        calls = [p["functionCall"] for p in parts if isinstance(p, dict) and isinstance(p.get("functionCall"), dict)]
        results = [p["functionResponse"] for p in parts
                   if isinstance(p, dict) and isinstance(p.get("functionResponse"), dict)]
        if role == "model":
            msg: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                ids = [f"call_{i}_{k}" for k in range(len(calls))]
                pending += ids
                msg["tool_calls"] = [{"id": id_, "type": "function", "function": {
                    "name": str(fc.get("name") or ""), "arguments": orjson.dumps(fc.get("args") or {}).decode()}}
                    for id_, fc in zip(ids, calls)]
            out.append(msg)
            continue
        for fr in results:
            out.append({"role": "tool", "tool_call_id": pending.pop(0) if pending else f"call_{i}",
                        "content": orjson.dumps(fr.get("response") or {}).decode()})
        if text or not results:
            out.append({"role": "user", "content": text})
    return out


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    decls = [d for t in body.get("tools") or () if isinstance(t, dict) for d in t.get("functionDeclarations") or ()]
    if not decls:
        return {}
    out: dict[str, Any] = {"tools": [{"type": "function", "function": {
        k: v for k, v in (("name", d.get("name")), ("description", d.get("description")),
                          ("parameters", d.get("parameters"))) if v is not None}} for d in decls]}
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    mode, allowed = config.get("mode"), config.get("allowedFunctionNames") or []
    if mode == "ANY":
        out["tool_choice"] = ({"type": "function", "function": {"name": allowed[0]}} if len(allowed) == 1
                              else "required")
    elif mode == "NONE":
        out["tool_choice"] = "none"
    return out


def _config(raw: Any, wire: GeminiWire) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise wire.invalid("Invalid value at 'generation_config': expected an object")
    unknown = sorted(set(raw) - set(_CONFIG) - _CONFIG_IGNORED)
    if unknown:
        raise wire.invalid(f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                           "'generation_config': Cannot find field.")
    out = {_CONFIG[k]: v for k, v in raw.items() if k in _CONFIG}
    schema = raw.get("responseSchema") or raw.get("responseJsonSchema")
    if raw.get("responseMimeType") == "application/json":
        out["response_format"] = ({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
                                  if isinstance(schema, dict) else {"type": "json_object"})
    return out


class GeminiRoutes:
    """`/v1beta/models/{model}:generateContent` and `:streamGenerateContent` onto the emulator's model."""

    def __init__(self, wire: GeminiWire, app: Any) -> None:
        self.wire, self._app = wire, app

    def match(self, method: str, path: str, query_string: bytes) -> tuple[GeminiWire, Any] | None:
        if method != "POST" or not path.startswith(_PREFIX):
            return None
        model, _, verb = path[len(_PREFIX):].partition(":")
        if verb not in ("generateContent", "streamGenerateContent") or not model:
            return None
        query = parse_qs(query_string.decode("latin-1"))
        wire = copy.copy(self.wire)  # per request: it carries the request's ?key=
        wire.query_key = (query.get("key") or [None])[0]
        stream = verb == "streamGenerateContent"

        async def handler(receive: Receive, send: Send, headers: dict[str, str]) -> None:
            if stream and (query.get("alt") or [None])[0] != "sse":
                raise wire.invalid("this emulator streams server-sent events only: add ?alt=sse")
            await self._serve(wire, model, stream, receive, send, headers)

        return wire, handler

    async def _serve(self, wire: GeminiWire, model: str, stream: bool, receive: Receive, send: Send,
                     headers: dict[str, str]) -> None:
        app = self._app
        wire.authenticate(headers, app.config.keys)
        req = wire.parse_gemini(await app._json_body(wire, receive), model, stream)
        spec = MODELS.get(model)
        if spec is None:
            raise wire.unknown_model(model)
        with deferred_writes() as writes:
            usage = wire.input_usage(req, spec)
            choices = app._model.choices(req, spec, wire.tool_id, wire.tok)
            usage.output_tokens = sum(c.output_tokens for c in choices)
            usage.reasoning_tokens = sum(c.reasoning_tokens for c in choices)
            completion = Completion(app._ids.make("", 22), 0, spec, req, usage, choices)
        watch = DisconnectWatch(receive)
        try:
            send_answer = app._stream if stream else app._whole
            outcome, generated = await send_answer(wire, completion, send, watch, False, writes)
        finally:
            watch.close()
        output = min(generated, usage.output_tokens)
        app.billing.charge(spec.name, dataclasses.replace(
            usage, output_tokens=output, reasoning_tokens=min(usage.reasoning_tokens, output)), outcome)


__all__ = ["MODELS", "GeminiRoutes", "GeminiWire"]
