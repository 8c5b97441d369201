"""A learned policy's embedding model in the router: the embedding the semantic cache hands over
(`Call.embedding` -> `Router.decide(..., embedding=...)`) decides; without one, or with one of
another size, the cheap-features model does. Policy files written by hand, both format versions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thrifty.errors import ConfigError, ThriftyError
from thrifty.routing import Router, RoutingConfig, features_from_prompt
from thrifty.routing.learned import CHEAP_FEATURES, FORMAT, load_policy

DIM = 3


def policy_json(*, cheap_bias: float, emb_weights: tuple[float, ...] = (10.0, 0.0, 0.0), emb_bias: float = -5.0,
                version: int | None = 2) -> dict:
    """Both models ignore the request features; the cheap one is its bias, the embedding one reads
    the embedding's numbers (10 x the first one, less 5: (1, 0, 0) -> p 0.99, (0, 1, 0) -> p 0.007)."""
    zeros = [0.0] * len(CHEAP_FEATURES)
    raw = {"format": FORMAT, "feature_version": 1, "tiers": {"cheap": "fast", "strong": "strong"},
           "models": {"cheap": "small", "strong": "big"}, "threshold": 0.5, "features": list(CHEAP_FEATURES),
           "cheap": {"weights": zeros, "bias": cheap_bias, "l2": 1.0, "grid": []},
           "embedding": {"weights": zeros + list(emb_weights), "bias": emb_bias, "l2": 1.0,
                         "threshold": 0.5, "grid": []},
           "trained_on": {"rows": 0}}
    if version is not None:
        raw["version"] = version
        raw["embedding"]["dimension"] = len(emb_weights)
    return raw


def router_for(tmp_path, raw: dict) -> Router:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(raw))
    return Router(RoutingConfig.model_validate({
        "tiers": {"fast": ["small"], "strong": ["big"]}, "default_tier": "strong",
        "rules": [{"name": "learned", "tier": "strong", "policy": str(path)}]}))


FEATURES = features_from_prompt("Which gas do plants absorb?\nA) Oxygen\nB) Carbon dioxide")


@pytest.mark.parametrize("version", [2, None])  # None: a version-1 file (no version, no dimension)
def test_the_handed_over_embedding_decides(tmp_path, version):
    router = router_for(tmp_path, policy_json(cheap_bias=-5.0, version=version))
    # No embedding: the cheap model (p 0.007) keeps the call on the strong tier.
    assert router.decide(FEATURES, "thrifty/auto").tier == "strong"
    # The semantic cache's vector (float32 numpy, as it hands it over) moves it to the cheap tier.
    yes = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    assert router.decide(FEATURES, "thrifty/auto", embedding=yes).tier == "fast"
    assert router.decide(FEATURES, "thrifty/auto", embedding=[0.0, 1.0, 0.0]).tier == "strong"


def test_no_embedding_or_another_size_falls_back_to_the_cheap_model(tmp_path):
    router = router_for(tmp_path, policy_json(cheap_bias=5.0))  # the cheap model says "cheap tier"
    assert router.decide(FEATURES, "thrifty/auto").tier == "fast"
    assert router.decide(FEATURES, "thrifty/auto", embedding=[0.0, 1.0, 0.0]).tier == "strong"
    # Another embedder's vector (384 numbers here, the policy was trained on 3): not used, no error.
    assert router.decide(FEATURES, "thrifty/auto", embedding=np.ones(384, dtype=np.float32)).tier == "fast"
    policy = load_policy(tmp_path / "policy.json")
    assert policy.embedding_dimension == DIM
    assert policy.uses_embedding([1.0, 0.0, 0.0]) and not policy.uses_embedding([1.0, 0.0])
    # The decision's probability is the embedding model's own, and its threshold is the one used.
    cheap, p = policy.use_cheap(FEATURES, embedding=[1.0, 0.0, 0.0])
    assert cheap and p == pytest.approx(1 / (1 + np.exp(-5.0)))


def test_policy_file_versions(tmp_path):
    path = tmp_path / "p.json"
    v1 = policy_json(cheap_bias=0.0, version=None)
    path.write_text(json.dumps(v1))
    policy = load_policy(path)
    saved = policy.to_json()
    assert saved["version"] == 3 and saved["embedding"]["dimension"] == DIM  # v1 in, v3 out, same models
    assert saved["answer"] is None  # no answer stage: a version-3 file that reads as a version-2 one
    path.write_text(json.dumps(saved))
    again = load_policy(path)
    assert again.embedding == policy.embedding and again.cheap == policy.cheap
    path.write_text(json.dumps({**saved, "version": 4}))
    with pytest.raises(ThriftyError, match="version 4"):
        load_policy(path)
    bad = policy_json(cheap_bias=0.0)
    bad["embedding"]["dimension"] = 384
    path.write_text(json.dumps(bad))
    with pytest.raises(ThriftyError, match="dimension 384"):
        load_policy(path)
    with pytest.raises(ConfigError, match="version 4"):
        router_for(tmp_path, {**saved, "version": 4})
