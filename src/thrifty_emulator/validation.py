"""Request rules the providers enforce with a 400, with their own wording (docs/emulator.md cites each).

Two stages, as the APIs apply them: what any request must satisfy (known top-level parameters,
the shape of `thinking`), checked while parsing; then what the named model allows (reasoning
models' parameters, output maxima, context windows, thinking budgets), once the model is known.
"""

from __future__ import annotations

from typing import Any, Mapping

from thrifty_emulator.generate import ChatRequest
from thrifty_emulator.models import ModelSpec
from thrifty_emulator.wire import WireError

# Chat Completions request body (API reference, "Create chat completion"), deprecated ones included.
OPENAI_PARAMS = frozenset({
    "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "metadata", "modalities", "n", "parallel_tool_calls", "prediction",
    "presence_penalty", "prompt_cache_key", "prompt_cache_retention", "reasoning_effort", "response_format",
    "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options", "temperature",
    "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
})
# Messages request body (API reference, "Messages"); `cache_control` is automatic prompt caching,
# `output_format` / `output_config` structured outputs and effort.
ANTHROPIC_PARAMS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature", "top_p",
    "top_k", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers", "context_management",
    "cache_control", "output_format", "output_config",
})
# Count tokens request body (API reference, "Count tokens in a message").
COUNT_TOKENS_PARAMS = frozenset({
    "model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers", "context_management",
    "cache_control", "output_format", "output_config",
})

INTERLEAVED_THINKING_BETA = "interleaved-thinking-2025-05-14"
MIN_THINKING_BUDGET = 1024
_THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


def _invalid(message: str, param: str | None = None, code: str | None = None) -> WireError:
    return WireError(400, "invalid_request", message, param=param, code=code)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# --- OpenAI ---------------------------------------------------------------------------------

def openai_known(body: dict[str, Any]) -> None:
    unknown = [k for k in body if k not in OPENAI_PARAMS]
    if unknown:
        raise _invalid(f"Unrecognized request argument supplied: {unknown[0]}")


def _unsupported_parameter(name: str, hint: str = "") -> WireError:
    return _invalid(f"Unsupported parameter: '{name}' is not supported with this model.{hint}", name,
                    "unsupported_parameter")


def _unsupported_value(name: str, value: Any, default: Any) -> WireError:
    return _invalid(f"Unsupported value: '{name}' does not support {value!r} with this model. Only the default "
                    f"({default}) value is supported.", name, "unsupported_value")


def openai_model_rules(req: ChatRequest, spec: ModelSpec) -> None:
    body = req.body
    if spec.reasoning:
        # Reasoning models (o-series, gpt-5): reasoning guide, "Reasoning models" parameter support.
        if body.get("max_tokens") is not None:
            raise _unsupported_parameter("max_tokens", " Use 'max_completion_tokens' instead.")
        for name in ("temperature", "top_p"):
            v = body.get(name)
            if v is not None and v != 1:
                raise _unsupported_value(name, v, 1)
        for name in ("presence_penalty", "frequency_penalty"):
            v = body.get(name)
            if v is not None and v != 0:
                raise _unsupported_value(name, v, 0)
        if body.get("logprobs") or body.get("top_logprobs") is not None:
            raise _unsupported_parameter("logprobs" if body.get("logprobs") else "top_logprobs")
        if body.get("logit_bias"):
            raise _unsupported_parameter("logit_bias")
        if body.get("stop"):
            raise _unsupported_parameter("stop")
    else:
        for name in ("reasoning_effort", "verbosity"):
            if body.get(name) is not None:
                raise _unsupported_parameter(name)
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    asked = req.max_tokens
    if asked is not None and asked > spec.max_output_tokens:
        raise _invalid(f"{name} is too large: {asked}. This model supports at most {spec.max_output_tokens} "
                       f"completion tokens, whereas you provided {asked}.", name, "invalid_value")
    prompt = req.prompt.tokens
    if prompt + (asked or 0) > spec.context_window:
        if asked:
            message = (f"This model's maximum context length is {spec.context_window} tokens. However, you "
                       f"requested {prompt + asked} tokens ({prompt} in the messages, {asked} in the completion). "
                       "Please reduce the length of the messages or completion.")
        else:
            message = (f"This model's maximum context length is {spec.context_window} tokens. However, your "
                       f"messages resulted in {prompt} tokens. Please reduce the length of the messages.")
        raise _invalid(message, "messages", "context_length_exceeded")


