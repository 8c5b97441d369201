"""Two gateway replicas sharing entries through the real Redis at 127.0.0.1:6379.

Vectors are made here (no model): each replica's index is fed from the store's change stream.
"""

from __future__ import annotations

import numpy as np
import pytest

from thrifty.cache.semantic import DecisionPolicy, RedisEntryStore, SemanticCache, SemanticEntry
REDIS_URL = "redis://127.0.0.1:6379/0"


class NoEmbedder:
    dimension = 384

    def embed(self, text):  # every call in these tests passes its vector
        raise AssertionError("no embedding expected")


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return v / np.linalg.norm(v)


def replica(prefix: str) -> SemanticCache:
    return SemanticCache(DecisionPolicy(0.9), embedder=NoEmbedder(),
                         store=RedisEntryStore(REDIS_URL, prefix=prefix), sync_interval_s=0.0)


def test_store_round_trips_an_entry(redis_prefix):
    store = RedisEntryStore(REDIS_URL, prefix=redis_prefix, ttl_s=60)
    v = unit(1)
    store.put(SemanticEntry("e1", "ns", "question?", b"\x00answer\xff", vector=v, created_at=123.5))
    got = store.get("e1")
    assert (got.entry_id, got.namespace, got.text, got.payload, got.created_at) == \
        ("e1", "ns", "question?", b"\x00answer\xff", 123.5)
    assert np.array_equal(got.vector, v)
    assert len(store) == 1 and [e.entry_id for e in store.entries()] == ["e1"]
    assert store.delete("e1").payload == b"\x00answer\xff"
    assert store.get("e1") is None and store.delete("e1") is None


def test_a_replica_sees_another_replicas_entries_and_deletes(redis_prefix):
    a, b = replica(redis_prefix), replica(redis_prefix)
    v = unit(2)
    a.add("ns", "how do I reset my password", "e1", b"answer", vector=v)
    assert a.lookup_vector("ns", "q", v)[0].entry_id == "e1"
    assert b.sync() == 1
    entry, score = b.lookup_vector("ns", "q", v)
    assert entry.entry_id == "e1" and entry.payload == b"answer" and score == pytest.approx(1.0, abs=1e-5)
    b.remove("e1")
    # A's index still holds the key, but the lookup re-reads the store: never served.
    assert a.lookup_vector("ns", "q", v) is None
    a.sync()
    assert len(a) == 0 and len(b) == 0


def test_bad_feedback_on_one_replica_evicts_for_all(redis_prefix):
    a, b = replica(redis_prefix), replica(redis_prefix)
    v = unit(3)
    a.add("ns", "text", "e1", b"wrong answer", vector=v)
    b.sync()
    assert b.lookup_vector("ns", "text", v) is not None
    b.feedback("e1", bad=True)
    assert a.lookup_vector("ns", "text", v) is None
    assert a.sync() == 1 and len(a) == 0


def test_a_new_replica_builds_its_index_from_the_store(redis_prefix):
    a = replica(redis_prefix)
    for i in range(5):
        a.add("ns", f"text {i}", f"e{i}", b"x", vector=unit(10 + i))
    late = replica(redis_prefix)
    assert late.rebuild() == 5
    assert late.lookup_vector("ns", "q", unit(12))[0].entry_id == "e2"
