"""The semantic cache through the gateway: paraphrases hit, negations and other tenants miss,
feedback evicts. Uses the real ONNX embedder (skips when the model package is absent)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import start_stack
from tests.ledger_util import wait_row
from thrifty.cache.semantic import model_available
from thrifty.cli.localstack import OTHER_KEY

SYSTEM = "You are the help desk of Northwind Bank. Answer in two sentences."


@pytest.fixture(scope="module")
def faq_stack(tmp_path_factory):
    missing = model_available()
    if missing:
        pytest.skip(missing)

    def faq_route(cfg):
        cfg["levers"] = {"semantic_cache": {"enabled": True}}
        cfg["routes"] = [{"name": "faq", "match": {"feature": "faq"}, "semantic_cache": True}]

    s = start_stack(tmp_path_factory.mktemp("semantic"), edit=faq_route)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def ask(stack, question, *, key=None, feature="faq"):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key or stack.key, max_retries=0) as c:
        return c.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", temperature=0.7, extra_headers={"x-thrifty-feature": feature},
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}])


def test_paraphrase_hits_negation_and_other_tenant_miss_feedback_evicts(faq_stack):
    s = faq_stack
    first = ask(s, "How do I reset my online banking password?")
    assert first.headers["x-thrifty-cache"] == "miss"
    para = ask(s, "How can I reset my online banking password?")
    assert para.headers["x-thrifty-cache"] == "semantic"
    assert para.parse().choices[0].message.content == first.parse().choices[0].message.content
    row = wait_row(s.ledger_path, para.headers["x-thrifty-request-id"])
    assert row.cache == "semantic" and row.cost_usd == 0
    (hit,) = row.levers
    assert hit.lever == "semantic_cache" and hit.saved_usd > 0 and hit.estimated  # a neighbour's baseline

    assert ask(s, "How do I reset my online banking password?", key=OTHER_KEY).headers["x-thrifty-cache"] == "miss"
    assert ask(s, "How can I reset my online banking password?", feature="other").headers["x-thrifty-cache"] == "miss"
    assert ask(s, "Why can't I reset my online banking password?").headers["x-thrifty-cache"] == "miss"

    r = httpx.post(f"{s.url}/v1/thrifty/feedback", headers={"authorization": f"Bearer {s.key}"},
                   json={"request_id": para.headers["x-thrifty-request-id"], "bad": True})
    assert r.status_code == 200 and r.json()["evicted"] is True
    again = ask(s, "How can I reset my online banking password?")
    assert again.headers["x-thrifty-cache"] == "miss"


def test_feedback_errors(faq_stack):
    s = faq_stack
    r = httpx.post(f"{s.url}/v1/thrifty/feedback", headers={"authorization": f"Bearer {s.key}"}, json={})
    assert r.status_code == 400 and r.json()["error"]["param"] == "request_id"
    r = httpx.post(f"{s.url}/v1/thrifty/feedback", headers={"authorization": "Bearer nope"}, json={})
    assert r.status_code == 401
    r = httpx.post(f"{s.url}/v1/thrifty/feedback", headers={"authorization": f"Bearer {s.key}"},
                   json={"request_id": "thr_unknown"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "request_id"


def test_responses_api_calls_use_the_semantic_cache_too(faq_stack):
    """A Responses call's `input` is read through its canonical (chat) form, so the semantic cache
    applies to it as to a chat call; its entries are its own (the namespace names the dialect), and
    a hit is answered in the Responses shape."""
    s = faq_stack

    def ask_responses(question):
        with openai.OpenAI(base_url=f"{s.url}/v1", api_key=s.key, max_retries=0) as c:
            return c.responses.with_raw_response.create(
                model="gpt-4o-mini", temperature=0.7, instructions=SYSTEM, input=question,
                extra_headers={"x-thrifty-feature": "faq"})

    first = ask_responses("How do I order a new debit card?")
    assert first.headers["x-thrifty-cache"] == "miss"
    para = ask_responses("How can I order a new debit card?")
    assert para.headers["x-thrifty-cache"] == "semantic"
    assert para.parse().output_text == first.parse().output_text
    assert ask_responses("How do I cancel my debit card?").headers["x-thrifty-cache"] == "miss"
