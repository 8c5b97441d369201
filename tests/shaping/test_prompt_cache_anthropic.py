"""Anthropic breakpoints: placement, the limit of four, minimum lengths, client marks, no mutation."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest

from thrifty.shaping import PrefixStats, PromptCachePlanner, PromptCachePolicy, min_cacheable_tokens
from thrifty.tokens import count_text_tokens
from thrifty.wire import ANTHROPIC_MESSAGES
from tests.shaping.helpers import agent_messages, anthropic_body, long_text, tool

EPHEMERAL = {"type": "ephemeral"}


def plan(body, model="claude-sonnet-4-5", tenant="acme", planner=None, **policy):
    planner = planner or PromptCachePlanner(PromptCachePolicy(**policy))
    return planner.plan(body, wire=ANTHROPIC_MESSAGES, model=model, tenant=tenant)


def marks(body):
    """Where the body's cache_control markers are, as (path, cache_control)."""
    out = []
    for i, t in enumerate(body.get("tools") or []):
        if "cache_control" in t:
            out.append((f"tools[{i}]", t["cache_control"]))
    system = body.get("system")
    for i, b in enumerate(system if isinstance(system, list) else []):
        if "cache_control" in b:
            out.append((f"system[{i}]", b["cache_control"]))
    for i, m in enumerate(body["messages"]):
        if isinstance(m["content"], list):
            for j, b in enumerate(m["content"]):
                if "cache_control" in b:
                    out.append((f"messages[{i}].content[{j}]", b["cache_control"]))
    if "cache_control" in body:
        out.append(("cache_control", body["cache_control"]))
    return out


def test_min_cacheable_tokens_by_family():
    assert min_cacheable_tokens("claude-sonnet-4-5") == 1024
    assert min_cacheable_tokens("claude-sonnet-4-5-20250929") == 1024
    assert min_cacheable_tokens("claude-opus-4-1") == 1024
    assert min_cacheable_tokens("claude-haiku-4-5-20251001") == 4096
    assert min_cacheable_tokens("claude-opus-4-5") == 4096
    assert min_cacheable_tokens("claude-3-5-haiku-20241022") == 2048
    assert min_cacheable_tokens("claude-3-haiku-20240307") == 2048
    assert min_cacheable_tokens("some-future-model") == 1024


def test_string_system_becomes_a_block_with_a_breakpoint_and_the_input_is_untouched():
    system = long_text(2000)
    body = anthropic_body(system=system)
    before = copy.deepcopy(body)
    p = plan(body)
    assert body == before, "the input body must not be mutated"
    assert p.body is not body and p.changed
    assert p.body["system"] == [{"type": "text", "text": system, "cache_control": EPHEMERAL}]
    assert p.body["messages"] is body["messages"], "untouched parts are shared, not copied"
    assert [b.where for b in p.breakpoints] == ["system[0]"]
    assert p.breakpoints[0].added and p.breakpoints[0].segment == "system"
    assert p.breakpoints[0].tokens == pytest.approx(2000, rel=0.05)
    assert p.prefix_id == p.breakpoints[0].prefix_id and p.prefix_id.startswith("thr-")
    assert len(p.prefix_id) == len("thr-") + 16


def test_tools_then_system_get_breakpoints_on_their_last_item():
    tools = [tool("search", long_text(600)), tool("lookup", long_text(600))]
    body = anthropic_body(system=[{"type": "text", "text": "You are terse."},
                                  {"type": "text", "text": long_text(1500)}], tools=tools)
    before = copy.deepcopy(body)
    p = plan(body)
    assert body == before
    assert marks(p.body) == [("tools[1]", EPHEMERAL), ("system[1]", EPHEMERAL)]
    assert p.body["tools"][0] is tools[0]
    assert [b.segment for b in p.breakpoints] == ["tools", "system"]
    tools_bp, system_bp = p.breakpoints
    assert tools_bp.tokens < system_bp.tokens, "token counts are cumulative along the prompt"
    assert p.prefix_id == system_bp.prefix_id and tools_bp.prefix_id != system_bp.prefix_id
    assert p.prefix_ids == (tools_bp.prefix_id, system_bp.prefix_id)


def test_breakpoints_below_the_model_minimum_are_not_placed():
    body = anthropic_body(system=long_text(2000), tools=[tool("search")])
    sonnet = plan(body)
    assert [b.where for b in sonnet.breakpoints] == ["system[0]"], "tools alone are far below 1024 tokens"
    haiku = plan(body, model="claude-haiku-4-5")
    assert haiku.breakpoints == () and haiku.body is body, "2000 tokens is below Haiku 4.5's 4096"
    assert haiku.prefix_id is not None, "the prefix is still known, for statistics"
    assert plan(anthropic_body(system=long_text(4500)), model="claude-haiku-4-5").breakpoints


