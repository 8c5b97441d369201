"""The semantic cache as the gateway calls it: lookup, add, feedback.

lookup(namespace, text): embed the text, take the nearest entries of that namespace, and return
the first whose decision score passes the namespace's calibrated threshold (the verifier may veto
the nearest and let the next one through). Everything CPU-bound is synchronous: an async caller
runs it in a worker thread. A shared store that fails raises SemanticStoreUnavailable (a ThriftyError):
the pipeline treats it as a miss and records that the cache was down.

The usual sequence is lookup -> miss -> upstream call -> add with the same text: the last
`recent_vectors` embeddings are remembered so that add does not embed the text a second time.

With a policy that has `vote` weights (thrifty.cache.semantic.vote), as the default has, the
decision is a kNN vote over answer clusters in namespaces whose stored answers repeat (`voting`;
elsewhere the policy's nearest-neighbour point decides): `add(..., answer_key=...)` puts entries with the same answer in one cluster,
`confirm` makes a query that was served and found good another key of its entry's cluster, and
`explore` (a probability, 0 by default) turns that share of would-be hits into upstream calls
whose fresh answer, compared with the cached one (`explored`), is the evidence that tightens the
namespace (a different answer) or widens the cluster (the same answer, stored with `add`).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from thrifty.cache.semantic.decision import DecisionPolicy, default_policy
from thrifty.cache.semantic.embedder import OnnxEmbedder
from thrifty.cache.semantic.index import NamespacedIndex
from thrifty.cache.semantic.store import EntryStore, InMemoryEntryStore, SemanticEntry

log = logging.getLogger(__name__)

# The id of a confirmed query's key: its entry's id, this separator and 12 hex digits of the query.
_CONFIRMED_SEP = "+"
_CONFIRMED = re.compile(r"\+[0-9a-f]{12}$")


@dataclass(frozen=True)
class Lookup:
    """What a lookup decided: `entry` to serve, or a miss; `explored` names the entry that would
    have been served when this lookup was picked for exploration instead (call upstream, then
    report with `explored`)."""

    entry: SemanticEntry | None = None
    score: float = float("-inf")
    explored: SemanticEntry | None = None


class SemanticCache:
    """`policy` defaults to `default_policy()` (the kNN vote where answers repeat, the general
    cosine operating point elsewhere, guard verifier);
    `candidates`: how many neighbours a lookup considers; `sync_interval_s`: how often a lookup
    first applies other replicas' changes from a shared store."""

    def __init__(self, policy: DecisionPolicy | None = None, *, embedder: OnnxEmbedder | None = None,
                 store: EntryStore | None = None, index: NamespacedIndex | None = None,
                 candidates: int = 4, sync_interval_s: float = 0.2, served_memory: int = 100_000,
                 recent_vectors: int = 1024, explore: float | None = None, seed: int | None = None) -> None:
        self.policy = default_policy() if policy is None else policy
        # `is None`, not `or`: an empty store or index is falsy.
        self.embedder = OnnxEmbedder() if embedder is None else embedder
        self.store = InMemoryEntryStore() if store is None else store
        self.index = NamespacedIndex(self.embedder.dimension) if index is None else index
        self.candidates = candidates
        self.sync_interval_s = sync_interval_s
        explore = self.policy.explore if explore is None else explore
        if not 0.0 <= explore < 1.0:
            raise ValueError(f"explore must be in [0, 1), got {explore}")
        self.explore = explore
        self._rng = random.Random(seed)
        self._served_memory = served_memory
        self._keys: dict[str, int] = {}  # entry id -> this replica's index key
        self._ids: dict[int, tuple[str, str, str]] = {}  # index key -> (entry id, namespace, cluster)
        # Per namespace: [stored keys, of which joined a cluster that held one] (confirmations left
        # out) and per (namespace, cluster) its stored keys: when the vote applies (VoteWeights.applies).
        self._answer_counts: dict[str, list[int]] = {}
        self._cluster_keys: dict[tuple[str, str], int] = {}
        self._next_key = itertools.count(1)
        self._served: OrderedDict[str, tuple[str, float]] = OrderedDict()  # entry id -> (ns, score)
        self._recent_limit = recent_vectors
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()  # text -> its embedding
        self._lock = threading.Lock()
        self._synced_at = 0.0

    def __len__(self) -> int:
        return len(self._keys)

    # -------------------------------------------------------------- reading

    def lookup(self, namespace: str, text: str) -> tuple[SemanticEntry, float] | None:
        """The cached entry to serve for `text` in `namespace`, with its score, or None."""
        found = self.lookup_detail(namespace, text)
        return (found.entry, found.score) if found.entry is not None else None

    def lookup_detail(self, namespace: str, text: str, vector: np.ndarray | None = None) -> Lookup:
        """The whole decision: an entry to serve, a miss, or an exploration (see `Lookup`)."""
        self._maybe_sync()
        if self.index.size(namespace) == 0:
            return Lookup()
        return self._decide(namespace, text, self._embed(text) if vector is None else vector)

    def voting(self, namespace: str) -> bool:
        """Whether the policy's vote decides in `namespace` now (its stored answers repeat)."""
        with self._lock:
            keys, repeats = self._answer_counts.get(namespace, (0, 0))
        return self.policy.voting(keys, repeats)

    def _decide(self, namespace: str, text: str, vector: np.ndarray) -> Lookup:
        if not self.voting(namespace):
            found = self._nearest(namespace, text, vector)
        else:
            found = self._voted(namespace, text, vector)
        if found is None:
            return Lookup()
        entry, score = found
        if self.explore and self._rng.random() < self.explore:
            return Lookup(score=score, explored=entry)
        self._note_served(entry.entry_id, namespace, score)
        return Lookup(entry=entry, score=score)

    def lookup_vector(self, namespace: str, text: str, vector: np.ndarray) -> tuple[SemanticEntry, float] | None:
        """As `lookup`, for a text already embedded (no sync with other replicas first)."""
        found = self._decide(namespace, text, vector)
        return (found.entry, found.score) if found.entry is not None else None

    def _nearest(self, namespace: str, text: str, vector: np.ndarray) -> tuple[SemanticEntry, float] | None:
        threshold = self.policy.threshold(namespace, voting=False)
        for key, similarity in self.index.search(namespace, vector, self.candidates):
            if similarity <= threshold:
                break  # neighbours come most similar first
            entry = self._entry_of(key)
            if entry is not None and self.policy.accept(namespace, similarity, text, entry.text, voting=False):
                return entry, similarity
        return None

    def _voted(self, namespace: str, text: str, vector: np.ndarray) -> tuple[SemanticEntry, float] | None:
        weights = self.policy.vote
        neighbours = []
        for key, similarity in self.index.search(namespace, vector, max(weights.k, self.candidates)):
            found = self._ids.get(key)
            if found is not None:
                neighbours.append((key, similarity, found[2]))
        vote = weights.vote(neighbours)
        if vote.key is None or vote.score <= self.policy.threshold(namespace):
            return None
        entry = self._entry_of(vote.key)
        if entry is None or not self.policy.accept(namespace, vote.score, text, entry.text):
            return None
        return entry, vote.score

    def _entry_of(self, key: int) -> SemanticEntry | None:
        found = self._ids.get(key)
        if found is None:
            return None
        entry = self.store.get(found[0])
        if entry is None:  # deleted or expired elsewhere
            self._forget(found[0])
        return entry

    # -------------------------------------------------------------- writing

    def add(self, namespace: str, text: str, entry_id: str, payload: bytes,
            vector: np.ndarray | None = None, answer_key: str = "") -> SemanticEntry:
        """Store an answer under the text that produced it (re-adding an id replaces it).

        `answer_key`: entries of a namespace with the same key give the same answer and vote as
        one cluster (see `answer_key`); empty, the entry is a cluster of its own.
        """
        if vector is None:
            vector = self._embed(text)
        entry = SemanticEntry(entry_id=entry_id, namespace=namespace, text=text, payload=payload,
                              vector=vector, created_at=time.time(), answer_key=answer_key)
        self.store.put(entry)
        self._index_entry(entry_id, namespace, vector, entry.cluster)
        self._drop_evicted()
        return entry

    def confirm(self, entry_id: str, text: str, vector: np.ndarray | None = None) -> SemanticEntry | None:
        """`text` was served `entry_id`'s answer and it was right: `text` becomes another key of
        that answer's cluster (an entry of its own, same payload). None when the entry is gone."""
        entry = self.store.get(entry_id)
        if entry is None or entry.text == text:
            return None
        key_id = f"{entry_id}{_CONFIRMED_SEP}{hashlib.sha256(text.encode()).hexdigest()[:12]}"
        return self.add(entry.namespace, text, key_id, entry.payload, vector, answer_key=entry.cluster)

    def explored(self, namespace: str, candidate: SemanticEntry, score: float, same_answer: bool) -> float:
        """The outcome of an exploration: the fresh answer was (not) the candidate's. The checks of
        a namespace are its sample of what it would serve: a different answer raises its threshold
        until the bad share of the checks above it is within the target
        (`DecisionPolicy.record_check`); returns the namespace's threshold afterwards. Store the
        fresh answer with `add` (with its answer key, it joins the candidate's cluster when the
        answers match)."""
        return self.policy.record_check(namespace, score, bad=not same_answer)

    def remove(self, entry_id: str) -> bool:
        removed = self.store.delete(entry_id) is not None
        return self._forget(entry_id) or removed

    def feedback(self, entry_id: str, bad: bool, score: float | None = None) -> float | None:
        """A client's verdict on a served entry. A bad one evicts the entry and tightens its
        namespace; returns the namespace's threshold afterwards (None when the entry is unknown).

        `score` is the similarity at which it was served; by default the last one this replica saw.
        """
        with self._lock:
            served = self._served.get(entry_id)
        namespace = served[0] if served else None
        if namespace is None:
            entry = self.store.get(entry_id)
            namespace = entry.namespace if entry else self._namespace_of(entry_id)
        if namespace is None:
            return None
        if not bad:
            return self.policy.threshold(namespace)
        self.remove(entry_id)
        similarity = score if score is not None else (served[1] if served else None)
        if similarity is None:
            return self.policy.threshold(namespace)
        before = self.policy.threshold(namespace)
        after = self.policy.record_bad_hit(namespace, similarity)
        if after > before:
            log.info("semantic cache: namespace %s tightened from %.4f to %.4f after a bad hit at %.4f",
                     namespace, before, after, similarity)
        return after

    # -------------------------------------------------------------- replicas

    def sync(self) -> int:
        """Apply other replicas' puts and deletes to this replica's index; returns how many."""
        changes = self.store.changes()
        for change in changes:
            if change.op == "put" and change.entry is not None and change.entry.vector is not None:
                self._index_entry(change.entry_id, change.entry.namespace, change.entry.vector,
                                  change.entry.cluster)
            elif change.op == "delete":
                self._forget(change.entry_id)
        if getattr(self.store, "fell_behind", False):
            self.rebuild()
        self._synced_at = time.monotonic()
        return len(changes)

    def rebuild(self) -> int:
        """Build this replica's index from every entry in the store (at start, or after falling behind)."""
        with self._lock:
            for entry_id in list(self._keys):
                self._forget_locked(entry_id)
        count = 0
        for entry in self.store.entries():
            if entry.vector is not None:
                self._index_entry(entry.entry_id, entry.namespace, entry.vector, entry.cluster)
                count += 1
        if hasattr(self.store, "fell_behind"):
            self.store.fell_behind = False
        return count

    def _maybe_sync(self) -> None:
        if time.monotonic() - self._synced_at >= self.sync_interval_s:
            self.sync()

    # -------------------------------------------------------------- bookkeeping

    def recent_vector(self, text: str) -> np.ndarray | None:
        """`text`'s embedding if this cache computed it lately (no new embedding is made)."""
        with self._lock:
            return self._recent.get(text)

    def _embed(self, text: str) -> np.ndarray:
        with self._lock:
            vector = self._recent.get(text)
            if vector is not None:
                self._recent.move_to_end(text)
                return vector
        vector = self.embedder.embed(text)
        with self._lock:
            self._recent[text] = vector
            while len(self._recent) > self._recent_limit:
                self._recent.popitem(last=False)
        return vector

    def _index_entry(self, entry_id: str, namespace: str, vector: np.ndarray, cluster: str = "") -> None:
        with self._lock:
            old = self._keys.get(entry_id)
            if old is not None:
                self._forget_locked(entry_id)
            key = next(self._next_key)
            self._keys[entry_id] = key
            self._ids[key] = (entry_id, namespace, cluster or entry_id)
            self._count(namespace, cluster or entry_id, entry_id, +1)
        self.index.add(namespace, key, vector)

    def _count(self, namespace: str, cluster: str, entry_id: str, step: int) -> None:
        """Keep the answer counts of `voting` as a key comes (+1) or goes (-1); under the lock."""
        if _CONFIRMED.search(entry_id):
            return  # a confirmed query: evidence of the answer's quality, not that answers repeat
        held = self._cluster_keys.get((namespace, cluster), 0)
        if step > 0:
            counts = self._answer_counts.setdefault(namespace, [0, 0])
            counts[0] += 1
            counts[1] += held > 0
            self._cluster_keys[(namespace, cluster)] = held + 1
        elif held:
            counts = self._answer_counts[namespace]
            counts[0] -= 1
            counts[1] -= held > 1
            if held > 1:
                self._cluster_keys[(namespace, cluster)] = held - 1
            else:
                del self._cluster_keys[(namespace, cluster)]
            if not counts[0]:
                del self._answer_counts[namespace]

    def _forget(self, entry_id: str) -> bool:
        with self._lock:
            return self._forget_locked(entry_id)

    def _forget_locked(self, entry_id: str) -> bool:
        key = self._keys.pop(entry_id, None)
        if key is None:
            return False
        _, namespace, cluster = self._ids.pop(key)
        self._count(namespace, cluster, entry_id, -1)
        self.index.remove(namespace, key)
        self._served.pop(entry_id, None)
        return True

    def _namespace_of(self, entry_id: str) -> str | None:
        key = self._keys.get(entry_id)
        return self._ids[key][1] if key is not None else None

    def _drop_evicted(self) -> None:
        for change in self.store.changes() if isinstance(self.store, InMemoryEntryStore) else ():
            self._forget(change.entry_id)

    def _note_served(self, entry_id: str, namespace: str, similarity: float) -> None:
        self.policy.record_hit(namespace, similarity)
        with self._lock:
            self._served[entry_id] = (namespace, similarity)
            self._served.move_to_end(entry_id)
            while len(self._served) > self._served_memory:
                self._served.popitem(last=False)


def answer_key(text: str) -> str:
    """The key of an answer's text: equal after case and whitespace are normalised."""
    return hashlib.sha256(" ".join(text.lower().split()).encode()).hexdigest()[:24]
