"""The admin API through `thrifty serve`: keys made, used with the openai SDK, listed, revoked;
admin auth; spend; and revocation that holds at once across two replicas sharing Redis."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest

from tests.conftest import start_stack
from thrifty.cli import localstack

ADMIN = "adm-" + uuid.uuid4().hex


def _admin(cfg, **extra):
    cfg["admin"] = {"key": ADMIN, **extra}


def _stop(*stacks):
    for s in stacks:
        s.gateway.stop()
        s.emulator.stop()


@pytest.fixture(scope="module")
def admin_stack(tmp_path_factory):
    def edit(cfg):
        _admin(cfg)
        cfg["budgets"] = {"budgets": [{"name": "acme-daily", "scope": "tenant", "match": "acme",
                                       "limit_usd": 5.0, "window": "day", "action": "block"}]}

    s = start_stack(tmp_path_factory.mktemp("admin"), edit=edit)
    yield s
    _stop(s)


def _h(key: str | None = ADMIN) -> dict[str, str]:
    return {} if key is None else {"authorization": f"Bearer {key}"}


def _chat(url: str, key: str) -> str:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    r = client.chat.completions.create(model="gpt-4o-mini", max_tokens=20,
                                       messages=[{"role": "user", "content": f"hello {uuid.uuid4().hex}"}])
    return r.choices[0].message.content


def test_create_use_list_revoke(admin_stack):
    url = admin_stack.url
    r = httpx.post(f"{url}/admin/keys", json={"tenant": "acme", "name": "ci"}, headers=_h())
    assert r.status_code == 201, r.text
    made = r.json()
    key = made["key"]
    assert key.startswith("sk-thr-") and len(key) == len("sk-thr-") + 32
    assert made["tenant"] == "acme" and made["name"] == "ci" and len(made["id"]) == 12
    assert isinstance(made["created_at"], float)

    assert _chat(url, key)

    listed = httpx.get(f"{url}/admin/keys", headers=_h())
    assert listed.status_code == 200
    assert key not in listed.text
    rows = {row["id"]: row for row in listed.json()["data"]}
    assert rows[made["id"]]["tenant"] == "acme" and rows[made["id"]]["source"] == "api"
    assert any(row["source"] == "config" for row in rows.values())

    gone = httpx.delete(f"{url}/admin/keys/{made['id']}", headers=_h())
    assert gone.status_code == 200 and gone.json()["revoked"] is True
    with pytest.raises(openai.AuthenticationError):
        _chat(url, key)
    assert made["id"] not in httpx.get(f"{url}/admin/keys", headers=_h()).text
    again = httpx.delete(f"{url}/admin/keys/{made['id']}", headers=_h())
    assert again.status_code == 404 and again.json()["error"]["code"] == "key_not_found"

    # The key never reaches the gateway's log.
    log = admin_stack.config_path.parent / "gateway.log"
    assert log.is_file() and key not in log.read_text()


def test_config_keys_are_read_only(admin_stack):
    url = admin_stack.url
    rows = httpx.get(f"{url}/admin/keys", headers=_h()).json()["data"]
    cfg_id = next(row["id"] for row in rows if row["source"] == "config")
    r = httpx.delete(f"{url}/admin/keys/{cfg_id}", headers=_h())
    assert r.status_code == 403
    assert "config file" in r.json()["error"]["message"] and "read-only" in r.json()["error"]["message"]
    assert _chat(url, admin_stack.key)  # still valid


def test_admin_auth(admin_stack):
    url = admin_stack.url
    for path in ("/admin/keys", "/admin/spend?scope=tenant&value=acme"):
        missing = httpx.get(url + path)
        assert missing.status_code == 401 and "error" in missing.json()
        wrong = httpx.get(url + path, headers=_h("not-the-admin-key"))
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_admin_key"
        virtual = httpx.get(url + path, headers=_h(localstack.DEMO_KEY))
        assert virtual.status_code == 403 and virtual.json()["error"]["message"]
    made = httpx.post(f"{url}/admin/keys", json={"tenant": "acme"}, headers=_h()).json()
    assert httpx.get(f"{url}/admin/keys", headers=_h(made["key"])).status_code == 403
    assert httpx.post(f"{url}/admin/keys", json={"tenant": "x"}, headers=_h(made["key"])).status_code == 403
    # x-api-key works too
    assert httpx.get(f"{url}/admin/keys", headers={"x-api-key": ADMIN}).status_code == 200
    httpx.delete(f"{url}/admin/keys/{made['id']}", headers=_h())


def test_bad_requests(admin_stack):
    url = admin_stack.url
    assert httpx.post(f"{url}/admin/keys", json={"name": "no tenant"}, headers=_h()).status_code == 400
    assert httpx.post(f"{url}/admin/keys", content=b"{not json", headers=_h()).status_code == 400
    assert httpx.delete(f"{url}/admin/keys/zzz", headers=_h()).status_code == 404
    assert httpx.delete(f"{url}/admin/keys/0123456789ab", headers=_h()).status_code == 404
    assert httpx.get(f"{url}/admin/nope", headers=_h()).status_code == 404
    assert httpx.put(f"{url}/admin/keys", headers=_h()).status_code == 405
    assert httpx.get(f"{url}/admin/spend", headers=_h()).status_code == 400


def test_spend(admin_stack):
    url = admin_stack.url
    made = httpx.post(f"{url}/admin/keys", json={"tenant": "acme"}, headers=_h()).json()
    before = httpx.get(f"{url}/admin/spend", params={"scope": "tenant", "value": "acme"}, headers=_h())
    assert before.status_code == 200, before.text
    _chat(url, made["key"])
    after = httpx.get(f"{url}/admin/spend", params={"scope": "tenant", "value": "acme"}, headers=_h()).json()
    assert after["scope"] == "tenant" and after["value"] == "acme"
    [b] = after["budgets"]
    assert b["budget"] == "acme-daily" and b["limit_usd"] == 5.0
    assert b["spent_usd"] > before.json()["budgets"][0]["spent_usd"]
    other = httpx.get(f"{url}/admin/spend", params={"scope": "tenant", "value": "nobody"}, headers=_h()).json()
    assert other["budgets"] == []
    httpx.delete(f"{url}/admin/keys/{made['id']}", headers=_h())


def test_admin_api_is_off_without_an_admin_key(stack):
    r = httpx.post(f"{stack.url}/admin/keys", json={"tenant": "acme"}, headers=_h())
    assert r.status_code == 404 and "disabled" in r.json()["error"]["message"]
    assert httpx.get(f"{stack.url}/admin/keys").status_code == 404


def test_revocation_across_replicas(tmp_path_factory, redis_url):
    prefix = f"thrifty:test:{uuid.uuid4().hex}:keys:"

    def edit(cfg):
        _admin(cfg, key_store="redis", redis_url=redis_url, prefix=prefix)

    a = start_stack(tmp_path_factory.mktemp("replica-a"), edit=edit)
    try:
        b = start_stack(tmp_path_factory.mktemp("replica-b"), edit=edit)
    except Exception:
        _stop(a)
        raise
    try:
        made = httpx.post(f"{a.url}/admin/keys", json={"tenant": "acme"}, headers=_h()).json()
        assert _chat(b.url, made["key"])  # made on A, used on B
        assert _chat(a.url, made["key"])
        assert made["id"] in httpx.get(f"{b.url}/admin/keys", headers=_h()).text
        assert httpx.delete(f"{b.url}/admin/keys/{made['id']}", headers=_h()).status_code == 200
        with pytest.raises(openai.AuthenticationError):  # refused on A at once
            _chat(a.url, made["key"])
        with pytest.raises(openai.AuthenticationError):
            _chat(b.url, made["key"])
    finally:
        _stop(a, b)
        import redis

        r = redis.Redis.from_url(redis_url)
        keys = r.keys(prefix + "*")
        if keys:
            r.delete(*keys)
        r.close()


def test_metrics_show_prompt_cache_prefixes_and_escalations(admin_stack):
    url = admin_stack.url
    import anthropic

    system = "Metrics check. " + "Always answer with the policy section number. " * 200
    with anthropic.Anthropic(base_url=url, api_key=admin_stack.key, max_retries=0) as c:
        for q in ("first", "second"):
            c.messages.create(model="claude-sonnet-4-5", max_tokens=20, system=system,
                              messages=[{"role": "user", "content": f"{q} {uuid.uuid4().hex}"}])
    with openai.OpenAI(base_url=f"{url}/v1", api_key=admin_stack.key, max_retries=0) as c:
        # A fast-tier classification cut off at 3 tokens fails the `truncated` check and is re-run.
        c.chat.completions.create(model="thrifty/auto", max_tokens=3,
                                  messages=[{"role": "user", "content": "Classify the sentiment: great service"}])
    r = httpx.get(f"{url}/admin/metrics", headers=_h())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["escalation"]["checked"] >= 1 and body["escalation"]["escalated"] >= 1
    assert body["escalation"]["by_check"]
    top = body["prompt_cache_prefixes"]
    assert any(p["calls"] >= 2 and p["cache_read_tokens"] > 0 and p["saving_usd"] for p in top)
    assert httpx.get(f"{url}/admin/metrics").status_code == 401
