"""LiteLLM's logs: one StandardLoggingPayload JSON object per line, as its logging integrations
(custom loggers, S3/GCS buckets, Langfuse-style sinks) write them.

The fields read (docs.litellm.ai/docs/proxy/logging_spec): `id`, `model`, `model_group`,
`custom_llm_provider`, `messages`, `response`, `response_cost`, `prompt_tokens`,
`completion_tokens`, `startTime`, `status` ("success" / "failure"), `error_str`,
`error_information`, `cache_hit`, `model_parameters` (max_tokens, stream, ...), `request_tags`,
`end_user`, and `metadata` (`user_api_key_team_id`/`_alias`, `user_api_key_user_id`,
`requester_metadata`, `spend_logs_metadata`). Tags name the feature, call site, task and cohort
("feature:search" or a mapping; see fields.tag_columns).

LiteLLM speaks the OpenAI chat format to its callers, so `messages` + `model_parameters` are read
as an OpenAI chat request, and `prompt_tokens` counts every input token, cached ones included.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from thrifty.analysis.sources.base import JsonLinesSource, LoadContext
from thrifty.analysis.sources.fields import body_fields, count, money, parse_ts, tag_columns, text_or_none
from thrifty.analysis.sources.report import BadRecord
from thrifty.wire import OPENAI_CHAT

# model_parameters that are request fields (the rest, e.g. LiteLLM's own knobs, are left out).
_REQUEST_PARAMS = ("max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "n", "seed",
                   "tools", "tool_choice", "response_format", "stream", "user", "presence_penalty",
                   "frequency_penalty", "logprobs", "top_logprobs", "reasoning_effort")
# Keys that mark a StandardLoggingPayload (format detection).
MARKERS = frozenset({"response_cost", "model_parameters", "call_type", "startTime", "standard_logging_object",
                     "model_map_information", "hidden_params"})


class LiteLLMLogs(JsonLinesSource):
    name = "litellm"
    description = "LiteLLM StandardLoggingPayload JSON Lines (its logging integrations' output)"

    def record(self, obj: dict[str, Any], line: int, ctx: LoadContext) -> dict[str, Any]:
        if isinstance(obj.get("standard_logging_object"), dict):  # a callback's whole kwargs
            obj = obj["standard_logging_object"]
        model = obj.get("model")
        if not isinstance(model, str) or not model:
            raise BadRecord("model", "missing" if model is None else "not a model name")
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        params = obj.get("model_parameters") if isinstance(obj.get("model_parameters"), dict) else {}
        response = obj.get("response") if isinstance(obj.get("response"), dict) else None
        usage = response.get("usage") if response and isinstance(response.get("usage"), dict) else {}
        rec: dict[str, Any] = {
            "ts": parse_ts(obj.get("startTime"), "startTime"),
            "tenant": text_or_none(meta.get("user_api_key_team_id") or meta.get("user_api_key_team_alias")
                                   or meta.get("user_api_key_org_id")),
            "user_id": text_or_none(obj.get("end_user") or meta.get("user_api_key_end_user_id")
                                    or meta.get("user_api_key_user_id")),
            "provider": text_or_none(obj.get("custom_llm_provider")),
            "requested_model": text_or_none(obj.get("model_group")) or model,
            "model": text_or_none(response.get("model")) if response else None,
            "input_tokens": count(obj.get("prompt_tokens"), "prompt_tokens"),
            "output_tokens": count(obj.get("completion_tokens"), "completion_tokens"),
            "cost_usd": money(obj.get("response_cost"), "response_cost"),
            "stream": _flag(params.get("stream", obj.get("stream"))),
        }
        rec["model"] = rec["model"] or model
        if obj.get("id"):
            rec["id"] = str(obj["id"])
        status = obj.get("status")
        if status == "failure" or obj.get("error_str"):
            info = obj.get("error_information") if isinstance(obj.get("error_information"), dict) else {}
            code = str(info.get("error_code") or "")
            rec["status"] = int(code) if code.isdigit() and 100 <= int(code) < 600 else 500
            rec["error"] = text_or_none(info.get("error_class") or obj.get("error_str")) or "failure"
        elif status in (None, "success"):
            rec["status"] = 200
        else:
            raise BadRecord("status", f"neither success nor failure: {str(status)[:40]!r}")
        if obj.get("cache_hit") is not None:
            rec["cache"] = "exact" if obj.get("cache_hit") else "miss"
        rec.update(_usage_details(usage))
        for tags in (obj.get("request_tags"), meta.get("tags"), meta.get("requester_metadata"),
                     meta.get("spend_logs_metadata")):
            for column, value in tag_columns(tags).items():
                if rec.get(column) is None:
                    rec[column] = value
        body = _request(obj.get("messages"), model, params)
        if body is not None:
            rec.update(body_fields(OPENAI_CHAT, body))
            rec["request_body"] = orjson.dumps(body).decode()
        if response is not None:
            rec["response_body"] = orjson.dumps(response).decode()
        if rec.get("max_tokens") is None:
            rec["max_tokens"] = count(params.get("max_tokens") or params.get("max_completion_tokens"),
                                      "model_parameters.max_tokens")
        ctx.pricer.fill(rec)
        return rec


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _usage_details(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Cache and reasoning tokens from the response's OpenAI-shaped usage, as LiteLLM keeps it."""
    out: dict[str, Any] = {}
    prompt = usage.get("prompt_tokens_details")
    cached = prompt.get("cached_tokens") if isinstance(prompt, dict) else None
    cached = cached if cached is not None else usage.get("cache_read_input_tokens")
    out["cached_tokens"] = count(cached, "response.usage.prompt_tokens_details.cached_tokens")
    out["cache_write_tokens"] = count(usage.get("cache_creation_input_tokens"),
                                      "response.usage.cache_creation_input_tokens")
    completion = usage.get("completion_tokens_details")
    out["reasoning_tokens"] = count(completion.get("reasoning_tokens") if isinstance(completion, dict) else None,
                                    "response.usage.completion_tokens_details.reasoning_tokens")
    return {k: v for k, v in out.items() if v is not None}


def _request(messages: Any, model: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The OpenAI chat request the log describes, or None when it kept no messages."""
    if isinstance(messages, str) and messages:
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        return None
    body: dict[str, Any] = {"model": model, "messages": messages}
    body.update({k: params[k] for k in _REQUEST_PARAMS if params.get(k) is not None})
    return body
