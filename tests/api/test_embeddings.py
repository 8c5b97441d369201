"""`POST /v1/embeddings` through the real openai SDK, a real gateway and the emulator."""

from __future__ import annotations

import base64
import math
import struct
from decimal import Decimal

import httpx
import openai
import pytest

from tests.conftest import start_stack
from tests.ledger_util import wait_row
from thrifty.cli import localstack
from thrifty.ledger import SQLiteLedger
from thrifty.pricing import PriceBook


@pytest.fixture(scope="module")
def emb_stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("embeddings"))
    yield s
    s.gateway.stop()
    s.emulator.stop()


@pytest.fixture
def client(emb_stack):
    with openai.OpenAI(base_url=f"{emb_stack.url}/v1", api_key=emb_stack.key, max_retries=0) as c:
        yield c


def _billing(stack) -> dict:
    return stack.billing()


def _billed_tokens(stack, model: str) -> int:
    return _billing(stack)["models"].get(model, {}).get("input_tokens", 0)


def _norm(v) -> float:
    return math.sqrt(sum(x * x for x in v))


def test_single_input_is_forwarded_priced_and_recorded(emb_stack, client):
    before = _billed_tokens(emb_stack, "text-embedding-3-small")
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small",
                                                     input="The quick brown fox, once.")
    resp = raw.parse()
    assert len(resp.data) == 1 and resp.data[0].index == 0
    assert len(resp.data[0].embedding) == 1536 and abs(_norm(resp.data[0].embedding) - 1) < 1e-6
    billed = _billed_tokens(emb_stack, "text-embedding-3-small") - before
    assert resp.usage.prompt_tokens == billed > 0
    assert raw.headers["x-thrifty-cache"] == "miss"
    row = wait_row(emb_stack.ledger_path, raw.headers["x-thrifty-request-id"])
    assert row.status == 200 and row.surface == "openai.embeddings" and row.provider == "openai"
    assert row.requested_model == row.served_model == "text-embedding-3-small"
    assert row.prompt_tokens == billed and row.completion_tokens == 0
    card = PriceBook().card("text-embedding-3-small", "openai")
    assert row.cost_usd == card.input * billed / Decimal(1_000_000) == Decimal(raw.headers["x-thrifty-cost-usd"])


def test_batch_dimensions_and_repeat_is_a_free_exact_hit(emb_stack, client):
    texts = ["alpha", "beta gamma", "delta epsilon zeta"]
    first = client.embeddings.create(model="text-embedding-3-large", input=texts, dimensions=256)
    assert [d.index for d in first.data] == [0, 1, 2]
    assert all(len(d.embedding) == 256 and abs(_norm(d.embedding) - 1) < 1e-6 for d in first.data)
    assert len({tuple(d.embedding) for d in first.data}) == 3
    billed = _billed_tokens(emb_stack, "text-embedding-3-large")
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-large", input=texts, dimensions=256)
    again = raw.parse()
    assert _billed_tokens(emb_stack, "text-embedding-3-large") == billed  # nothing went upstream
    assert [d.embedding for d in again.data] == [d.embedding for d in first.data]
    assert again.usage.prompt_tokens == first.usage.prompt_tokens
    assert raw.headers["x-thrifty-cache"] == "exact" and Decimal(raw.headers["x-thrifty-cost-usd"]) == 0
    row = wait_row(emb_stack.ledger_path, raw.headers["x-thrifty-request-id"])
    assert row.cache == "exact" and row.cost_usd == 0 and row.prompt_tokens == 0
    assert [s.lever for s in row.levers] == ["exact_cache"] and row.levers[0].saved_usd > 0
    assert row.baseline_cost_usd == row.levers[0].saved_usd
    # Other dimensions are another key: not served from the 256-dimension entries.
    other = client.embeddings.create(model="text-embedding-3-large", input=texts[:1], dimensions=128)
    assert len(other.data[0].embedding) == 128
    assert _billed_tokens(emb_stack, "text-embedding-3-large") > billed


