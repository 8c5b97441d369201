"""Through the gateway: the embedding the semantic cache computed for a call reaches the learned
policy (`Call.embedding` -> `Router.decide`), and a call without one is decided by the policy's
cheap-features model. Uses the real ONNX embedder (skips when the model package is absent)."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import start_stack
from thrifty.cache.semantic import model_available
from thrifty.routing.learned import CHEAP_FEATURES, FORMAT

ANCHOR = "Which planet in our solar system has the largest number of known moons?"
OTHER = "Translate 'good morning' into Portuguese."


@pytest.fixture(scope="module")
def learned_stack(tmp_path_factory):
    missing = model_available()
    if missing:
        pytest.skip(missing)
    from thrifty.cache.semantic.embedder import OnnxEmbedder

    tmp = tmp_path_factory.mktemp("learned")
    anchor = [float(v) for v in OnnxEmbedder().embed(ANCHOR)]
    zeros = [0.0] * len(CHEAP_FEATURES)
    # The cheap model keeps every call on the strong tier (p 0.007); the embedding model sends a
    # prompt to the cheap tier when its embedding is close to ANCHOR's (10 cos - 5 > 0: cos > 0.5).
    policy = {"format": FORMAT, "version": 2, "feature_version": 1,
              "tiers": {"cheap": "fast", "strong": "standard"},
              "models": {"cheap": "gpt-4o-mini", "strong": "gpt-4o"}, "threshold": 0.5,
              "features": list(CHEAP_FEATURES), "cheap": {"weights": zeros, "bias": -5.0, "grid": []},
              "embedding": {"weights": zeros + [10.0 * v for v in anchor], "bias": -5.0,
                            "dimension": len(anchor), "threshold": 0.5, "grid": []},
              "trained_on": {}}
    path = tmp / "policy.json"
    path.write_text(json.dumps(policy))

    def edit(cfg):
        cfg["levers"] = {"semantic_cache": {"enabled": True}}
        cfg["routes"] = [{"name": "faq", "match": {"feature": "faq"}, "semantic_cache": True}]
        cfg["routing"] = {"tiers": {"fast": ["gpt-4o-mini"], "standard": ["gpt-4o"]}, "default_tier": "standard",
                          "rules": [{"name": "learned", "tier": "standard", "policy": str(path)}]}

    s = start_stack(tmp, edit=edit)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def ask(stack, question, feature, system="You answer in one short sentence."):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        return c.chat.completions.with_raw_response.create(
            model="thrifty/auto", extra_headers={"x-thrifty-feature": feature},
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}])


def test_the_semantic_caches_embedding_reaches_the_policy(learned_stack):
    s = learned_stack
    # No semantic cache on this route, so no embedding: the cheap-features model decides (strong tier).
    plain = ask(s, ANCHOR, "other", system="You answer in one short word.")
    assert plain.headers["x-thrifty-tier"] == "standard"
    # The cache may embed only when its namespace holds entries: the first call stores one (a whole
    # answer is stored before it is sent); OTHER is far from ANCHOR, so it stays on the strong tier
    # whichever model decides it.
    first = ask(s, OTHER, "faq")
    assert first.headers["x-thrifty-cache"] == "miss" and first.headers["x-thrifty-tier"] == "standard"
    # Now the lookup embeds ANCHOR (a miss against OTHER's entry) and the embedding model decides.
    answer = ask(s, ANCHOR, "faq")
    assert answer.headers["x-thrifty-cache"] == "miss"
    assert answer.headers["x-thrifty-tier"] == "fast"
