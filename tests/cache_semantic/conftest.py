"""Fixtures of the semantic-cache tests: the real embedder (skipped when its packages are missing)
and the real Redis at 127.0.0.1:6379 under a prefix unique to the run."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def embedder():
    from thrifty.cache.semantic import OnnxEmbedder, model_available

    reason = model_available()
    if reason:
        pytest.skip(f"semantic-cache embedder tests need the local model: {reason}")
    e = OnnxEmbedder()
    e.load()
    return e


def _redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_prefix():
    if not _redis_reachable():
        reason = "Redis at 127.0.0.1:6379 is not reachable"
        if os.environ.get("THRIFTY_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} and THRIFTY_REQUIRE_SERVICES=1")
        pytest.skip(f"{reason} (start redis-server)")
    import redis

    prefix = f"thrifty-test-sc:{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + ":*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