def test_partial_cache_hit_sends_only_the_rest_and_reassembles_in_order(emb_stack, client):
    model = "text-embedding-3-small"
    warm = client.embeddings.create(model=model, input=["one cached", "three cached"])
    before = _billed_tokens(emb_stack, model)
    raw = client.embeddings.with_raw_response.create(
        model=model, input=["one cached", "two fresh words here", "three cached", "four fresh"])
    resp = raw.parse()
    assert [d.index for d in resp.data] == [0, 1, 2, 3]
    assert resp.data[0].embedding == warm.data[0].embedding and resp.data[2].embedding == warm.data[1].embedding
    billed = _billed_tokens(emb_stack, model) - before
    # The provider billed only the two new inputs; the client is told the usage of all four.
    alone = client.embeddings.create(model=model, input=["two fresh words here", "four fresh"],
                                     extra_headers={"x-thrifty-cache-control": "no-cache"})
    assert alone.data[0].embedding == resp.data[1].embedding and alone.data[1].embedding == resp.data[3].embedding
    assert billed == alone.usage.prompt_tokens
    assert resp.usage.prompt_tokens == billed + warm.usage.prompt_tokens
    row = wait_row(emb_stack.ledger_path, raw.headers["x-thrifty-request-id"])
    assert row.cache == "miss" and row.prompt_tokens == billed
    card = PriceBook().card(model, "openai")
    assert row.cost_usd == card.input * billed / Decimal(1_000_000)
    assert row.baseline_cost_usd == card.input * resp.usage.prompt_tokens / Decimal(1_000_000)
    assert [s.lever for s in row.levers] == ["exact_cache"]
    assert row.levers[0].saved_usd == row.baseline_cost_usd - row.cost_usd > 0


def test_base64_and_token_id_inputs(emb_stack, client):
    floats = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]],
                                      encoding_format="float")
    r = httpx.post(f"{emb_stack.url}/v1/embeddings", headers={"authorization": f"Bearer {emb_stack.key}"},
                   json={"model": "text-embedding-3-small", "input": [[1, 2, 3], [4, 5]], "encoding_format": "base64"})
    assert r.status_code == 200
    body = r.json()
    assert body["usage"]["prompt_tokens"] == 5 == floats.usage.prompt_tokens
    for item, f in zip(body["data"], floats.data):
        raw = base64.b64decode(item["embedding"])
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert len(decoded) == 1536
        assert max(abs(a - b) for a, b in zip(decoded, f.embedding)) < 1e-6
    # The SDK asks for base64 by default and decodes it itself.
    sdk = client.embeddings.create(model="text-embedding-3-small", input=[1, 2, 3])
    assert max(abs(a - b) for a, b in zip(sdk.data[0].embedding, floats.data[0].embedding)) < 1e-6


