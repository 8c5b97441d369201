"""Request shaping: output caps, default stop sequences, top-k retrieved chunks (unit and through the gateway)."""

from __future__ import annotations

import openai
import pytest

from thrifty.shaping.request import Shape, limit_output, trim_chunks
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT


def chunks(*ranks):
    return [{"type": "text", "text": "Question: what is our refund window?"}] + [
        {"type": "text", "text": f"Passage {r}: " + "refund policy details " * 50, "thrifty_rank": r} for r in ranks]


def test_output_cap_is_the_smaller_of_client_and_route():
    cap = Shape(output_cap=100)
    out, changed = limit_output({"messages": []}, OPENAI_CHAT, cap)
    assert out["max_completion_tokens"] == 100 and changed == ["output cap 100"]
    out, changed = limit_output({"messages": [], "max_tokens": 30}, OPENAI_CHAT, cap)
    assert out == {"messages": [], "max_completion_tokens": 30} and changed == []
    out, changed = limit_output({"messages": [], "max_tokens": 4000}, ANTHROPIC_MESSAGES, cap)
    assert out["max_tokens"] == 100 and changed == ["output cap 100 (asked 4000)"]


def test_default_stop_only_when_client_sent_none():
    s = Shape(stop=("\n\n###",))
    out, changed = limit_output({"messages": []}, OPENAI_CHAT, s)
    assert out["stop"] == ["\n\n###"] and changed == ["default stop sequences"]
    out, changed = limit_output({"messages": [], "stop": ["END"]}, OPENAI_CHAT, s)
    assert out["stop"] == ["END"] and changed == []
    assert limit_output({"messages": []}, ANTHROPIC_MESSAGES, s)[0]["stop_sequences"] == ["\n\n###"]


def test_limit_output_does_not_mutate_its_input():
    body = {"messages": [], "max_tokens": 4000}
    limit_output(body, OPENAI_CHAT, Shape(output_cap=100, stop=("END",)))
    assert body == {"messages": [], "max_tokens": 4000}


def test_top_k_keeps_best_ranked_chunks_and_strips_markers_without_mutating_input():
    body = {"messages": [{"role": "user", "content": chunks(3, 1, 2)}]}
    out = trim_chunks(body, 2)
    parts = out["messages"][0]["content"]
    assert [p["text"][:9] for p in parts] == ["Question:", "Passage 1", "Passage 2"]
    assert all("thrifty_rank" not in p for p in parts)
    assert len(body["messages"][0]["content"]) == 4 and "thrifty_rank" in body["messages"][0]["content"][1]
    # Without top-k the markers are still removed, nothing is dropped.
    untouched = trim_chunks(body, Shape().top_k_chunks)["messages"][0]["content"]
    assert len(untouched) == 4 and all("thrifty_rank" not in p for p in untouched)


@pytest.fixture(scope="module")
def shaped_stack(tmp_path_factory):
    from tests.conftest import start_stack

    def routes(cfg):
        cfg["routes"] = [{"name": "capped", "match": {"feature": "capped"}, "output_cap": 12},
                         {"name": "rag", "match": {"feature": "rag"}, "top_k_chunks": 1}]

    s = start_stack(tmp_path_factory.mktemp("shaping"), edit=routes)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def test_routes_shape_requests_end_to_end(shaped_stack):
    s = shaped_stack
    with openai.OpenAI(base_url=f"{s.url}/v1", api_key=s.key, max_retries=0) as c:
        capped = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Write an essay"}],
                                           extra_headers={"x-thrifty-feature": "capped"})
        assert capped.usage.completion_tokens <= 12
        full = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": chunks(3, 1, 2)}],
                                         extra_headers={"x-thrifty-feature": "other"})
        trimmed = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": chunks(3, 1, 2)}],
                                            extra_headers={"x-thrifty-feature": "rag"})
        crossed = c.chat.completions.create(model="claude-sonnet-4-5", max_tokens=50,
                                            messages=[{"role": "user", "content": chunks(3, 1, 2)}],
                                            extra_headers={"x-thrifty-feature": "rag"})
        crossed_full = c.chat.completions.create(model="claude-sonnet-4-5", max_tokens=50,
                                                 messages=[{"role": "user", "content": chunks(3, 1, 2)}],
                                                 extra_headers={"x-thrifty-feature": "other"})
    assert trimmed.usage.prompt_tokens < full.usage.prompt_tokens / 2
    assert crossed.usage.prompt_tokens < crossed_full.usage.prompt_tokens / 2  # trimmed before translation
