"""The byte stores: one contract for all three, then what is particular to each."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import pytest_asyncio

from thrifty.cache import CacheUnavailable, MemoryLRU, RedisStore, SQLiteStore


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture(params=["memory", "sqlite", "redis"], loop_scope="function")
async def store(request, tmp_path):
    if request.param == "memory":
        s = MemoryLRU(1 << 20)
    elif request.param == "sqlite":
        s = SQLiteStore(str(tmp_path / "cache.db"))
    else:
        s = RedisStore(request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix"))
    yield s
    await s.close()


# -- the contract -----------------------------------------------------------------------------------

async def test_get_set_delete(store):
    assert await store.get("k1") is None
    await store.set("k1", b"\x00binary\xffvalue", 60)
    assert await store.get("k1") == b"\x00binary\xffvalue"
    await store.set("k1", b"newer", 60)
    assert await store.get("k1") == b"newer"
    await store.delete("k1")
    assert await store.get("k1") is None
    await store.delete("never-set")  # no error


async def test_non_positive_ttl_stores_nothing(store):
    await store.set("k2", b"v", 60)
    await store.set("k2", b"v2", 0)
    assert await store.get("k2") is None


async def test_large_values(store):
    value = os.urandom(300_000)
    await store.set("big", value, 60)
    assert await store.get("big") == value


# -- in-process LRU ---------------------------------------------------------------------------------

async def test_lru_is_bounded_in_bytes_and_evicts_least_recently_used():
    lru = MemoryLRU(100)
    for name in "abc":
        await lru.set(name, b"x" * 29, 60)  # 30 bytes each with the key
    assert lru.bytes_used == 90 and lru.keys() == ["a", "b", "c"]
    assert await lru.get("a") == b"x" * 29  # a becomes the most recently used
    await lru.set("d", b"y" * 29, 60)  # 120 > 100: the least recently used (b) goes
    assert lru.keys() == ["c", "a", "d"] and lru.bytes_used == 90
    assert await lru.get("b") is None
    await lru.set("e", b"z" * 59, 60)  # 60 bytes: c and a must both go
    assert lru.keys() == ["d", "e"] and lru.bytes_used == 90


async def test_lru_overwrite_accounts_bytes_and_refuses_oversized_values():
    lru = MemoryLRU(100)
    await lru.set("k", b"x" * 50, 60)
    await lru.set("k", b"x" * 10, 60)
    assert lru.bytes_used == 11 and len(lru) == 1
    await lru.set("huge", b"x" * 200, 60)
    assert await lru.get("huge") is None and lru.bytes_used == 11
    await lru.set("k", b"x" * 200, 60)  # an oversized overwrite drops the old value too
    assert await lru.get("k") is None and lru.bytes_used == 0


async def test_lru_ttl_expiry():
    clock = FakeClock()
    lru = MemoryLRU(1000, clock=clock)
    await lru.set("short", b"1", 10)
    await lru.set("long", b"2", 100)
    clock.now += 9.9
    assert await lru.get("short") == b"1"
    clock.now += 0.1
    assert await lru.get("short") is None
    assert await lru.get("long") == b"2"
    assert lru.bytes_used == len("long") + 1


def test_lru_needs_a_positive_budget():
    with pytest.raises(ValueError):
        MemoryLRU(0)


# -- SQLite -----------------------------------------------------------------------------------------

async def test_sqlite_persists_across_instances(tmp_path):
    path = str(tmp_path / "persist.db")
    first = SQLiteStore(path)
    await first.set("k", b"kept", 3600)
    await first.close()
    second = SQLiteStore(path)
    try:
        assert await second.get("k") == b"kept"
    finally:
        await second.close()


async def test_sqlite_ttl_expiry_and_purge(tmp_path):
    clock = FakeClock()
    s = SQLiteStore(str(tmp_path / "ttl.db"), clock=clock, purge_every=0)
    try:
        await s.set("a", b"1", 10)
        await s.set("b", b"2", 1000)
        await s.set("c", b"3", 20)
        clock.now += 10
        assert await s.get("a") is None
        assert await s.get("b") == b"2"
        clock.now += 10
        assert await s.purge_expired() == 1  # c (a was already deleted on read)
        assert await s.get("b") == b"2"
    finally:
        await s.close()


async def test_sqlite_purges_expired_rows_every_n_writes(tmp_path):
    clock = FakeClock()
    s = SQLiteStore(str(tmp_path / "auto.db"), clock=clock, purge_every=3)
    try:
        await s.set("old", b"1", 5)
        clock.now += 10
        await s.set("x", b"2", 60)
        await s.set("y", b"3", 60)  # third write: purge runs
        assert await s.purge_expired() == 0
    finally:
        await s.close()


async def test_sqlite_in_a_missing_directory_is_unavailable(tmp_path):
    s = SQLiteStore(str(tmp_path / "no" / "such" / "dir" / "c.db"))
    with pytest.raises(CacheUnavailable, match="sqlite cache"):
        await s.get("k")
    with pytest.raises(CacheUnavailable):
        await s.set("k", b"v", 60)
    await s.close()


async def test_sqlite_file_that_is_not_a_database_is_unavailable(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(os.urandom(8192))
    s = SQLiteStore(str(path))
    with pytest.raises(CacheUnavailable):
        await s.get("k")
    await s.close()


async def test_sqlite_does_not_block_the_event_loop(tmp_path):
    s = SQLiteStore(str(tmp_path / "conc.db"))
    try:
        await asyncio.gather(*(s.set(f"k{i}", bytes([i]), 60) for i in range(50)))
        values = await asyncio.gather(*(s.get(f"k{i}") for i in range(50)))
        assert values == [bytes([i]) for i in range(50)]
    finally:
        await s.close()


# -- Redis ------------------------------------------------------------------------------------------

async def test_redis_sets_native_expiry_under_the_prefix(redis_store, redis_prefix, sync_redis):
    await redis_store.set("ttl-key", b"v", 120)
    assert 115 <= sync_redis.ttl(redis_prefix + "ttl-key") <= 120
    assert sync_redis.get(redis_prefix + "ttl-key") == b"v"


async def test_redis_entries_expire(redis_store):
    await redis_store.set("short", b"v", 1)
    assert await redis_store.get("short") == b"v"
    await asyncio.sleep(1.2)
    assert await redis_store.get("short") is None


async def test_redis_down_is_unavailable_and_fast(dead_redis_url):
    s = RedisStore(dead_redis_url, prefix="thrifty-test:")
    started = time.perf_counter()
    with pytest.raises(CacheUnavailable, match="redis cache"):
        await s.get("k")
    with pytest.raises(CacheUnavailable):
        await s.set("k", b"v", 60)
    with pytest.raises(CacheUnavailable):
        await s.delete("k")
    assert time.perf_counter() - started < 5  # loose: never the default multi-second retries
    await s.close()


async def test_redis_backs_off_after_a_failure_then_retries(dead_redis_url, redis_url, redis_prefix):
    clock = FakeClock()
    s = RedisStore(dead_redis_url, prefix=redis_prefix, backoff_s=2.0, clock=clock)
    with pytest.raises(CacheUnavailable, match="GET failed"):
        await s.get("k")
    with pytest.raises(CacheUnavailable, match="pause"):  # within the back-off: not even tried
        await s.get("k")
    await s.close()

    # the same store object recovers once the back-off has passed and the server answers
    live = RedisStore(redis_url, prefix=redis_prefix, backoff_s=2.0, clock=clock)
    live._down_until = clock.now + 2.0
    with pytest.raises(CacheUnavailable, match="pause"):
        await live.get("k")
    clock.now += 2.0
    assert await live.get("k") is None
    await live.close()


def test_redis_errors_never_show_the_password():
    s = RedisStore("redis://user:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in s.where and s.where == "redis://127.0.0.1:1/0"