def test_history_breakpoint_on_the_message_before_the_final_user_turn():
    messages = agent_messages(turns=2)
    body = anthropic_body(system=long_text(1500), tools=[tool("lookup")], messages=messages)
    before = copy.deepcopy(body)
    p = plan(body)
    assert body == before
    last_user = len(messages) - 1
    assert marks(p.body) == [("system[0]", EPHEMERAL), (f"messages[{last_user - 1}].content[1]", EPHEMERAL)]
    assert p.body["messages"][last_user] is messages[last_user]
    history = p.breakpoints[-1]
    assert history.segment == "history" and history.tokens is None, "past the minimum already: not counted"
    assert history.prefix_id in p.prefix_ids and history.prefix_id != p.prefix_id


def test_history_prefix_is_counted_when_the_stable_part_is_short():
    messages = [{"role": "user", "content": long_text(800)},
                {"role": "assistant", "content": "Noted."},
                {"role": "user", "content": "Summarise it."}]
    short = plan(anthropic_body(system="Be brief.", messages=messages))
    assert short.breakpoints == (), "800 tokens of history are below 1024"
    messages[0]["content"] = long_text(1300)
    p = plan(anthropic_body(system="Be brief.", messages=messages))
    assert marks(p.body) == [("messages[1].content[0]", EPHEMERAL)]
    assert p.body["messages"][1]["content"] == [{"type": "text", "text": "Noted.", "cache_control": EPHEMERAL}]
    assert p.breakpoints[0].tokens >= 1024
    assert p.prefix_id != p.breakpoints[0].prefix_id, "the (short) system is the stable prefix"
    no_system = plan(anthropic_body(messages=messages))
    assert [b.where for b in no_system.breakpoints] == ["messages[1].content[0]"]
    assert no_system.prefix_id == no_system.breakpoints[0].prefix_id, "no stable prefix: the conversation is"


def test_single_turn_requests_get_no_history_breakpoint():
    p = plan(anthropic_body(system=long_text(1500)))
    assert [b.segment for b in p.breakpoints] == ["system"]


def test_history_breakpoint_skips_blocks_that_cannot_be_cached():
    messages = [{"role": "user", "content": long_text(1500)},
                {"role": "assistant", "content": [{"type": "text", "text": "Sure."},
                                                  {"type": "thinking", "thinking": "hmm", "signature": "x"}]},
                {"role": "user", "content": "go on"}]
    p = plan(anthropic_body(messages=messages))
    assert marks(p.body) == [("messages[1].content[0]", EPHEMERAL)]
    messages[1]["content"] = [{"type": "redacted_thinking", "data": "abc"}, {"type": "text", "text": ""}]
    assert plan(anthropic_body(messages=messages)).breakpoints == ()


def test_client_breakpoints_are_kept_and_count_toward_four():
    client_cc = {"type": "ephemeral", "ttl": "1h"}
    tools = [tool("a", long_text(700)), {**tool("b", long_text(700)), "cache_control": client_cc}]
    body = anthropic_body(system=[{"type": "text", "text": long_text(1500)}], tools=tools,
                          messages=agent_messages(turns=2))
    p = plan(body)
    assert p.body["tools"][1] is tools[1], "the client's marked tool is not touched"
    assert p.body["tools"][1]["cache_control"] is client_cc
    assert [(b.where, b.added) for b in p.breakpoints] == [
        ("tools[1]", False), ("system[0]", True), ("messages[3].content[1]", True)]
    assert [b.ttl for b in p.breakpoints] == ["1h", "5m", "5m"], "a 1h breakpoint may come before 5m ones"
    assert len(marks(p.body)) == 3
    # What the client's own breakpoint alone would have cached: both tools, at its TTL.
    assert p.client_ttl == "1h"
    # An upper bound of the tokens its breakpoint covers (both tools), never under them, and short
    # of what the whole prompt's bytes would give.
    tool_tokens = count_text_tokens("\n".join(json.dumps(t) for t in tools))
    assert tool_tokens <= p.client_prefix_tokens < len(json.dumps(body).encode())
    assert plan(anthropic_body(system=long_text(1500), messages=agent_messages(2))).client_prefix_tokens is None


def test_never_more_than_four_breakpoints():
    def cc_block(text):
        return {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}

    system = [cc_block(long_text(300, "a")), cc_block(long_text(300, "b")), cc_block(long_text(300, "c")),
              {"type": "text", "text": long_text(1500)}]
    body = anthropic_body(system=system, tools=[tool("t", long_text(1200))], messages=agent_messages(2))
    p = plan(body)
    assert len(marks(p.body)) == 4
    added = [b for b in p.breakpoints if b.added]
    assert [b.segment for b in added] == ["system"], "one slot left: the end of the stable prefix wins"
    system.append(cc_block("d"))
    full = plan(anthropic_body(system=system, messages=agent_messages(2)))
    assert full.body == anthropic_body(system=system, messages=agent_messages(2))
    assert not full.changed and len(full.breakpoints) == 4

    two_left = plan(anthropic_body(system=system[:2] + [system[3]], tools=[tool("t", long_text(1200))],
                                   messages=agent_messages(2)))
    assert [b.segment for b in two_left.breakpoints if b.added] == ["system", "history"]


