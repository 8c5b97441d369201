"""Hypothesis strategies shared by the property tests: any JSON the gateway can parse, and chat
requests of each dialect."""

from __future__ import annotations

from hypothesis import strategies as st

# Text as JSON carries it (orjson refuses lone surrogates, so no parsed body holds one).
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
# Prose without digits: no volatile pattern (ids, timestamps, uuids) can match it.
prose = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz ABCXYZ.,!?"), min_size=1, max_size=30).filter(
    lambda s: s.strip() != "")

scalars = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | \
    st.floats(allow_nan=False, allow_infinity=False) | text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                           max_leaves=25)
json_objects = st.dictionaries(text, json_values, max_size=6)

ROLES_OPENAI = ("system", "developer", "user", "assistant", "tool")
ROLES_ANTHROPIC = ("user", "assistant")


BLOCK_TYPES = ("text", "image", "image_url", "document", "file", "tool_use", "tool_result", "input_audio",
               "thinking", "refusal", "function")
_ANY_FIELDS = {k: json_values for k in ("text", "source", "image_url", "content", "input", "id", "name", "file",
                                        "tool_use_id", "is_error", "refusal", "title")}
blocks = st.fixed_dictionaries({"type": st.sampled_from(BLOCK_TYPES) | json_values}, optional=_ANY_FIELDS)
tool_defs = st.fixed_dictionaries({}, optional={"type": st.sampled_from(["function", "custom"]) | json_values,
                                                "function": st.dictionaries(st.sampled_from(["name", "parameters",
                                                                                             "description"]),
                                                                            json_values),
                                                "name": json_values, "input_schema": json_values,
                                                "description": json_values})


def chat_body(roles: tuple[str, ...]) -> st.SearchStrategy[dict]:
    """A request whose top level has the right shape for check(), with anything inside: known
    block types and fields holding any JSON."""
    message = st.fixed_dictionaries(
        {"role": st.sampled_from(roles)},
        optional={"content": text | st.lists(blocks, max_size=3), "tool_calls": json_values,
                  "tool_call_id": json_values, "refusal": json_values})
    return st.fixed_dictionaries(
        {"model": st.sampled_from(["gpt-4o-mini", "claude-haiku-4-5"]), "messages": st.lists(message, min_size=1, max_size=4),
         "max_tokens": st.integers(min_value=1, max_value=4096)},
        optional={"temperature": st.floats(min_value=0, max_value=2), "stream": st.booleans(),
                  "tools": st.lists(tool_defs, max_size=2), "system": text | st.lists(blocks, max_size=2),
                  "tool_choice": st.sampled_from(["auto", "none", "required"]) | st.dictionaries(
                      st.sampled_from(["type", "name", "function", "disable_parallel_tool_use"]), json_values),
                  "response_format": st.dictionaries(st.sampled_from(["type", "json_schema"]), json_values),
                  "stop": json_values, "n": st.integers(min_value=1, max_value=3),
                  "metadata": st.dictionaries(st.sampled_from(["user_id", "x"]), json_values),
                  "parallel_tool_calls": st.booleans()})
