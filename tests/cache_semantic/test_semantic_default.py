"""The shipped default (issue 14): the kNN vote in namespaces whose answers repeat (FAQ traffic),
the general cosine point where they do not (free-form answers), on constructed vectors."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty.cache.semantic import SemanticCache, default_policy, general_policy
from thrifty.cache.semantic.index import NamespacedIndex
from thrifty.cache.semantic.store import InMemoryEntryStore
from thrifty.cache.semantic.stream import simulate

DIM = 24


def axis(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1.0
    return v


def toward_query(cosine: float, side: int) -> np.ndarray:
    """A unit vector at `cosine` to the query (axis 0), leaning along axis `side`."""
    return (cosine * axis(0) + np.sqrt(1.0 - cosine ** 2) * axis(side)).astype(np.float32)


def cache(policy=None) -> SemanticCache:
    return SemanticCache(default_policy() if policy is None else policy, index=NamespacedIndex(DIM),
                         store=InMemoryEntryStore(keep_vectors=True))  # vectors kept: `rebuild` works


def fill(c: SemanticCache, keys: list[str]) -> None:
    """Entries far from the query (cosine 0), with these answer keys ("" : an answer of its own)."""
    for n, key in enumerate(keys):
        c.add("ns", f"filler question {n}", f"f{n}", b"F", axis(3 + n), answer_key=key)


def near_pair(c: SemanticCache, first_key: str, second_key: str) -> None:
    # nearest at 0.97 and a second at 0.96: above the general cosine point (0.9528) both
    c.add("ns", "how do i reset my password", "a", b"A", toward_query(0.97, 1), answer_key=first_key)
    c.add("ns", "how can i change my password", "b", b"B", toward_query(0.96, 2), answer_key=second_key)


QUERY = "how do i reset the password"


def test_free_form_answers_keep_the_general_cosine_point():
    # No two answers repeat: every entry is a cluster of one, so the vote would count the
    # near-identical second entry as a rival and refuse (0.97 - 0.5 * 0.96 < 0.83).
    c = cache()
    fill(c, [""] * 12)
    near_pair(c, "", "")
    assert not c.voting("ns")
    found = c.lookup_detail("ns", QUERY, axis(0))
    assert found.entry is not None and found.entry.entry_id == "a" and found.score == pytest.approx(0.97, abs=1e-4)
    # ... exactly what the default before the vote serves
    old = cache(general_policy())
    fill(old, [""] * 12)
    near_pair(old, "", "")
    assert old.lookup_detail("ns", QUERY, axis(0)).entry.entry_id == "a"


def test_where_answers_repeat_a_close_neighbour_with_another_answer_is_a_miss():
    c = cache()
    fill(c, [f"k{n // 2}" for n in range(12)])  # pairs of equal answers: half the keys repeat
    near_pair(c, "A", "B")
    assert c.voting("ns")
    assert c.lookup_detail("ns", QUERY, axis(0)).entry is None  # ambiguous: two answers this close
    # The nearest-neighbour default served it (a false hit when the query meant B's answer).
    old = cache(general_policy())
    fill(old, [f"k{n // 2}" for n in range(12)])
    near_pair(old, "A", "B")
    assert old.lookup_detail("ns", QUERY, axis(0)).entry is not None
    # Two neighbours that agree on one answer are served, with the agreement in the score.
    agree = cache()
    fill(agree, [f"k{n // 2}" for n in range(12)])
    near_pair(agree, "A", "A")
    found = agree.lookup_detail("ns", QUERY, axis(0))
    assert found.entry is not None and found.entry.entry_id == "a"
    assert found.score == pytest.approx(0.97 + 0.06, abs=1e-3)


def test_the_answer_counts_follow_removals_confirmations_and_rebuilds():
    c = cache()
    fill(c, ["same"] * 2 + [""] * 8)  # 10 keys, 1 repeat: a tenth, the least the vote needs
    assert c._answer_counts["ns"] == [10, 1] and c.voting("ns")
    assert c.remove("f1")  # the repeated key goes: no repeat left
    assert c._answer_counts["ns"] == [9, 0] and not c.voting("ns")
    # confirmed queries are keys of a cluster but not evidence that answers repeat
    for n in range(5):
        assert c.confirm("f0", f"another way to ask {n}", axis(20)) is not None
    assert len(c) == 14 and c._answer_counts["ns"] == [9, 0]
    c.add("ns", "same again", "g", b"F", axis(21), answer_key="same")
    assert c._answer_counts["ns"] == [10, 1]
    before = {ns: list(counts) for ns, counts in c._answer_counts.items()}
    assert c.rebuild() == 15
    assert c._answer_counts == before
    for entry_id in list(c._keys):
        c.remove(entry_id)
    assert c._answer_counts == {} and c._cluster_keys == {}


def test_a_free_form_stream_scores_the_default_as_the_general_point():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(6, DIM))
    texts, answers, vectors = [], [], []
    for n in range(60):
        v = centres[n % 6] + rng.normal(scale=0.3, size=DIM)
        texts.append(f"question {chr(97 + n % 26)}{chr(97 + n // 26)}")
        answers.append(f"i{n % 6}")
        vectors.append(v / np.linalg.norm(v))
    vectors = np.asarray(vectors, dtype=np.float32)
    free = [simulate(texts, answers, vectors, p, seed=1, free_form=True) for p in (default_policy(), general_policy())]
    assert free[0] == free[1] and free[0].served > 0
    keyed = simulate(texts, answers, vectors, default_policy(), seed=1)
    assert keyed != free[0]  # with answer keys the vote decides
