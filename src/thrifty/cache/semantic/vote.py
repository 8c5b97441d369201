"""kNN voting over answer clusters: the semantic cache's decision for a stream of queries.

A lookup sees the top `k` keys of its namespace. Each key belongs to an answer cluster: the
entries whose answers are the same (an `answer_key` given when the answer was stored, for
example a hash of a FAQ bot's canned answer text), plus the queries that were served that
cluster's answer and confirmed good (client feedback), which become more keys of it. So a
cluster of paraphrases widens as traffic arrives, and a query is judged against every
phrasing seen so far, not against one stored question.

The decision score of the best cluster c among the neighbours is

    score = best_cosine(c) + agreement * (keys of c among the top k - 1) - rival * best_cosine(other clusters)

(several neighbours agreeing raise it; a close neighbour with a different answer lowers it).
The threshold on this score is calibrated on a stream of labelled traffic
(`thrifty eval cache --stream`), not on pairs: the score depends on what the cache holds.
The weights were chosen by measurement on the CLINC150 train stream (bench/results or
docs/semantic_cache.md); they are not tuned on any test split.

The rival term is evidence only where answer keys tell answers apart: in a namespace whose
answers never repeat byte for byte (free-form LLM answers) every stored entry is a cluster of one,
every other neighbour is a "rival" whether it means the same or not, and the vote would refuse
nearly everything. So the vote applies in a namespace once its stored answers repeat (at least
`repeat_share` of its stored keys joined a cluster that already held one, counted over at least
`min_keys` keys; confirmations do not count); before that, and in namespaces where answers never
repeat, the policy's nearest-neighbour operating point decides (`DecisionPolicy.nearest`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

DEFAULT_K = 8
DEFAULT_AGREEMENT = 0.06
DEFAULT_RIVAL = 0.5
DEFAULT_REPEAT_SHARE = 0.1
DEFAULT_MIN_KEYS = 10


@dataclass(frozen=True)
class Vote:
    cluster: str | None  # the answer cluster to serve (None: no neighbours)
    score: float
    key: int | None = None  # its most similar key among the neighbours
    similarity: float = 0.0  # that key's cosine
    agreeing: int = 0  # keys of the cluster among the neighbours


@dataclass(frozen=True)
class VoteWeights:
    k: int = DEFAULT_K
    agreement: float = DEFAULT_AGREEMENT
    rival: float = DEFAULT_RIVAL
    repeat_share: float = DEFAULT_REPEAT_SHARE  # see the module doc: when the vote applies
    min_keys: int = DEFAULT_MIN_KEYS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VoteWeights:
        return cls(k=int(data.get("k", DEFAULT_K)), agreement=float(data.get("agreement", DEFAULT_AGREEMENT)),
                   rival=float(data.get("rival", DEFAULT_RIVAL)),
                   repeat_share=float(data.get("repeat_share", DEFAULT_REPEAT_SHARE)),
                   min_keys=int(data.get("min_keys", DEFAULT_MIN_KEYS)))

    def applies(self, keys: int, repeats: int) -> bool:
        """Whether a namespace holding `keys` stored keys, `repeats` of which joined a cluster
        that already held one, has the answer evidence the vote needs (see the module doc)."""
        return keys >= self.min_keys and repeats >= self.repeat_share * keys

    def vote(self, neighbours: Sequence[tuple[int, float, str]]) -> Vote:
        """`neighbours`: (key, cosine, cluster), most similar first (at most k are looked at)."""
        best: dict[str, tuple[int, float]] = {}
        count: dict[str, int] = {}
        for key, similarity, cluster in neighbours[: self.k]:
            if cluster not in best:
                best[cluster] = (key, similarity)
            count[cluster] = count.get(cluster, 0) + 1
        if not best:
            return Vote(None, float("-inf"))
        top = next(iter(best))  # insertion order = the most similar key's cluster first
        key, similarity = best[top]
        rival = max((s for c, (_, s) in best.items() if c != top), default=0.0)
        score = similarity + self.agreement * (count[top] - 1) - self.rival * max(rival, 0.0)
        return Vote(top, float(score), key, float(similarity), count[top])