def test_client_managed_conversation_gets_no_history_breakpoint():
    messages = agent_messages(2)
    messages[0] = {"role": "user", "content": [{"type": "text", "text": "Find it.", "cache_control": {"type": "ephemeral"}}]}
    p = plan(anthropic_body(system=long_text(1500), messages=messages))
    assert [(b.segment, b.added) for b in p.breakpoints] == [("system", True), ("client", False)]
    auto = plan(anthropic_body(system=long_text(1500), messages=agent_messages(2),
                               cache_control={"type": "ephemeral"}))
    assert [(b.where, b.added) for b in auto.breakpoints] == [("system[0]", True), ("cache_control", False)]


def test_client_ttls_in_the_wrong_order_are_left_for_the_provider_to_reject():
    system = [{"type": "text", "text": long_text(600), "cache_control": {"type": "ephemeral"}},
              {"type": "text", "text": long_text(600), "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    body = anthropic_body(system=system, tools=[tool("t", long_text(1200))], messages=agent_messages(2))
    p = plan(body)
    assert p.body is body and not p.changed


def test_ours_after_a_client_5m_breakpoint_are_5m():
    system = [{"type": "text", "text": long_text(1500), "cache_control": {"type": "ephemeral"}}]
    p = plan(anthropic_body(system=system, messages=agent_messages(2)), ttl="1h")
    assert [(b.segment, b.ttl) for b in p.breakpoints] == [("client", "5m"), ("history", "5m")]


def test_fixed_1h_policy_marks_1h():
    p = plan(anthropic_body(system=long_text(1500), messages=agent_messages(1)), ttl="1h")
    assert [cc for _, cc in marks(p.body)] == [{"type": "ephemeral", "ttl": "1h"}] * 2


def test_planning_is_idempotent():
    planner = PromptCachePlanner()
    body = anthropic_body(system=long_text(1500), tools=[tool("a", long_text(1200))], messages=agent_messages(3))
    first = planner.plan(body, wire=ANTHROPIC_MESSAGES, model="claude-sonnet-4-5", tenant="acme")
    again = planner.plan(first.body, wire=ANTHROPIC_MESSAGES, model="claude-sonnet-4-5", tenant="acme")
    assert again.body == first.body and not again.changed
    assert again.prefix_id == first.prefix_id and again.prefix_ids == first.prefix_ids
    assert [(b.where, b.ttl) for b in again.breakpoints] == [(b.where, b.ttl) for b in first.breakpoints]


def test_prefix_ids_are_scoped_by_tenant_and_model_and_ignore_markers():
    body = anthropic_body(system=long_text(1500))
    a = plan(body, tenant="acme").prefix_id
    assert plan(body, tenant="acme").prefix_id == a
    assert plan(body, tenant="globex").prefix_id != a
    assert plan(body, model="claude-opus-4-1").prefix_id != a
    marked = anthropic_body(system=[{"type": "text", "text": long_text(1500), "cache_control": EPHEMERAL}])
    assert plan(marked, tenant="acme").prefix_id == a, "string and block system, marked or not: one prefix"
    other_question = anthropic_body(system=long_text(1500), messages=[{"role": "user", "content": "Other?"}])
    assert plan(other_question, tenant="acme").prefix_id == a


def test_switches_and_malformed_bodies():
    body = anthropic_body(system=long_text(1500), messages=agent_messages(1))
    off = plan(body, enabled=False)
    assert off.body is body and off.prefix_id is None and off.breakpoints == ()
    no_auto = plan(body, anthropic_auto_breakpoints=False)
    assert no_auto.body is body and no_auto.prefix_id is not None and not no_auto.changed
    for bad in (anthropic_body(system=42), anthropic_body(messages="hi"), anthropic_body(tools={"a": 1})):
        assert plan(bad).body is bad
    assert PromptCachePlanner().plan(body, wire=SimpleNamespace(name="gemini", prompt_caching="none"),
                                     model="x", tenant="t").body is body


def test_policy_validates_its_values():
    with pytest.raises(ValueError):
        PromptCachePolicy(ttl="10m")
    with pytest.raises(ValueError):
        PromptCachePolicy(min_reuse_for_1h=0)


def test_token_counts_are_memoised_per_distinct_content():
    calls = []

    def counting(text):
        calls.append(len(text))
        return len(text) // 4

    planner = PromptCachePlanner(count_tokens=counting, stats=PrefixStats())
    body = anthropic_body(system=long_text(1500), tools=[tool("a")])
    for question in ("one", "two", "three"):
        body["messages"] = [{"role": "user", "content": question}]
        planner.plan(body, wire=ANTHROPIC_MESSAGES, model="claude-sonnet-4-5", tenant="acme")
    assert len(calls) == 2, "tools and system counted once each, whatever the question"


def test_ours_before_a_client_1h_breakpoint_are_1h():
    messages = agent_messages(2)
    messages[2] = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_00", "content": "ok",
                                                "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}
    p = plan(anthropic_body(system=long_text(1500), tools=[tool("t", long_text(1200))], messages=messages))
    assert [(b.where, b.ttl, b.added) for b in p.breakpoints] == [
        ("tools[0]", "1h", True), ("system[0]", "1h", True), ("messages[2].content[0]", "1h", False)]
    assert marks(p.body)[0] == ("tools[0]", {"type": "ephemeral", "ttl": "1h"})
