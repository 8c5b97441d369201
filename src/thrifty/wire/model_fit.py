"""A chat-completions body fitted to the OpenAI model the gateway chose for it.

When routing, an alias, a budget downgrade or an escalation sends a request to a model other than
the one its client wrote it for (or a translated Anthropic request lands on an OpenAI model), the
body must be one that model takes: OpenAI's reasoning models (o1, o3, o4, gpt-5 families) refuse
`max_tokens` ("Use 'max_completion_tokens' instead"), any `temperature` / `top_p` other than 1,
non-zero penalties, logprobs, logit_bias and `stop`; the other models refuse `reasoning_effort`
and `verbosity`. A client that names such a model itself gets the provider's own 400 unchanged.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_DEFAULTS = {"temperature": 1, "top_p": 1, "presence_penalty": 0, "frequency_penalty": 0}
_REASONING_REFUSES = ("logprobs", "top_logprobs", "logit_bias", "stop")
_REASONING_ONLY = ("reasoning_effort", "verbosity")


def is_reasoning_model(model: str) -> bool:
    return model.lower().startswith(REASONING_PREFIXES)


def fit_openai_body(body: Json, model: str) -> Json:
    """`body` (already naming `model`) without what `model` would refuse."""
    out = dict(body)
    if is_reasoning_model(model):
        if "max_tokens" in out:
            cap = out.pop("max_tokens")
            if cap is not None:
                out.setdefault("max_completion_tokens", cap)
        for key, default in _DEFAULTS.items():
            if key in out and out[key] is not None and out[key] != default:
                del out[key]
        for key in _REASONING_REFUSES:
            out.pop(key, None)
    else:
        for key in _REASONING_ONLY:
            out.pop(key, None)
    return out
