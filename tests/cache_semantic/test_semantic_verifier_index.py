"""The guard verifier's cues, and the namespaced index (exact and HNSW) against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty.cache.semantic import FlatIndex, GuardVerifier, HnswIndex, NamespacedIndex, namespace_key
from thrifty.cache.semantic.verifier import entities, negated, numbers


def test_numbers_are_normalised():
    assert numbers("refund order 1,234 for $5.50") == {"1234", "5.50"}
    assert numbers("three tickets for 2 people") == {"3", "2"}
    assert numbers("no numbers here") == frozenset()


def test_negation_cues():
    assert negated("I can't log in") and negated("why is my card not working")
    assert negated("I never got it") and negated("dont charge me")
    assert not negated("I can log in") and not negated("knot tying tips")


def test_entities_skip_sentence_starts():
    assert entities("What is the price in Paris? Tell me about Lyon.") == {"paris", "lyon"}
    assert "what" not in entities("What time is it")


def test_guard_vetoes_what_embeddings_blur():
    guard = GuardVerifier()
    assert guard.consistent("how do I reset my password", "how can I reset my password")
    assert not guard.consistent("cancel order 1234", "cancel order 1235")
    assert not guard.consistent("is my card blocked", "is my card not blocked")
    assert guard.consistent("flights to Paris", "flights to Rome")  # entities off by default
    assert not GuardVerifier(check_entities=True).consistent("flights to Paris", "flights to Rome")
    assert GuardVerifier(check_entities=True).consistent("flights to Paris", "what flights go to paris")


def unit(rng, n, d=384):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("make", [FlatIndex, HnswIndex])
def test_index_add_search_remove(make):
    rng = np.random.default_rng(0)
    vectors = unit(rng, 500)
    index = make()
    for key, v in enumerate(vectors):
        index.add(key, v)
    assert len(index) == 500
    top = index.search(vectors[42], 3)
    assert top[0][0] == 42 and top[0][1] == pytest.approx(1.0, abs=1e-3) and top[0][1] <= 1.0
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    assert index.remove(42) and not index.remove(42)
    assert all(key != 42 for key, _ in index.search(vectors[42], 5))
    assert len(index) == 499


def test_flat_index_removal_keeps_the_other_rows_right():
    rng = np.random.default_rng(1)
    vectors = unit(rng, 40)
    index = FlatIndex()
    for key, v in enumerate(vectors):
        index.add(key, v)
    for key in range(0, 40, 3):
        index.remove(key)
    for key in range(40):
        hits = index.search(vectors[key], 1)
        if key % 3:
            assert hits[0][0] == key


def test_namespaces_never_see_each_other():
    rng = np.random.default_rng(2)
    v = unit(rng, 2)
    index = NamespacedIndex()
    index.add("tenant-a/x/small", 1, v[0])
    index.add("tenant-b/x/small", 2, v[0])
    assert [k for k, _ in index.search("tenant-a/x/small", v[0], 5)] == [1]
    assert index.search("tenant-c/x/small", v[0], 5) == []
    assert index.remove("tenant-a/x/small", 1)
    assert index.search("tenant-a/x/small", v[0], 5) == []
    assert index.namespaces() == ["tenant-b/x/small"]


def test_a_namespace_moves_to_hnsw_past_the_flat_limit_and_stays_accurate():
    rng = np.random.default_rng(3)
    vectors = unit(rng, 300)
    index = NamespacedIndex(flat_limit=100)
    for key, v in enumerate(vectors):
        index.add("ns", key, v)
    assert isinstance(index._indexes["ns"], HnswIndex)
    assert index.size("ns") == 300
    queries = unit(rng, 50)
    exact = np.argmax(queries @ vectors.T, axis=1)
    found = [index.search("ns", q, 1)[0][0] for q in queries]
    assert np.mean(np.array(found) == exact) >= 0.95


def test_namespace_key_scopes_by_tenant_context_and_tier():
    a = namespace_key("acme", "You are a support bot.", "small")
    assert a == namespace_key("acme", "You are a support bot.", "small")
    assert a != namespace_key("globex", "You are a support bot.", "small")
    assert a != namespace_key("acme", "You are a sales bot.", "small")
    assert a != namespace_key("acme", "You are a support bot.", "large")
    assert a != namespace_key("acme", "You are a support bot.", "small", context="FAQ v2")


def test_importing_the_package_loads_no_model_runtime():
    import subprocess
    import sys

    code = ("import sys, thrifty.cache.semantic as s; s.SemanticCache; "
            "print(sorted(m for m in ('onnxruntime', 'tokenizers', 'usearch', 'redis') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
