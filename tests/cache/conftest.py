"""Cache test fixtures: a real Redis on loopback (skipped with a reason when it is not running)."""

from __future__ import annotations

import socket
import uuid

import pytest
import pytest_asyncio

from tests.conftest import delete_redis_prefix


@pytest.fixture(scope="session")
def redis_prefix(redis_url):
    """A key prefix unique to this test run; every key under it is deleted afterwards."""
    prefix = f"thrifty-test:{uuid.uuid4().hex}:"
    yield prefix
    delete_redis_prefix(redis_url, prefix)


@pytest.fixture
def sync_redis(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest_asyncio.fixture(loop_scope="function")  # the client belongs to the test's loop
async def redis_store(redis_url, redis_prefix):
    from thrifty.cache import RedisStore

    store = RedisStore(redis_url, prefix=redis_prefix)
    yield store
    await store.close()


@pytest.fixture
def dead_redis_url() -> str:
    """A Redis URL on a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"
