"""Each waste finding on a constructed `traffic` table whose answer is known by hand."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from thrifty.analysis import waste
from thrifty.analysis.profile import price_cards
from thrifty.pricing import PriceBook

from tests.analysis.traffic_rows import traffic

BOOK = PriceBook()


def run(con, finding, **kw):
    waste._price_table(con, price_cards(con, "traffic", BOOK))
    return getattr(waste, finding)(con, "traffic", **kw)


def test_three_identical_requests_are_two_duplicates_with_their_exact_cost():
    con = traffic([
        {"ts": 0.0, "request_hash": "h1", "status": 200, "cost_usd": "0.010"},
        {"ts": 1.0, "request_hash": "h1", "status": 200, "cost_usd": "0.011"},
        {"ts": 2.0, "request_hash": "h1", "status": 200, "cost_usd": "0.012"},
        {"ts": 3.0, "request_hash": "h2", "status": 200, "cost_usd": "0.500"},
        # Another tenant's identical request: its cache namespace is its own, so not a duplicate.
        {"ts": 4.0, "request_hash": "h2", "tenant": "other", "status": 200, "cost_usd": "0.500"},
        # Served by the gateway's exact cache already: free, not waste.
        {"ts": 5.0, "request_hash": "h2", "status": 200, "cache": "exact", "cost_usd": "0"},
    ])
    found = run(con, "exact_duplicates")
    assert found["available"] is True
    assert found["calls"] == 2
    assert found["usd"] == Decimal("0.023")
    assert found["distinct_requests"] == 1
    assert [(t["request_hash"], t["repeats"], t["usd"]) for t in found["top"]] == [("h1", 2, Decimal("0.023"))]


def test_repeats_after_failures_only_are_retries_not_duplicates():
    con = traffic([
        {"ts": 0.0, "request_hash": "h", "status": 500, "cost_usd": "0"},
        {"ts": 2.0, "request_hash": "h", "status": 500, "cost_usd": "0"},
        {"ts": 4.0, "request_hash": "h", "status": 200, "cost_usd": "0.02"},
        {"ts": 100.0, "request_hash": "h", "status": 200, "cost_usd": "0.03"},  # a real duplicate
        {"ts": 200.0, "request_hash": "k", "status": 429, "cost_usd": "0"},
        {"ts": 260.0, "request_hash": "k", "status": 200, "cost_usd": "0.04"},  # 60 s later: a patient retry
    ])
    dup = run(con, "exact_duplicates")
    assert (dup["calls"], dup["usd"]) == (1, Decimal("0.03"))
    storms = run(con, "retry_storms", window_s=30)
    assert storms["calls"] == 2  # the 2nd and 3rd sends of h, each within 30 s of a failure
    assert storms["usd"] == Decimal("0.02")
    assert storms["requests"] == 1
    assert storms["retries_that_failed_again"] == 1


def test_findings_without_their_columns_are_unavailable_with_a_reason():
    con = traffic([{"ts": 0.0, "model": "gpt-4o", "input_tokens": 10, "output_tokens": 5, "cost_usd": "0.001"}])
    found = waste.find_waste(con, "traffic", price_cards(con, "traffic", BOOK), near_sample=10)
    for name, result in found.items():
        assert result["available"] is False, name
        assert result["reason"], name
        assert (result["calls"], result["usd"]) == (0, 0)
    assert set(found) == set(waste.FINDINGS)


def test_oversized_caps_report_the_reserved_gap_not_a_spend():
    card = BOOK.card("gpt-4o")
    con = traffic([
        {"model": "gpt-4o", "max_tokens": 4096, "output_tokens": 100},   # oversized
        {"model": "gpt-4o", "max_tokens": 1000, "output_tokens": 250},   # exactly 4x: oversized
        {"model": "gpt-4o", "max_tokens": 1000, "output_tokens": 251},   # under 4x
        {"model": "gpt-4o", "max_tokens": 200, "output_tokens": 10},     # cap too small to matter
        {"model": "gpt-4o", "output_tokens": 10},                         # no cap
    ])
    found = run(con, "oversized_max_tokens")
    assert found["calls"] == 2
    assert found["usd"] == 0
    assert found["reserved_output_tokens"] == 5096
    assert found["used_output_tokens"] == 350
    assert found["headroom_tokens"] == 4746
    assert found["reserved_headroom_usd"] == Decimal(4746) * card.output / 1_000_000


def test_uncached_repeated_prefix_blocks_are_priced_at_the_cache_read_discount():
    card = BOOK.card("gpt-4o")
    blocks = ["b1", "b2", "b3", "b4"]
    con = traffic([
        {"ts": 0.0, "model": "gpt-4o", "prefix_hashes": blocks, "input_tokens": 2100, "cached_tokens": 0},
        # 60 s later, first 3 blocks shared: 1,536 reusable tokens, nothing read from cache.
        {"ts": 60.0, "model": "gpt-4o", "prefix_hashes": ["b1", "b2", "b3", "x"], "input_tokens": 2100,
         "cached_tokens": 0},
        # Read from the cache: fine.
        {"ts": 70.0, "model": "gpt-4o", "prefix_hashes": blocks, "input_tokens": 2100, "cached_tokens": 2048},
        # Cache status unknown (a token-only trace): counted, and said so. Shares all 4 blocks with
        # the previous call, capped at its own 1,800 input tokens.
        {"ts": 80.0, "model": "gpt-4o", "prefix_hashes": blocks, "input_tokens": 1800},
        # Too late: more than 5 minutes after the previous use of this prefix.
        {"ts": 500.0, "model": "gpt-4o", "prefix_hashes": blocks, "input_tokens": 2100, "cached_tokens": 0},
        # Another model does not share the provider cache.
        {"ts": 501.0, "model": "gpt-4o-mini", "prefix_hashes": blocks, "input_tokens": 2100, "cached_tokens": 0},
    ])
    found = run(con, "uncached_prefixes")
    assert found["calls"] == 2
    assert found["reusable_tokens"] == 1536 + 1800
    assert found["calls_cache_unknown"] == 1
    assert found["usd"] == Decimal(1536 + 1800) * (card.input - card.cache_read) / 1_000_000
    assert found["estimated"] is True


def test_a_long_system_prompt_repeated_without_cache_reads():
    card = BOOK.card("gpt-4o")
    system = "You are a careful assistant. " * 200  # 5,800 characters: about 1,450 tokens
    con = traffic([
        {"ts": 0.0, "model": "gpt-4o", "system_text": system, "input_tokens": 1600, "cached_tokens": 0},
        {"ts": 30.0, "model": "gpt-4o", "system_text": system, "input_tokens": 1600, "cached_tokens": 0},
        {"ts": 40.0, "model": "gpt-4o", "system_text": "short", "input_tokens": 1600, "cached_tokens": 0},
    ])
    found = run(con, "uncached_prefixes")
    assert found["calls"] == 1
    assert found["reusable_tokens"] == len(system) // 4
    assert found["usd"] == Decimal(len(system) // 4) * (card.input - card.cache_read) / 1_000_000


def test_streams_to_buffer_and_unread_generations():
    con = traffic([
        {"stream": True, "streamed_to_buffer": True, "read": False, "cost_usd": "0.25"},
        {"stream": True, "streamed_to_buffer": False, "read": True, "cost_usd": "0.50"},
        {"stream": True, "streamed_to_buffer": True, "read": True, "cost_usd": "0.125"},
    ])
    streams = run(con, "streams_to_buffer")
    assert (streams["calls"], streams["usd"], streams["spend_usd"]) == (2, 0, Decimal("0.375"))
    unread = run(con, "unread_generations")
    assert (unread["calls"], unread["usd"]) == (1, Decimal("0.25"))


class TableEmbedder:
    """Vectors chosen by hand: texts in the same cluster are identical unit vectors."""

    def __init__(self, clusters: dict[str, int]) -> None:
        self.clusters = clusters

    def embed_batch(self, texts):
        out = np.zeros((len(texts), 8), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, self.clusters[t]] = 1.0
        return out


def test_near_duplicates_count_paraphrases_within_model_and_system_prompt():
    emb = TableEmbedder({"reset my password": 0, "how do I reset my password": 0,
                         "password reset please": 0, "weather today": 1})
    con = traffic([
        {"ts": 0.0, "model": "m", "system_text": "s", "prompt_text": "reset my password", "cost_usd": "0.1"},
        {"ts": 1.0, "model": "m", "system_text": "s", "prompt_text": "how do I reset my password", "cost_usd": "0.2"},
        {"ts": 2.0, "model": "m", "system_text": "s", "prompt_text": "password reset please", "cost_usd": "0.4"},
        {"ts": 3.0, "model": "m", "system_text": "s", "prompt_text": "weather today", "cost_usd": "0.8"},
        # Identical text is the exact-duplicate finding's, not this one's.
        {"ts": 4.0, "model": "m", "system_text": "s", "prompt_text": "weather today", "cost_usd": "1.6"},
        # Another system prompt or model: another context, an answer there would not serve.
        {"ts": 5.0, "model": "m", "system_text": "other", "prompt_text": "reset my password", "cost_usd": "3.2"},
        {"ts": 6.0, "model": "n", "system_text": "s", "prompt_text": "how do I reset my password", "cost_usd": "6.4"},
    ])
    found = waste.near_duplicates(con, "traffic", embedder=emb, sample=100, threshold=0.9)
    assert found["calls"] == 2
    assert found["usd"] == Decimal("0.6")
    assert found["sampled"] is False
    assert found["population"] == 7


def test_near_duplicates_on_a_sample_compare_anchors_with_their_predecessors_and_scale_up():
    # 60 calls of one context in pairs of paraphrases: call 2k paraphrases call 2k-1, nothing else.
    rows = [{"ts": float(i), "model": "m", "prompt_text": f"q{i}", "cost_usd": "1"} for i in range(60)]
    emb = TableEmbedder({r["prompt_text"]: (i // 2) % 8 for i, r in enumerate(rows)})
    found = waste.near_duplicates(traffic(rows), "traffic", embedder=emb, sample=50, threshold=0.9)
    assert found["sampled"] is True and found["sample_size"] == 10  # 50 embeddings: 10 anchors + 4 each
    assert found["lookback_calls"] == waste.NEAR_LOOKBACK
    # Each anchor counts exactly when it is the second of its pair; the count is scaled by 60 / 10.
    assert 0 <= found["found_in_sample"] <= 10
    assert found["calls"] == found["found_in_sample"] * 6
    assert found["usd"] == Decimal(found["found_in_sample"] * 6)


def test_near_duplicates_sampled_find_every_anchor_that_repeats_its_predecessor():
    # Every call paraphrases the ones before it, so each of the 10 anchors is a near-duplicate
    # unless the sample drew the very first call, which has nothing before it.
    rows = [{"ts": float(i), "model": "m", "prompt_text": f"q{i}", "cost_usd": "2"} for i in range(60)]
    emb = TableEmbedder({r["prompt_text"]: 0 for r in rows})
    found = waste.near_duplicates(traffic(rows), "traffic", embedder=emb, sample=50, threshold=0.9)
    assert found["found_in_sample"] in (9, 10)
    assert found["calls"] == found["found_in_sample"] * 6


def test_near_duplicates_with_the_shipped_embedder():
    from thrifty.cache.semantic import model_available

    if (reason := model_available()) is not None:
        pytest.skip(reason)
    con = traffic([
        {"ts": 0.0, "model": "m", "prompt_text": "How do I reset my password?", "cost_usd": "0.1"},
        {"ts": 1.0, "model": "m", "prompt_text": "How do I reset my password ?", "cost_usd": "0.2"},
        {"ts": 2.0, "model": "m", "prompt_text": "Write a poem about the sea in winter.", "cost_usd": "0.4"},
    ])
    found = waste.near_duplicates(con, "traffic", sample=100)
    assert found["available"] is True
    assert (found["calls"], found["usd"]) == (1, Decimal("0.2"))