# --- Anthropic ------------------------------------------------------------------------------

def anthropic_known(body: dict[str, Any], allowed: frozenset[str] = ANTHROPIC_PARAMS) -> None:
    unknown = [k for k in body if k not in allowed]
    if unknown:
        raise _invalid(f"{unknown[0]}: Extra inputs are not permitted")


def thinking_budget(body: dict[str, Any]) -> int | None:
    """The budget of an enabled `thinking`, None when absent or disabled; raises on a bad shape."""
    thinking = body.get("thinking")
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "disabled":
        return None
    if kind == "adaptive":
        raise _invalid("thinking.type: adaptive thinking is not supported on this model; use "
                       "'enabled' with budget_tokens")
    if kind != "enabled":
        raise _invalid("thinking: Input tag does not match any of the expected tags: 'enabled', 'disabled'"
                       if isinstance(thinking, dict) else "thinking: Input should be a valid dictionary")
    budget = thinking.get("budget_tokens")
    if budget is None:
        raise _invalid("thinking.enabled.budget_tokens: Field required")
    if not isinstance(budget, int) or isinstance(budget, bool):
        raise _invalid("thinking.enabled.budget_tokens: Input should be a valid integer")
    if budget < MIN_THINKING_BUDGET:
        raise _invalid(f"thinking.enabled.budget_tokens: Input should be greater than or equal to "
                       f"{MIN_THINKING_BUDGET}")
    return budget


def _betas(headers: Mapping[str, str]) -> set[str]:
    return {b.strip() for b in headers.get("anthropic-beta", "").split(",") if b.strip()}


def anthropic_model_rules(req: ChatRequest, spec: ModelSpec, headers: Mapping[str, str]) -> None:
    body = req.body
    max_tokens = req.max_tokens or 0
    if max_tokens > spec.max_output_tokens:
        raise _invalid(f"max_tokens: {max_tokens} > {spec.max_output_tokens}, which is the maximum allowed number "
                       f"of output tokens for {spec.response_model}")
    budget = req.thinking_budget
    if budget is not None:
        if not spec.thinking:
            raise _invalid(f"'{spec.response_model}' does not support thinking.")
        if budget >= max_tokens and INTERLEAVED_THINKING_BETA not in _betas(headers):
            raise _invalid("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
                           f"documentation at {_THINKING_DOCS}#max-tokens-and-context-window-size")
        t = body.get("temperature")
        if t is not None and t != 1:
            raise _invalid("`temperature` may only be set to 1 when thinking is enabled. Please consult our "
                           f"documentation at {_THINKING_DOCS}#feature-compatibility")
        if body.get("top_k") is not None:
            raise _invalid("`top_k` must be unset when thinking is enabled. Please consult our documentation at "
                           f"{_THINKING_DOCS}#feature-compatibility")
        p = body.get("top_p")
        if p is not None and not (_number(p) and 0.95 <= p <= 1):
            raise _invalid("`top_p` must be greater than or equal to 0.95 and less than or equal to 1, or unset, "
                           f"when thinking is enabled. Please consult our documentation at {_THINKING_DOCS}"
                           "#feature-compatibility")
        if req.tool_choice in ("required", "tool"):
            raise _invalid("Thinking may not be enabled when tool_choice forces tool use.")
    prompt = req.prompt.tokens
    if prompt > spec.context_window:
        raise _invalid(f"prompt is too long: {prompt} tokens > {spec.context_window} maximum")
    if prompt + max_tokens > spec.context_window:
        raise _invalid(f"input length and `max_tokens` exceed context limit: {prompt} + {max_tokens} > "
                       f"{spec.context_window}, decrease input length or `max_tokens` and try again")
