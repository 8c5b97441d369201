"""Properties of the wires: validation refuses bad input cleanly, and Anthropic requests survive
a trip through the OpenAI form (thrifty.wire.anthropic_translate)."""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.properties.strategies import ROLES_ANTHROPIC, ROLES_OPENAI, chat_body, json_values, prose
from thrifty.errors import InvalidRequest
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT, upstream_request
from thrifty.wire.anthropic_translate import anthropic_request_to_openai, openai_request_to_anthropic

settings.register_profile("properties", max_examples=150, deadline=None, derandomize=True, database=None)
settings.load_profile("properties")
WIRES = st.sampled_from([OPENAI_CHAT, ANTHROPIC_MESSAGES])


@given(json_values, WIRES)
def test_check_accepts_or_refuses_any_json_with_a_400(body, wire):
    try:
        model, stream = wire.check(body)
    except InvalidRequest as err:
        assert err.status == 400 and err.message
        return
    assert isinstance(model, str) and model and isinstance(stream, bool)


class _Counter:
    """A TokenCounter (see wire.base) that counts characters."""

    per_message, tools_tokens, attachment_tokens = 3, 10, 100

    def count(self, text: str) -> int:
        return len(text)

    def texts(self, values: Any) -> int:
        return sum(len(v) if isinstance(v, str) else len(repr(v)) for v in values if v is not None)


@settings(max_examples=120)
@given(st.one_of(chat_body(ROLES_OPENAI).map(lambda b: (OPENAI_CHAT, b)),
                 chat_body(ROLES_ANTHROPIC).map(lambda b: (ANTHROPIC_MESSAGES, b))))
def test_what_check_lets_through_every_lever_can_read(client_body):
    # Whatever a client puts inside a request that passed check(), the views the levers compute
    # on every call and the crossing to either provider's dialect either work or refuse the
    # request with InvalidRequest (a 400), never another exception (a 5xx).
    client, body = client_body
    try:
        client.check(body)
    except InvalidRequest:
        assume(False)
    client.request_view(body)
    client.input_tokens(body, _Counter())
    client.cache_ttls(body)
    client.output_cap(body)
    client.stops(body)
    client.requested_schema(body)
    for upstream in (OPENAI_CHAT, ANTHROPIC_MESSAGES):
        try:
            upstream_request(client, upstream, body, "m", 4096)
        except InvalidRequest as err:
            assert err.status == 400


# --- Anthropic -> OpenAI -> Anthropic keeps what both dialects can say ----------------------------

tool_names = st.sampled_from(["search", "lookup", "calc"])
schemas = st.fixed_dictionaries({"type": st.just("object"),
                                 "properties": st.dictionaries(st.sampled_from("abc"), st.just({"type": "string"}),
                                                               max_size=2)})
tools = st.lists(st.fixed_dictionaries({"name": tool_names, "input_schema": schemas},
                                       optional={"description": prose}),
                 min_size=1, max_size=3, unique_by=lambda t: t["name"])
text_content = prose | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": prose}), min_size=1, max_size=3)


@st.composite
def anthropic_requests(draw: Any) -> dict[str, Any]:
    """Alternating turns (user first and last), text or text blocks, optionally tool calls that
    the next user turn answers."""
    turns = draw(st.integers(min_value=0, max_value=2))
    body_tools = draw(st.none() | tools)
    messages: list[dict[str, Any]] = [{"role": "user", "content": draw(text_content)}]
    for t in range(turns):
        content: Any = draw(text_content)
        results: list[dict[str, Any]] = []
        if body_tools and draw(st.booleans()):
            blocks = [{"type": "text", "text": c} for c in ([content] if isinstance(content, str) else [])]
            blocks += [] if isinstance(content, str) else list(content)
            for j in range(draw(st.integers(min_value=1, max_value=2))):
                call_id = f"toolu_{t}{j}"
                blocks.append({"type": "tool_use", "id": call_id, "name": draw(st.sampled_from([x["name"] for x in body_tools])),
                               "input": draw(st.dictionaries(st.sampled_from("xyz"), st.integers(min_value=-(2**63), max_value=2**63 - 1) | prose, max_size=2))})
                results.append({"type": "tool_result", "tool_use_id": call_id, "content": draw(prose)})
            content = blocks
        messages.append({"role": "assistant", "content": content})
        user = draw(text_content)
        if results:
            user = results + ([{"type": "text", "text": user}] if isinstance(user, str) else user)
        messages.append({"role": "user", "content": user})
    body: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": draw(st.integers(min_value=1, max_value=8192)),
                            "messages": messages}
    if draw(st.booleans()):
        body["system"] = draw(prose)
    if body_tools:
        body["tools"] = body_tools
        choice = draw(st.sampled_from([None, "auto", "any", "none", "tool"]))
        if choice == "tool":
            body["tool_choice"] = {"type": "tool", "name": body_tools[0]["name"]}
        elif choice:
            body["tool_choice"] = {"type": choice}
    if draw(st.booleans()):
        body["temperature"] = draw(st.sampled_from([0.0, 0.5, 1.0]))
    if draw(st.booleans()):
        body["stop_sequences"] = draw(st.lists(prose, min_size=1, max_size=2))
    if draw(st.booleans()):
        body["metadata"] = {"user_id": draw(prose)}
    return body


def blocks(content: Any) -> list[dict[str, Any]]:
    """Content as a list of blocks: a string is one text block."""
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def merged_texts(content: Any) -> list[Any]:
    """What a turn says: tool results and calls as they are, adjacent texts joined (OpenAI holds
    an assistant turn's text as one string)."""
    out: list[Any] = []
    for b in blocks(content):
        if b["type"] == "text" and out and isinstance(out[-1], str):
            out[-1] += b["text"]
        else:
            out.append(b["text"] if b["type"] == "text" else b)
    return out


@given(anthropic_requests())
def test_anthropic_to_openai_and_back_keeps_roles_content_and_tools(body):
    back = openai_request_to_anthropic(anthropic_request_to_openai(body, model="m"), model="m")
    assert [m["role"] for m in back["messages"]] == [m["role"] for m in body["messages"]]
    for was, now in zip(body["messages"], back["messages"]):
        if was["role"] == "user":
            assert blocks(now["content"]) == blocks(was["content"])
        else:
            assert merged_texts(now["content"]) == merged_texts(was["content"])
    assert back.get("tools") == body.get("tools")
    if "tool_choice" in body:
        assert back["tool_choice"] == body["tool_choice"]
    assert blocks(back.get("system", [])) == blocks(body.get("system", []))
    for key in ("max_tokens", "temperature", "stop_sequences", "metadata"):
        assert back.get(key) == body.get(key), key
