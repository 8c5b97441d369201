"""OpenAI chat completions, as the API validates, bills and streams them.

Shapes follow OpenAI's OpenAPI spec (CreateChatCompletionResponse, CreateChatCompletionStreamResponse,
the `{"error": {message, type, param, code}}` error).
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping

from thrifty_emulator.generate import ChatRequest, Choice, Completion, Tool
from thrifty_emulator.keys import mask
from thrifty_emulator.models import ModelSpec
from thrifty_emulator.prompt import PromptBuilder, Tokenizer
from thrifty_emulator.prompt_cache import Clock, PrefixCache
from thrifty_emulator.recorded import last_user_text
from thrifty_emulator.usage import TokenCounts, openai_usage
from thrifty_emulator.validation import openai_known, openai_model_rules
from thrifty_emulator.wire import Wire, WireError, canonical, pieces, sse

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
FINISH = {"end": "stop", "stop_sequence": "stop", "length": "length", "tool_use": "tool_calls"}
IMAGE_TOKENS = {"low": 85, "high": 765, "auto": 765}
FILE_TOKENS = 1_500
AUDIO_TOKENS = 400
EXTENDED_RETENTION_S = 24 * 3600.0
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")
_TYPE_BY_KIND = {"invalid_request": "invalid_request_error", "authentication": "invalid_request_error",
                 "not_found": "invalid_request_error", "rate_limit": "requests", "rate_limit_tokens": "tokens",
                 "api_error": "server_error",
                 "unavailable": "server_error", "overloaded": "server_error", "bad_gateway": "cf_bad_gateway"}
_FAULT_MESSAGES = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The server is overloaded or not ready yet.",
    529: "The engine is currently overloaded, please try again later.",
}
_DONE = b"data: [DONE]\n\n"


def _fingerprint(spec: ModelSpec) -> str:
    return "fp_" + hashlib.blake2b(spec.response_model.encode(), digest_size=5).hexdigest()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class OpenAIWire(Wire):
    name = "openai"
    tool_id = ("call_", 24)
    request_id_header = "x-request-id"

    def __init__(self, tokenizer: Tokenizer, clock: Clock, cache_ttl_s: float) -> None:
        super().__init__(tokenizer)
        self.cache = PrefixCache(clock)
        self.cache_ttl_s = cache_ttl_s

    # --- requests -------------------------------------------------------------------------

    def credential(self, headers: Mapping[str, str]) -> str | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def missing_key(self) -> WireError:
        return WireError(401, "authentication",
                         "You didn't provide an API key. You need to provide your API key in an Authorization "
                         "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")

    def bad_key(self, key: str) -> WireError:
        return WireError(401, "authentication", f"Incorrect API key provided: {mask(key)}. You can find your API "
                         "key at https://platform.openai.com/account/api-keys.", code="invalid_api_key")

    def parse(self, body: Any) -> ChatRequest:
        if not isinstance(body, dict):
            raise self.invalid("We could not parse the JSON body of your request. (HINT: This likely means you "
                               "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)")
        openai_known(body)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise self.invalid("you must provide a model parameter")
        messages = body.get("messages")
        if messages is None:
            raise self.invalid("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
        if not isinstance(messages, list):
            raise self.invalid("Invalid type for 'messages': expected an array.", "messages", "invalid_type")
        if not messages:
            raise self.invalid("Invalid 'messages': empty array. Expected an array with minimum length 1, "
                               "but got an empty array instead.", "messages", "empty_array")
        tools = self._tools(body.get("tools"))
        tool_choice, forced = self._tool_choice(body.get("tool_choice"), tools)
        json_schema, json_mode = self._response_format(body.get("response_format"))
        stream = bool(body.get("stream"))
        stream_options = body.get("stream_options")
        if stream_options is not None and not stream:
            raise self.invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                               "stream_options", "invalid_value")
        builder = PromptBuilder(self.tok)
        for tool in body.get("tools") or ():
            builder.text("# tool\n" + canonical(tool)).end_block()
        if body.get("response_format") is not None and not isinstance(body["response_format"], str):
            builder.text("# response format\n" + canonical(body["response_format"])).end_block()
        for i, message in enumerate(messages):
            self._message(builder, message, i)
            builder.end_block()
        effort = body.get("reasoning_effort")
        if effort is not None and effort not in REASONING_EFFORTS:
            raise self.invalid(f"Invalid value: '{effort}'. Supported values are: "
                               + ", ".join(f"'{e}'" for e in REASONING_EFFORTS) + ".",
                               "reasoning_effort", "invalid_value")
        self._check_sampling(body)
        cache_key = body.get("prompt_cache_key")
        retention = body.get("prompt_cache_retention")
        return ChatRequest(
            model=model, prompt=builder.build(), stream=stream, n=self._n(body.get("n")),
            max_tokens=self._max_tokens(body), stops=self._stops(body.get("stop")),
            tools=tools, tool_choice=tool_choice, forced_tool=forced,
            after_tool_result=isinstance(messages[-1], dict) and messages[-1].get("role") in ("tool", "function"),
            json_schema=json_schema, json_mode=json_mode,
            include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
            reasoning_effort=effort, cache_key=cache_key if isinstance(cache_key, str) else None,
            cache_ttl_s=EXTENDED_RETENTION_S if retention == "24h" else None,
            service_tier=body.get("service_tier") if isinstance(body.get("service_tier"), str) else None,
            user_text=last_user_text(messages), body=body,
        )

    def check(self, req: ChatRequest, spec: ModelSpec, headers: Mapping[str, str]) -> None:
        openai_model_rules(req, spec)

    def rate_need(self, req: ChatRequest, spec: ModelSpec, input_tokens: int) -> dict[str, int]:
        # "the maximum of max_tokens and the estimated number of tokens" of the request (rate limits guide)
        return {"requests": 1, "tokens": req.prompt.tokens + (req.max_tokens or 0) * req.n}

    def rate_limited(self, model: str, dimension: str, limit: int, used: int, requested: int,
                     retry_after_s: int | None) -> WireError:
        what = "requests per min (RPM)" if dimension == "requests" else "tokens per min (TPM)"
        kind = "rate_limit" if dimension == "requests" else "rate_limit_tokens"
        more = "Visit https://platform.openai.com/account/rate-limits to learn more."
        if retry_after_s is None:
            return WireError(429, kind, f"Request too large for {model} in organization org-emulator on {what}: "
                             f"Limit {limit}, Requested {requested}. The input or output tokens must be reduced in "
                             f"order to run successfully. {more}", code="rate_limit_exceeded")
        return WireError(429, kind, f"Rate limit reached for {model} in organization org-emulator on {what}: "
                         f"Limit {limit}, Used {used}, Requested {requested}. Please try again in {retry_after_s}s. "
                         f"{more}", code="rate_limit_exceeded", headers={"retry-after": str(retry_after_s)})

    def _check_sampling(self, body: dict[str, Any]) -> None:
        """Sampling settings do not change the emulated answer, but the API still validates them."""
        t = body.get("temperature")
        if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 <= t <= 2):
            raise self.invalid(f"Invalid 'temperature': expected a number between 0 and 2, got {t!r}.",
                               "temperature", "invalid_value")
        for name, low, high in (("top_p", 0, 1), ("presence_penalty", -2, 2), ("frequency_penalty", -2, 2)):
            v = body.get(name)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not low <= v <= high):
                raise self.invalid(f"Invalid '{name}': expected a number between {low} and {high}, got {v!r}.",
                                   name, "invalid_value")
        user = body.get("user")
        if user is not None and not isinstance(user, str):
            raise self.invalid("Invalid type for 'user': expected a string.", "user", "invalid_type")

    def _n(self, n: Any) -> int:
        if n is None:
            return 1
        if not _is_int(n) or not 1 <= n <= 128:
            raise self.invalid("Invalid 'n': expected an integer between 1 and 128.", "n", "invalid_value")
        return n

    def _max_tokens(self, body: dict[str, Any]) -> int | None:
        for name in ("max_completion_tokens", "max_tokens"):
            v = body.get(name)
            if v is None:
                continue
            if not _is_int(v) or v < 1:
                raise self.invalid(f"Invalid '{name}': integer below minimum value. Expected a value >= 1.",
                                   name, "integer_below_min_value")
            return v
        return None

    def _stops(self, stop: Any) -> list[str]:
        if stop is None:
            return []
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > 4:
            raise self.invalid("Invalid 'stop': expected a string or an array of at most 4 strings.",
                               "stop", "invalid_value")
        return [s for s in stops if s]

    def _tools(self, raw: Any) -> list[Tool]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise self.invalid("Invalid type for 'tools': expected an array.", "tools", "invalid_type")
        tools = []
        for i, t in enumerate(raw):
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict) \
                    or not isinstance(fn.get("name"), str) or not fn["name"]:
                raise self.invalid(f"Invalid 'tools[{i}]': expected a function tool with a name.",
                                   f"tools[{i}]", "invalid_value")
            params = fn.get("parameters")
            tools.append(Tool(fn["name"], params if isinstance(params, dict) else {}))
        return tools

    def _tool_choice(self, raw: Any, tools: list[Tool]) -> tuple[str, str | None]:
        if raw is None:
            return ("auto" if tools else "none"), None
        if not tools:
            raise self.invalid("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                               "are specified.", "tool_choice", None)
        if raw in ("none", "auto", "required"):
            return raw, None
        name = (raw.get("function") or {}).get("name") if isinstance(raw, dict) else None
        if not isinstance(name, str) or name not in {t.name for t in tools}:
            raise self.invalid("Invalid value for 'tool_choice': it must be 'none', 'auto', 'required' or name "
                               "one of the provided tools.", "tool_choice", "invalid_value")
        return "tool", name

    def _response_format(self, raw: Any) -> tuple[dict[str, Any] | None, bool]:
        if raw is None:
            return None, False
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind == "text":
            return None, False
        if kind == "json_object":
            return None, True
        if kind == "json_schema":
            spec = raw.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise self.invalid("Missing required parameter: 'response_format.json_schema.name'.",
                                   "response_format.json_schema.name", "missing_required_parameter")
            schema = spec.get("schema")
            return (schema if isinstance(schema, dict) else {}), False
        raise self.invalid("Invalid value for 'response_format.type': expected 'text', 'json_object' or "
                           "'json_schema'.", "response_format.type", "invalid_value")

    def _message(self, b: PromptBuilder, m: Any, i: int) -> None:
        if not isinstance(m, dict):
            raise self.invalid(f"Invalid type for 'messages[{i}]': expected an object.", f"messages[{i}]",
                               "invalid_type")
        role = m.get("role")
        if role not in ROLES:
            raise self.invalid(f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                               "'function', 'tool', and 'developer'.", f"messages[{i}].role", "invalid_value")
        name = m.get("name")
        b.text(f"<|{role}|>" + (f" {name}" if isinstance(name, str) else "") + "\n")
        content = m.get("content")
        if isinstance(content, str):
            b.text(content)
        elif isinstance(content, list):
            for part in content:
                self._part(b, part)
        elif content is not None:
            raise self.invalid(f"Invalid type for 'messages[{i}].content': expected a string or an array.",
                               f"messages[{i}].content", "invalid_type")
        elif role == "user":
            raise self.invalid(f"Invalid value for 'messages[{i}].content': expected a string or an array, "
                               "got null.", f"messages[{i}].content", "invalid_value")
        if m.get("tool_calls"):
            b.text(canonical(m["tool_calls"]))
        if isinstance(m.get("tool_call_id"), str):
            b.text(" " + m["tool_call_id"])

    def _part(self, b: PromptBuilder, part: Any) -> None:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            b.text(str(part.get("text", "")))
        elif kind == "image_url":
            image = part.get("image_url") or {}
            detail = image.get("detail", "auto") if isinstance(image, dict) else "auto"
            url = image.get("url", "") if isinstance(image, dict) else str(image)
            b.opaque(url.encode(), IMAGE_TOKENS.get(detail, IMAGE_TOKENS["auto"]))
        elif kind == "input_audio":
            b.opaque(canonical(part).encode(), AUDIO_TOKENS)
        elif kind == "file":
            b.opaque(canonical(part).encode(), FILE_TOKENS)
        else:
            b.text(canonical(part))

    def input_usage(self, req: ChatRequest, spec: ModelSpec) -> TokenCounts:
        total = req.prompt.tokens
        cached = 0
        if spec.prompt_caching:
            scope = spec.name + "\x00" + (req.cache_key or "")
            cached = self.cache.lookup_and_store(scope, req.prompt.ids, req.cache_ttl_s or self.cache_ttl_s)
        return TokenCounts(input_tokens=total - cached, cache_read_tokens=cached)

    def reset(self) -> None:
        self.cache.clear()

    # --- responses ------------------------------------------------------------------------

    def _usage(self, c: Completion) -> dict[str, Any]:
        return openai_usage(c.usage)

    @staticmethod
    def _tier(c: Completion) -> str:
        asked = c.request.service_tier
        return asked if asked in ("flex", "priority", "scale") else "default"

    def render(self, c: Completion) -> dict[str, Any]:
        return {
            "id": c.id, "object": "chat.completion", "created": c.created, "model": c.spec.response_model,
            "choices": [{"index": i, "message": self._message_out(ch), "logprobs": None,
                         "finish_reason": FINISH[ch.finish]} for i, ch in enumerate(c.choices)],
            "usage": self._usage(c), "service_tier": self._tier(c), "system_fingerprint": _fingerprint(c.spec),
        }

    @staticmethod
    def _message_out(ch: Choice) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": ch.text, "refusal": None, "annotations": []}
        if ch.tool_calls:
            message["tool_calls"] = [{"id": t.id, "type": "function",
                                      "function": {"name": t.name, "arguments": t.arguments_json}}
                                     for t in ch.tool_calls]
        return message

    def stream(self, c: Completion, per_piece: int) -> list[tuple[bytes, int]]:
        head = {"id": c.id, "object": "chat.completion.chunk", "created": c.created,
                "model": c.spec.response_model, "service_tier": self._tier(c),
                "system_fingerprint": _fingerprint(c.spec)}
        if c.request.include_usage:
            head["usage"] = None

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**head, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        per_choice = [self._choice_chunks(i, ch, per_piece, chunk) for i, ch in enumerate(c.choices)]
        events: list[tuple[bytes, int]] = []
        longest = max(len(chunks) for chunks in per_choice)
        for step in range(longest):  # interleaved, as the API sends n > 1 choices
            for chunks in per_choice:
                if step < len(chunks):
                    events.append((sse(chunks[step][0]), chunks[step][1]))
        if c.request.include_usage:
            events.append((sse({**head, "choices": [], "usage": self._usage(c)}), 0))
        events.append((_DONE, 0))
        return events

    def _choice_chunks(self, i: int, ch: Choice, per_piece: int, chunk: Any) -> list[tuple[dict[str, Any], int]]:
        out: list[tuple[dict[str, Any], int]] = []
        if ch.tool_calls:
            for k, call in enumerate(ch.tool_calls):
                first = {"index": k, "id": call.id, "type": "function",
                         "function": {"name": call.name, "arguments": ""}}
                delta = {"tool_calls": [first]}
                if k == 0:
                    delta = {"role": "assistant", "content": None, "refusal": None, **delta}
                out.append((chunk(i, delta), 0))
                for text, n in pieces(call.arguments_json, self.tok, per_piece):
                    out.append((chunk(i, {"tool_calls": [{"index": k, "function": {"arguments": text}}]}), n))
        else:
            out.append((chunk(i, {"role": "assistant", "content": "", "refusal": None}), 0))
            for text, n in pieces(ch.text or "", self.tok, per_piece):
                out.append((chunk(i, {"content": text}), n))
        out.append((chunk(i, {}, FINISH[ch.finish]), 0))
        return out

    # --- errors and listings --------------------------------------------------------------

    def error_body(self, err: WireError, request_id: str) -> dict[str, Any]:
        return {"error": {"message": err.message, "type": _TYPE_BY_KIND.get(err.kind, "server_error"),
                          "param": err.param, "code": err.code}}

    def fault_error(self, status: int, model: str, retry_after_s: int) -> WireError:
        if status == 429:
            return WireError(429, "rate_limit",
                             f"Rate limit reached for {model} in organization org-emulator on requests per min "
                             f"(RPM): Limit 500, Used 500, Requested 1. Please try again in {retry_after_s}s.",
                             code="rate_limit_exceeded", headers={"retry-after": str(retry_after_s)})
        kind = {502: "bad_gateway", 503: "unavailable", 529: "overloaded"}.get(status, "api_error")
        return WireError(status, kind, _FAULT_MESSAGES.get(status, _FAULT_MESSAGES[500]))

    def unknown_model(self, model: str) -> WireError:
        return WireError(404, "not_found", f"The model `{model}` does not exist or you do not have access to it.",
                         code="model_not_found")

    def models_body(self, specs: Iterable[ModelSpec]) -> dict[str, Any]:
        return {"object": "list", "data": [self.model_entry(s) for s in specs if s.wire == self.name]}

    @staticmethod
    def model_entry(spec: ModelSpec) -> dict[str, Any]:
        return {"id": spec.name, "object": "model", "created": 1_715_367_049, "owned_by": spec.provider}
