"""The semantic response cache: serve a neighbour's answer when a calibrated decision accepts it.

`embedder` turns text into unit vectors (int8 ONNX MiniLM, local CPU), `index` finds neighbours
within a namespace (exact for small namespaces, usearch HNSW for large), `decision` holds the
calibrated per-namespace thresholds and their online tightening, `verifier` vetoes pairs whose
numbers or negation differ, `store` keeps entries (in-process or Redis for several replicas) and
`vote` the kNN vote over answer clusters (thrifty eval cache --stream chose it), `stream` the
stream evaluation, and `semantic.SemanticCache` is what the gateway calls. Nothing here loads a model at import.
"""

from thrifty.cache.semantic.decision import (
    DEFAULT_CONFIDENCE,
    DEFAULT_TARGET_FALSE_HIT,
    REJECTED,
    DecisionPolicy,
    Metrics,
    OperatingPoint,
    calibrate,
    default_policy,
    general_policy,
    metrics,
    roc_auc,
)
from thrifty.cache.semantic.embedder import DIMENSION, OnnxEmbedder, model_available
from thrifty.cache.semantic.index import FlatIndex, HnswIndex, NamespacedIndex, namespace_key
from thrifty.cache.semantic.semantic import Lookup, SemanticCache, answer_key
from thrifty.cache.semantic.store import (
    Change,
    EntryStore,
    InMemoryEntryStore,
    RedisEntryStore,
    SemanticEntry,
)
from thrifty.cache.semantic.verifier import GuardVerifier, Verifier
from thrifty.cache.semantic.vote import Vote, VoteWeights
from thrifty.errors import CalibrationError, EmbedderUnavailable, SemanticStoreUnavailable

__all__ = [
    "DEFAULT_CONFIDENCE", "DEFAULT_TARGET_FALSE_HIT", "DIMENSION", "REJECTED", "CalibrationError", "Change",
    "DecisionPolicy", "EmbedderUnavailable", "EntryStore", "FlatIndex", "GuardVerifier", "HnswIndex",
    "InMemoryEntryStore", "Lookup", "Metrics", "NamespacedIndex", "OnnxEmbedder", "OperatingPoint", "RedisEntryStore",
    "SemanticCache", "SemanticEntry", "SemanticStoreUnavailable", "Verifier", "Vote", "VoteWeights", "answer_key",
    "calibrate", "default_policy", "general_policy", "metrics",
    "model_available", "namespace_key", "roc_auc",
]
