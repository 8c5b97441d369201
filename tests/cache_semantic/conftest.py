"""Fixtures of the semantic-cache tests: the real embedder (skipped when its packages are missing)
and the real Redis at 127.0.0.1:6379 under a prefix unique to the run."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import delete_redis_prefix


@pytest.fixture(scope="session")
def embedder():
    from thrifty.cache.semantic import OnnxEmbedder, model_available

    reason = model_available()
    if reason:
        pytest.skip(f"semantic-cache embedder tests need the local model: {reason}")
    e = OnnxEmbedder()
    e.load()
    return e


@pytest.fixture
def redis_prefix(redis_url):
    """A key prefix unique to this test (the root conftest's `redis_url` skips or fails when Redis is down)."""
    prefix = f"thrifty-test-sc:{uuid.uuid4().hex}"
    yield prefix
    delete_redis_prefix(redis_url, prefix + ":")
