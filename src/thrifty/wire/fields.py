"""Type checks of the request fields the gateway reads or forwards, for each dialect's `check()`.

Only types and the ranges the gateway itself depends on (counts are positive integers) are
checked here; value rules that differ per model (temperature ranges, output maxima) are the
provider's to enforce. A field that is absent or null passes. The messages follow each provider's
own wording closely enough that the offending field is always named: OpenAI in `param`
(`messages[2].role`), Anthropic in the message (`messages.2.role: ...`).

The same table is what `thrifty.api.openapi` publishes as each surface's request schema, so the
OpenAPI document is exactly as strict as this module.
"""

from __future__ import annotations

from typing import Any, Callable

from thrifty.errors import InvalidRequest

def _integer(v: Any) -> bool:
    """An integer as JSON (and JSON Schema) has them: bool is not one, 2.0 is."""
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


# kind -> (test, what the error says was expected).
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "string": (lambda v: isinstance(v, str), "a string"),
    "boolean": (lambda v: isinstance(v, bool), "a boolean"),
    "integer": (_integer, "an integer"),
    "positive": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "count": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
    "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "array": (lambda v: isinstance(v, list), "an array"),
    "objects": (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "an array of objects"),
    "strings": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "an array of strings"),
    "string_or_strings": (lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
                          "a string or an array of strings"),
    "string_or_object": (lambda v: isinstance(v, (str, dict)), "a string or an object"),
    "string_or_objects": (lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, dict) for x in v)),
                          "a string or an array of objects"),
}

# Fields of an OpenAI Chat Completions request the gateway reads, changes or forwards.
OPENAI_FIELDS: dict[str, str] = {
    "model": "string", "messages": "array", "stream": "boolean", "stream_options": "object",
    "max_tokens": "positive", "max_completion_tokens": "positive", "n": "positive",
    "temperature": "number", "top_p": "number", "presence_penalty": "number", "frequency_penalty": "number",
    "seed": "integer", "stop": "string_or_strings", "user": "string", "safety_identifier": "string",
    "tools": "objects", "tool_choice": "string_or_object", "parallel_tool_calls": "boolean",
    "response_format": "object", "logprobs": "boolean", "top_logprobs": "count", "metadata": "object",
    "store": "boolean", "prompt_cache_key": "string", "service_tier": "string", "reasoning_effort": "string",
    "modalities": "strings", "logit_bias": "object",
}
OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")

# Fields of an Anthropic Messages request the gateway reads, changes or forwards.
ANTHROPIC_FIELDS: dict[str, str] = {
    "model": "string", "messages": "array", "max_tokens": "positive", "stream": "boolean",
    "system": "string_or_objects", "temperature": "number", "top_p": "number", "top_k": "count",
    "stop_sequences": "strings", "tools": "objects", "tool_choice": "object", "metadata": "object",
    "thinking": "object", "service_tier": "string",
}
ANTHROPIC_ROLES = ("user", "assistant")


# Nested objects: a message, a content block (OpenAI part, Anthropic block), a tool call, a tool.
MESSAGE_FIELDS = {"tool_calls": "objects", "tool_call_id": "string", "name": "string", "refusal": "string"}
BLOCK_FIELDS = {"text": "string", "source": "object", "image_url": "string_or_object", "file": "object",
                "input_audio": "object", "input": "object", "name": "string", "id": "string",
                "tool_use_id": "string", "content": "string_or_objects", "is_error": "boolean",
                "cache_control": "object", "title": "string"}
TOOL_CALL_FIELDS = {"id": "string", "type": "string", "function": "object"}
FUNCTION_FIELDS = {"name": "string", "arguments": "string", "description": "string", "parameters": "object"}
TOOL_FIELDS = {"type": "string", "function": "object", "name": "string", "description": "string",
               "input_schema": "object", "cache_control": "object"}


def expected(kind: str) -> str:
    return _KINDS[kind][1]


def _type_name(v: Any) -> str:
    """What was sent instead: a scalar as JSON (cut short), a container by its type."""
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, str):
        return f"the string {v[:40]!r}"
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else repr(v)[:40]


