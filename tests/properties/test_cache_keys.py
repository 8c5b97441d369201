"""Properties of the exact cache's canonical keys (thrifty.cache.keys)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.properties.strategies import json_objects, prose
from thrifty.cache.keys import CachePolicy, cache_key, canonical_request
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT

POLICY = CachePolicy()
WIRES = st.sampled_from([OPENAI_CHAT, ANTHROPIC_MESSAGES])
settings.register_profile("properties", max_examples=150, deadline=None, derandomize=True, database=None)
settings.load_profile("properties")


def reordered(value: Any) -> Any:
    """The same JSON with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


def chat(texts: list[str], **extra: Any) -> dict[str, Any]:
    roles = ["user", "assistant"]
    return {"model": "gpt-4o-mini", "temperature": 0,
            "messages": [{"role": roles[i % 2], "content": t} for i, t in enumerate(texts)], **extra}


@given(json_objects, WIRES)
def test_any_json_object_gets_a_key_and_never_crashes(body, wire):
    raw = orjson.dumps(body)  # what a client could send; parsed as the gateway parses it
    key = cache_key("acme", wire, orjson.loads(raw), POLICY)
    assert key.startswith("x1:") and len(key) == 3 + 64


@given(json_objects, WIRES)
def test_key_order_and_json_whitespace_do_not_change_the_key(body, wire):
    spaced = json.dumps(reordered(body), indent=2, ensure_ascii=False).encode()
    assert cache_key("acme", wire, orjson.loads(spaced), POLICY) == cache_key("acme", wire, body, POLICY)


@given(st.lists(st.lists(prose, min_size=1, max_size=3), min_size=1, max_size=3), st.data())
def test_insignificant_whitespace_in_messages_does_not_change_the_key(messages, data):
    # CRLF line ends, trailing blanks, runs of inner blanks and surrounding blank lines are
    # insignificant (see keys.py); a message is a few lines of prose.
    texts = ["\n".join(" ".join(line.split()) for line in lines) for lines in messages]
    i = data.draw(st.integers(min_value=0, max_value=len(texts) - 1))
    noisy = list(texts)
    noisy[i] = "\n\n" + "\r\n".join("  ".join(line.split()) + " \t " for line in messages[i]) + "   \n\n\n"
    assert cache_key("acme", OPENAI_CHAT, chat(noisy), POLICY) == cache_key("acme", OPENAI_CHAT, chat(texts), POLICY)


@given(st.lists(prose, min_size=1, max_size=4), st.data(), st.sampled_from("qZ!"))
def test_different_content_gives_a_different_key(texts, data, extra):
    i = data.draw(st.integers(min_value=0, max_value=len(texts) - 1))
    changed = list(texts)
    changed[i] = changed[i].rstrip() + extra
    assert cache_key("acme", OPENAI_CHAT, chat(changed), POLICY) != cache_key("acme", OPENAI_CHAT, chat(texts), POLICY)


@given(st.lists(prose, min_size=1, max_size=3), st.sampled_from(["gpt-4o", "gpt-4o-mini"]),
       st.sampled_from(["acme", "other"]), st.sampled_from([0.5, 1, 7]))
def test_tenant_model_and_parameters_are_part_of_the_key(texts, model, tenant, temperature):
    base = cache_key("acme", OPENAI_CHAT, chat(texts), POLICY, model="gpt-4o")
    other = cache_key(tenant, OPENAI_CHAT, chat(texts, temperature=temperature), POLICY, model=model)
    assert other != base


@given(json_objects)
def test_the_canonical_form_does_not_modify_the_body(body):
    before = orjson.dumps(body)
    canonical_request(OPENAI_CHAT, body, POLICY)
    assert orjson.dumps(body) == before
