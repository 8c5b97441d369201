"""The key stores: generated keys, digests only, constant-time match, revocation; and tenant_for."""

from __future__ import annotations

import re
import uuid

import pytest
import pytest_asyncio

from thrifty.config import parse_config
from thrifty.core.gateway import Gateway
from thrifty.core.keys import (
    KeyStoreUnavailable, MemoryKeyStore, RedisKeyStore, digest, generate_key, key_id, open_key_store,
)
from thrifty.errors import AuthenticationFailed, ConfigError


def test_generated_keys_have_the_documented_shape():
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for k in keys:
        assert re.fullmatch(r"sk-thr-[A-Za-z0-9_-]{32}", k), k


def test_id_is_first_12_hex_of_the_digest():
    k = generate_key()
    assert key_id(digest(k)) == digest(k).hex()[:12]


@pytest_asyncio.fixture(params=["memory", "redis"], loop_scope="function")  # the client belongs to the test's loop
async def store(request):
    if request.param == "memory":
        s = MemoryKeyStore()
        yield s
        return
    url = request.getfixturevalue("redis_url")
    s = RedisKeyStore(url, prefix=f"thrifty:test:{uuid.uuid4().hex}:")
    yield s
    keys = await s._client.keys(s.prefix + "*")
    if keys:
        await s._client.delete(*keys)
    await s.close()


async def test_create_lookup_list_revoke(store):
    key, rec = await store.create("acme", "ci")
    assert rec.tenant == "acme" and rec.name == "ci" and rec.id == key_id(digest(key))
    found = await store.lookup(digest(key))
    assert found is not None and found.tenant == "acme"
    assert await store.lookup(digest(key + "x")) is None
    listed = await store.list()
    assert [r.id for r in listed] == [rec.id]
    assert key not in repr(listed) and "key" not in listed[0].public()
    revoked = await store.revoke(rec.id)
    assert revoked is not None and revoked.id == rec.id
    assert await store.lookup(digest(key)) is None
    assert await store.revoke(rec.id) is None
    assert await store.list() == []


async def test_the_key_itself_is_never_stored(store):
    key, rec = await store.create("acme")
    if isinstance(store, RedisKeyStore):
        for k in await store._client.keys(store.prefix + "*"):
            assert key.encode() not in k
            v = await (store._client.get(k) if await store._client.type(k) == b"string"
                       else store._client.hgetall(k))
            assert key.encode() not in repr(v).encode()
    else:
        assert key not in repr(store._by_digest)


async def test_two_stores_on_one_redis_see_each_other(redis_url):
    prefix = f"thrifty:test:{uuid.uuid4().hex}:"
    a, b = RedisKeyStore(redis_url, prefix=prefix), RedisKeyStore(redis_url, prefix=prefix)
    try:
        key, rec = await a.create("acme")
        assert (await b.lookup(digest(key))).tenant == "acme"
        await b.revoke(rec.id)
        assert await a.lookup(digest(key)) is None
    finally:
        await a.close()
        await b.close()


async def test_redis_down_fails_closed():
    s = RedisKeyStore("redis://127.0.0.1:1/0", timeout_s=0.2)
    try:
        with pytest.raises(KeyStoreUnavailable) as exc:
            await s.lookup(digest("sk-thr-whatever"))
        assert exc.value.status == 503 and "sk-thr-whatever" not in exc.value.message
    finally:
        await s.close()


def test_open_key_store():
    assert isinstance(open_key_store("memory", None), MemoryKeyStore)
    with pytest.raises(ValueError):
        open_key_store("redis", None)


def _config(admin=None):
    data = {"providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
            "deployments": {"m": {"provider": "p", "model": "m"}},
            "keys": {"sk-config": {"tenant": "cfg"}}}
    if admin is not None:
        data["admin"] = admin
    return parse_config(data)


def test_admin_config():
    assert _config().admin.key is None
    assert _config({"key": "adm"}).admin.key_store == "memory"
    with pytest.raises(ConfigError, match="redis_url"):
        _config({"key": "adm", "key_store": "redis"})
    with pytest.raises(ConfigError):
        _config({"key": "adm", "nope": 1})


async def test_tenant_for_config_and_store_keys():
    gw = Gateway(_config({"key": "adm"}))
    try:
        assert await gw.tenant_for("sk-config") == "cfg"
        key, rec = await gw.key_store.create("acme")
        assert await gw.tenant_for(key) == "acme"
        await gw.key_store.revoke(rec.id)
        with pytest.raises(AuthenticationFailed):
            await gw.tenant_for(key)
        with pytest.raises(AuthenticationFailed):
            await gw.tenant_for(None)
    finally:
        await gw.close()


async def test_no_admin_key_no_memory_store():
    gw = Gateway(_config())
    try:
        assert gw.key_store is None
        assert await gw.tenant_for("sk-config") == "cfg"
    finally:
        await gw.close()