class Checker:
    """Renders one dialect's field errors: `openai` names the field in `param` (OpenAI's own
    `messages[0].role`), `anthropic` in the message (Anthropic's `messages.0.role: ...`)."""

    def __init__(self, style: str, fields: dict[str, str], roles: tuple[str, ...],
                 required: tuple[str, ...] = ()) -> None:
        self.style, self.fields, self.roles, self.required = style, fields, roles, required

    def path(self, *parts: str | int) -> str:
        out = str(parts[0])
        for p in parts[1:]:
            out += f"[{p}]" if isinstance(p, int) and self.style == "openai" else f".{p}"
        return out

    def fail(self, path: str, problem: str) -> InvalidRequest:
        if self.style == "openai":
            return InvalidRequest(f"Invalid value for '{path}': {problem}.", param=path, code="invalid_value")
        return InvalidRequest(f"{path}: {problem}", param=path)

    def check(self, body: Any) -> tuple[str, bool]:
        """Types of every known field, then each message's shape; returns (model, stream)."""
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise self.fail("model", "you must provide a model parameter (a non-empty string)")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise self.fail("messages", "must be a non-empty array of message objects")
        for name in self.required:
            if body.get(name) is None:
                raise self.fail(name, f"field required ({expected(self.fields[name])})")
        self._fields(body, self.fields, ())
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise self.fail(self.path("messages", i), f"expected an object, but got {_type_name(m)}")
            role = m.get("role")
            if role not in self.roles:
                raise self.fail(self.path("messages", i, "role"),
                                f"expected one of {', '.join(self.roles)}, but got {str(role)[:40]!r}")
            self._fields(m, MESSAGE_FIELDS, ("messages", i))
            self._blocks(m.get("content"), ("messages", i, "content"))
            for j, call in enumerate(m.get("tool_calls") or ()):
                self._fields(call, TOOL_CALL_FIELDS, ("messages", i, "tool_calls", j))
                self._fields(call.get("function"), FUNCTION_FIELDS, ("messages", i, "tool_calls", j, "function"))
        if isinstance(body.get("system"), list):
            self._blocks(body["system"], ("system",))
        for j, tool in enumerate(body.get("tools") or ()):
            self._fields(tool, TOOL_FIELDS, ("tools", j))
            self._fields(tool.get("function"), FUNCTION_FIELDS, ("tools", j, "function"))
        return model, body.get("stream") is True

    def _fields(self, obj: Any, table: dict[str, str], where: tuple[str | int, ...]) -> None:
        """The known fields of a nested object (absent or null pass)."""
        if not isinstance(obj, dict):
            return  # the parent's kind has checked that it is an object where one is required
        for name, v in obj.items():  # the object's few keys, not the table's many
            kind = table.get(name)
            if kind is not None and v is not None and not _KINDS[kind][0](v):
                raise self.fail(self.path(*where, name), f"expected {expected(kind)}, but got {_type_name(v)}")

    def _blocks(self, content: Any, where: tuple[str | int, ...], nested: bool = False) -> None:
        """A content string, or blocks (parts): objects with a string `type` and well-typed fields."""
        if content is None or isinstance(content, str):
            return
        if not isinstance(content, list):
            raise self.fail(self.path(*where), f"expected a string or an array of objects, but got {_type_name(content)}")
        for k, block in enumerate(content):
            if not isinstance(block, dict):
                raise self.fail(self.path(*where, k), f"expected an object, but got {_type_name(block)}")
            if not isinstance(block.get("type"), str):
                raise self.fail(self.path(*where, k, "type"), f"expected a string, but got {_type_name(block.get('type'))}")
            self._fields(block, BLOCK_FIELDS, (*where, k))
            if not nested and isinstance(block.get("content"), list):  # a tool result's blocks
                self._blocks(block["content"], (*where, k, "content"), nested=True)


OPENAI_CHECK = Checker("openai", OPENAI_FIELDS, OPENAI_ROLES)
ANTHROPIC_CHECK = Checker("anthropic", ANTHROPIC_FIELDS, ANTHROPIC_ROLES, required=("max_tokens",))