@pytest.mark.parametrize("body, param", [
    ({"input": "x"}, "model"),
    ({"model": "text-embedding-3-small"}, "input"),
    ({"model": "text-embedding-3-small", "input": []}, "input"),
    ({"model": "text-embedding-3-small", "input": ["ok", 3]}, "input"),
    ({"model": "text-embedding-3-small", "input": ""}, "input"),
    ({"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"model": "text-embedding-3-small", "input": "x", "dimensions": 0}, "dimensions"),
    ({"model": "text-embedding-3-small", "input": "x", "dimensions": "64"}, "dimensions"),
    ({"model": "text-embedding-3-small", "input": "x", "user": 7}, "user"),
    ({"model": "claude-haiku-4-5", "input": "x"}, "model"),
])
def test_bad_input_is_a_400_naming_the_field(emb_stack, body, param):
    r = httpx.post(f"{emb_stack.url}/v1/embeddings", headers={"authorization": f"Bearer {emb_stack.key}"}, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param


def test_unknown_model_is_404_and_bad_key_401(emb_stack):
    r = httpx.post(f"{emb_stack.url}/v1/embeddings", headers={"authorization": f"Bearer {emb_stack.key}"},
                   json={"model": "no-such-embedder", "input": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = httpx.post(f"{emb_stack.url}/v1/embeddings", headers={"authorization": "Bearer nope"},
                   json={"model": "text-embedding-3-small", "input": "x"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_the_providers_refusal_stays_a_400(emb_stack):
    r = httpx.post(f"{emb_stack.url}/v1/embeddings", headers={"authorization": f"Bearer {emb_stack.key}"},
                   json={"model": "text-embedding-3-small", "input": "x", "dimensions": 1537})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "dimensions" in r.json()["error"]["message"]


def test_ledger_cost_equals_the_emulator_invoice(emb_stack, client):
    """Last in the module: every embedding call above, summed, against what the emulator billed."""
    client.embeddings.create(model="text-embedding-3-small", input=["invoice check", "one cached"])
    emb_stack.gateway.stop()  # graceful: flushes the ledger
    rows = [r for r in SQLiteLedger(str(emb_stack.ledger_path)).rows() if r.surface == "openai.embeddings"]
    invoice = localstack.invoice_from_billing(_billing(emb_stack), PriceBook())
    for model in ("text-embedding-3-small", "text-embedding-3-large"):
        ledger = sum((r.cost_usd for r in rows if r.requested_model == model and r.status == 200), Decimal(0))
        assert ledger == invoice[model] > 0, model


def test_the_emulator_serves_deterministic_embeddings(emb_stack):
    """The upstream itself (after the invoice check: these calls bill without a ledger row): the same
    input, the same unit vector; sizes as documented; its own 4xx."""
    url, key = f"{emb_stack.emulator.url}/v1/embeddings", {"authorization": "Bearer emulator-key"}
    one = httpx.post(url, headers=key, json={"model": "text-embedding-3-large", "input": "same"}).json()
    two = httpx.post(url, headers=key, json={"model": "text-embedding-3-large", "input": ["same", "other"]}).json()
    assert len(one["data"][0]["embedding"]) == 3072 and one["data"][0]["embedding"] == two["data"][0]["embedding"]
    assert two["data"][1]["embedding"] != two["data"][0]["embedding"]
    short = httpx.post(url, headers=key, json={"model": "text-embedding-3-large", "input": "same", "dimensions": 8})
    v = short.json()["data"][0]["embedding"]
    full = one["data"][0]["embedding"][:8]
    assert len(v) == 8 and abs(_norm(v) - 1) < 1e-9
    assert all(abs(a - b / _norm(full)) < 1e-9 for a, b in zip(v, full))  # the first 8, renormalised
    too_many = httpx.post(url, headers=key, json={"model": "text-embedding-3-small", "input": "x", "dimensions": 1537})
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "dimensions"
    assert httpx.post(url, headers=key, json={"model": "gpt-4o", "input": "x"}).status_code == 404
    assert httpx.post(url, json={"model": "text-embedding-3-small", "input": "x"}).status_code == 401


@pytest.fixture(scope="module")
def budget_stack(tmp_path_factory):
    def with_budget(cfg):  # $0.000001: 50 tokens of text-embedding-3-small
        cfg["budgets"] = {"budgets": [{"name": "emb", "scope": "tenant", "match": "demo", "limit_usd": 0.000001,
                                       "window": "day", "action": "block"}]}

    s = start_stack(tmp_path_factory.mktemp("emb-budget"), edit=with_budget)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def test_a_hard_budget_holds_for_embeddings(budget_stack):
    s = budget_stack
    with openai.OpenAI(base_url=f"{s.url}/v1", api_key=s.key, max_retries=0) as c:
        small = c.embeddings.create(model="text-embedding-3-small", input="ten tokens or so of text here")
        assert 0 < small.usage.prompt_tokens < 25
        with pytest.raises(openai.RateLimitError):  # its worst case alone is past the limit
            c.embeddings.create(model="text-embedding-3-small", input="many more words " * 20)
        # 46 tokens would fit an empty budget (50), but the first call's 7 count.
        assert small.usage.prompt_tokens == 7
        with pytest.raises(openai.RateLimitError):
            c.embeddings.create(model="text-embedding-3-small", input="word " * 45)
        # A cached input costs nothing and needs no room.
        assert c.embeddings.create(model="text-embedding-3-small", input="ten tokens or so of text here").data
    billed = _billing(s)["models"]["text-embedding-3-small"]
    assert billed["requests"] == 1 and billed["input_tokens"] == small.usage.prompt_tokens
