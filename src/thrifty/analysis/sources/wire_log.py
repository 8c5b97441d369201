"""Request/response logs in a provider's own wire format, one call per line:

    {"timestamp": ..., "request": {...}, "response": {...}, "tags": {...}}

`ts` or `created` may stand for `timestamp` and `metadata` for `tags`; optional `id`, `status`,
`error`, `cost_usd` (or `cost`), `provider`, `latency_ms`, and `wire` naming the dialect outright
(`openai`, `anthropic`, `openai_responses`, ...: see thrifty.wire.names()). Without `wire`, the dialect is
told apart by the shape of the answer, else of the request (`dialect_of`). Usage, the output cap
and the views come from that dialect's wire object, so an Anthropic log line and an OpenAI one
of the same call give the same columns.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from thrifty import wire as wires
from thrifty.analysis.sources.base import JsonLinesSource, LoadContext
from thrifty.analysis.sources.fields import body_fields, count, money, parse_ts, tag_columns, text_or_none
from thrifty.analysis.sources.report import BadRecord
from thrifty.wire import Wire

_TIME_KEYS = ("timestamp", "ts", "created", "time")
# Content block types only Anthropic's Messages API writes in a request.
_ANTHROPIC_BLOCKS = frozenset({"tool_use", "tool_result", "document", "thinking", "redacted_thinking"})


def dialect_of(request: Mapping[str, Any], response: Mapping[str, Any] | None) -> Wire:
    """Which wire format a logged call is in, from its shape (no dialect names are compared).

    The answer is the surest sign: `choices` (chat completions), `type: message` with a content
    list (Anthropic messages), `output` (Responses). Without one: `input` and no `messages` is a
    Responses request; a top-level `system`, Anthropic-only content blocks or `stop_sequences`
    mark an Anthropic one; anything else is read as OpenAI chat.
    """
    if isinstance(response, Mapping):
        if isinstance(response.get("choices"), list):
            return wires.OPENAI_CHAT
        if response.get("type") == "message" or isinstance(response.get("content"), list):
            return wires.ANTHROPIC_MESSAGES
        if isinstance(response.get("output"), list) or response.get("object") == "response":
            return wires.OPENAI_RESPONSES
    if "input" in request and "messages" not in request:
        return wires.OPENAI_RESPONSES
    if "system" in request or "stop_sequences" in request or _has_anthropic_blocks(request.get("messages")):
        return wires.ANTHROPIC_MESSAGES
    return wires.OPENAI_CHAT


def _has_anthropic_blocks(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") in _ANTHROPIC_BLOCKS
                                             for b in content):
            return True
    return False


class WireLogs(JsonLinesSource):
    name = "wire"
    description = "JSON Lines {timestamp, request, response, tags} in the OpenAI or Anthropic wire format"

    def record(self, obj: dict[str, Any], line: int, ctx: LoadContext) -> dict[str, Any]:
        request = obj.get("request")
        if not isinstance(request, dict):
            raise BadRecord("request", "missing" if request is None else "not a JSON object")
        response = obj.get("response")
        if response is not None and not isinstance(response, dict):
            raise BadRecord("response", "not a JSON object")
        time_key = next((k for k in _TIME_KEYS if obj.get(k) is not None), "timestamp")
        named = obj.get("wire")
        if named is not None:
            try:
                wire = wires.get(str(named))
            except KeyError as exc:
                raise BadRecord("wire", str(exc.args[0])) from None
        else:
            wire = dialect_of(request, response)
        requested = text_or_none(request.get("model"))
        rec: dict[str, Any] = {"ts": parse_ts(obj.get(time_key), time_key), "requested_model": requested,
                               "provider": text_or_none(obj.get("provider")),
                               "stream": request.get("stream") if isinstance(request.get("stream"), bool) else None}
        if obj.get("id") is not None:
            rec["id"] = str(obj["id"])
        elif response and response.get("id"):
            rec["id"] = str(response["id"])
        rec.update(body_fields(wire, request))
        rec["request_body"] = orjson.dumps(request).decode()
        error = obj.get("error") or (response.get("error") if response else None)
        status = obj.get("status")
        if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
            raise BadRecord("status", "not an HTTP status")
        if error:
            rec["error"] = _error_text(error)
            rec["status"] = status or 500
        else:
            rec["status"] = status or (200 if response is not None else None)
        if response is not None and not error:
            rec["response_body"] = orjson.dumps(response).decode()
            rec["model"] = text_or_none(response.get("model")) or requested
            usage_obj = response.get(wire.usage_key)
            if usage_obj is not None and not isinstance(usage_obj, dict):
                raise BadRecord(f"response.{wire.usage_key}", "not a JSON object")
            if usage_obj:
                usage = wire.usage_of(usage_obj)
                rec.update(input_tokens=usage.prompt_tokens, cached_tokens=usage.cache_read_tokens,
                           cache_write_tokens=usage.cache_write_tokens, output_tokens=usage.output_tokens,
                           reasoning_tokens=usage.reasoning_tokens)
        else:
            rec["model"] = requested
        cost = obj.get("cost_usd", obj.get("cost"))
        rec["cost_usd"] = money(cost, "cost_usd")
        tags = obj.get("tags") if obj.get("tags") is not None else obj.get("metadata")
        for column, value in tag_columns(tags).items():
            if rec.get(column) is None:
                rec[column] = value
        if rec.get("user_id") is None:
            rec["user_id"] = text_or_none(wire.user(request))
        if rec.get("input_tokens") is not None:
            count(rec["input_tokens"], "response.usage")  # a negative count from a broken log is bad
        ctx.pricer.fill(rec)
        return rec


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        inner = error.get("error") if isinstance(error.get("error"), dict) else error
        return str(inner.get("type") or inner.get("code") or inner.get("message") or "error")
    return str(error)
