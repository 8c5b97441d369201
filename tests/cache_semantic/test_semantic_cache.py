"""The SemanticCache facade with the real ONNX embedder on a small FAQ set made here."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty.cache.semantic import (
    DecisionPolicy,
    GuardVerifier,
    InMemoryEntryStore,
    OperatingPoint,
    SemanticCache,
    namespace_key,
)

FAQ = {
    "reset": ("How do I reset my password?", b"Use the 'Forgot password' link."),
    "refund": ("How long does a refund take?", b"Refunds take 5 to 7 business days."),
    "cancel": ("How can I cancel my subscription?", b"Go to Settings > Billing > Cancel."),
    "hours": ("What are your support hours?", b"We answer 9am to 5pm CET, Monday to Friday."),
    "order": ("Where is order 1234?", b"Order 1234 shipped yesterday."),
}
PARAPHRASES = {
    "reset": "how can i reset my password",
    "refund": "how many days until I get my refund?",
    "cancel": "I want to cancel my subscription, how do I do it?",
    "hours": "what hours is support open?",
}
UNRELATED = ["What is the capital of Australia?", "Write a haiku about autumn leaves.",
             "Explain quantum entanglement to a child."]
NS = namespace_key("acme", "You are Acme's support assistant.", "small")


@pytest.fixture
def cache(embedder):
    # A threshold in the range the benchmarks calibrate to for this model (about 0.8 at 1%).
    c = SemanticCache(DecisionPolicy(OperatingPoint(threshold=0.75), verifier=GuardVerifier()), embedder=embedder)
    for entry_id, (text, answer) in FAQ.items():
        c.add(NS, text, entry_id, answer)
    return c


def test_embedder_gives_unit_vectors_and_batch_equals_single(embedder):
    texts = ["hello there", "How do I reset my password?", "a much longer sentence " * 40]
    batch = embedder.embed_batch(texts)
    assert batch.shape == (3, 384) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    for text, row in zip(texts, batch):
        assert float(embedder.embed(text) @ row) == pytest.approx(1.0, abs=1e-4)
    assert embedder.embed_batch([]).shape == (0, 384)


def test_embedder_puts_paraphrases_closer_than_unrelated_text(embedder):
    a, b, c = embedder.embed_batch(["How do I reset my password?", "how can i reset my password",
                                    "What is the capital of Australia?"])
    assert float(a @ b) > 0.85 > 0.3 > float(a @ c)


def test_paraphrases_hit_their_own_entry(cache):
    for entry_id, question in PARAPHRASES.items():
        found = cache.lookup(NS, question)
        assert found is not None, question
        entry, score = found
        assert entry.entry_id == entry_id and entry.payload == FAQ[entry_id][1]
        assert 0.75 < score <= 1.0


def test_unrelated_questions_miss(cache):
    for question in UNRELATED:
        assert cache.lookup(NS, question) is None


def test_other_tenants_and_system_prompts_never_hit(cache):
    question = FAQ["reset"][0]
    assert cache.lookup(NS, question) is not None
    assert cache.lookup(namespace_key("globex", "You are Acme's support assistant.", "small"), question) is None
    assert cache.lookup(namespace_key("acme", "You write poems.", "small"), question) is None
    assert cache.lookup(namespace_key("acme", "You are Acme's support assistant.", "large"), question) is None


def test_verifier_blocks_a_different_order_number(cache):
    assert cache.lookup(NS, "Where is order 1234?")[0].entry_id == "order"
    assert cache.lookup(NS, "Where is order 1235?") is None


def test_bad_feedback_evicts_the_entry_and_tightens_the_namespace(cache):
    entry, score = cache.lookup(NS, PARAPHRASES["refund"])
    before = cache.policy.threshold(NS)
    after = cache.feedback(entry.entry_id, bad=True)
    assert after == pytest.approx(score) and after > before
    assert cache.store.get("refund") is None and len(cache) == len(FAQ) - 1
    assert cache.lookup(NS, PARAPHRASES["refund"]) is None
    # An exact repeat of another entry is still served: only weaker matches are now refused.
    assert cache.lookup(NS, FAQ["reset"][0])[0].entry_id == "reset"
    other = namespace_key("acme", "other prompt", "small")
    assert cache.policy.threshold(other) == before


def test_good_feedback_changes_nothing(cache):
    entry, _ = cache.lookup(NS, PARAPHRASES["cancel"])
    assert cache.feedback(entry.entry_id, bad=False) == cache.policy.threshold(NS) == 0.75
    assert cache.store.get("cancel") is not None
    assert cache.feedback("no-such-entry", bad=True) is None


def test_re_adding_an_id_replaces_its_entry(cache):
    cache.add(NS, "How do I reset my password?", "reset", b"new answer")
    assert len(cache) == len(FAQ)
    assert cache.lookup(NS, "How do I reset my password?")[0].payload == b"new answer"


def test_store_capacity_evicts_from_the_index_too(embedder):
    c = SemanticCache(DecisionPolicy(0.75), embedder=embedder, store=InMemoryEntryStore(max_entries=2))
    for entry_id, (text, answer) in FAQ.items():
        c.add(NS, text, entry_id, answer)
    assert len(c) == 2 and len(c.store) == 2
    assert c.lookup(NS, FAQ["reset"][0]) is None
    assert c.lookup(NS, FAQ["order"][0])[0].entry_id == "order"


class CountingEmbedder:
    def __init__(self, inner):
        self.inner, self.calls, self.dimension = inner, 0, inner.dimension

    def embed(self, text):
        self.calls += 1
        return self.inner.embed(text)


def test_add_after_a_missed_lookup_reuses_the_embedding(embedder):
    counting = CountingEmbedder(embedder)
    c = SemanticCache(DecisionPolicy(0.75), embedder=counting)
    c.add(NS, FAQ["reset"][0], "reset", b"x")
    assert c.lookup(NS, "What is the capital of Australia?") is None
    c.add(NS, "What is the capital of Australia?", "capital", b"Canberra")
    assert counting.calls == 2
    assert c.lookup(NS, "what is the capital of australia")[0].payload == b"Canberra"
