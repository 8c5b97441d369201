"""Budgets set through the admin API: enforced on a running gateway, listed, deleted, validated,
and picked up by a second replica sharing Redis within about a second."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal

import httpx
import openai
import pytest

from tests.conftest import delete_redis_prefix, start_stack
from thrifty.budgets.enforcer import Enforcer
from thrifty.budgets.limits import BudgetConfig, BudgetsConfig
from thrifty.budgets.scopes import CallScopes

ADMIN = "adm-" + uuid.uuid4().hex
H = {"authorization": f"Bearer {ADMIN}"}


def _stop(*stacks):
    for s in stacks:
        s.gateway.stop()
        s.emulator.stop()


@pytest.fixture(scope="module")
def budgets_stack(tmp_path_factory):
    def edit(cfg):
        cfg["admin"] = {"key": ADMIN}
        cfg["budgets"] = {"budgets": [{"name": "from-config", "scope": "tenant", "match": "nobody",
                                       "limit_usd": 5.0, "window": "day"}]}

    s = start_stack(tmp_path_factory.mktemp("admin-budgets"), edit=edit)
    yield s
    _stop(s)


def _call(url: str, key: str) -> str:
    """'ok' or 'refused' (429) for one gpt-4o call."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    try:
        client.chat.completions.create(model="gpt-4o", max_tokens=60,
                                       messages=[{"role": "user", "content": f"hello {uuid.uuid4().hex}"}])
        return "ok"
    except openai.RateLimitError as exc:
        assert "budget" in str(exc).lower()
        return "refused"


def test_api_budget_is_enforced_listed_and_deleted(budgets_stack):
    url, key = budgets_stack.url, budgets_stack.key
    name = "demo-api-" + uuid.uuid4().hex[:8]
    assert _call(url, key) == "ok"
    r = httpx.put(f"{url}/admin/budgets/{name}", headers=H,
                  json={"scope": "tenant", "match": "demo", "limit_usd": 0.002, "window": "day"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == name and r.json()["source"] == "api" and r.json()["limit_usd"] == 0.002

    results = []
    for _ in range(30):  # each call's worst case is ~$0.0007: a few fit, then none
        results.append(_call(url, key))
        if results[-1] == "refused":
            break
    assert results[0] == "ok" and results[-1] == "refused", results
    assert _call(url, key) == "refused"

    spend = httpx.get(f"{url}/admin/spend", params={"scope": "tenant", "value": "demo"}, headers=H).json()
    [row] = [b for b in spend["budgets"] if b["budget"] == name]
    assert 0 < row["spent_usd"] <= 0.002

    listed = httpx.get(f"{url}/admin/budgets", headers=H)
    assert listed.status_code == 200
    rows = {b["name"]: b for b in listed.json()["data"]}
    assert rows["from-config"]["source"] == "config"
    assert rows[name]["source"] == "api" and rows[name]["limit_usd"] == 0.002

    # Raising the limit keeps the spend (same counter) and lets calls through again.
    r = httpx.put(f"{url}/admin/budgets/{name}", headers=H,
                  json={"scope": "tenant", "match": "demo", "limit_usd": 1.0, "window": "day"})
    assert r.status_code == 200, r.text
    assert _call(url, key) == "ok"
    spend2 = httpx.get(f"{url}/admin/spend", params={"scope": "tenant", "value": "demo"}, headers=H).json()
    [row2] = [b for b in spend2["budgets"] if b["budget"] == name]
    assert row2["spent_usd"] > row["spent_usd"]

    # Back to a tiny limit, then delete: calls go through again.
    httpx.put(f"{url}/admin/budgets/{name}", headers=H,
              json={"scope": "tenant", "match": "demo", "limit_usd": 0.000001, "window": "day"})
    assert _call(url, key) == "refused"
    gone = httpx.delete(f"{url}/admin/budgets/{name}", headers=H)
    assert gone.status_code == 200 and gone.json() == {"name": name, "deleted": True}
    assert _call(url, key) == "ok"
    assert name not in httpx.get(f"{url}/admin/budgets", headers=H).text
    again = httpx.delete(f"{url}/admin/budgets/{name}", headers=H)
    assert again.status_code == 404 and again.json()["error"]["code"] == "budget_not_found"


def test_bad_budgets_and_config_budgets(budgets_stack):
    url = budgets_stack.url
    bad = httpx.put(f"{url}/admin/budgets/x", headers=H, json={"scope": "tenant", "window": "day"})
    assert bad.status_code == 400
    assert "limit_usd" in bad.json()["error"]["message"]  # pydantic's message: needs a limit
    for body in ({"scope": "planet", "limit_usd": 1}, {"scope": "tenant", "limit_usd": -1},
                 {"scope": "tenant", "limit_usd": 1, "surprise": True},
                 {"name": "other", "scope": "tenant", "limit_usd": 1}):
        r = httpx.put(f"{url}/admin/budgets/x", headers=H, json=body)
        assert r.status_code == 400 and r.json()["error"]["message"], body
    assert httpx.put(f"{url}/admin/budgets/x", headers=H, content=b"{nope").status_code == 400
    assert httpx.put(f"{url}/admin/budgets/bad%20name", headers=H,
                     json={"scope": "tenant", "limit_usd": 1}).status_code == 400
    taken = httpx.put(f"{url}/admin/budgets/from-config", headers=H, json={"scope": "tenant", "limit_usd": 1})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "budget_name_taken"
    ro = httpx.delete(f"{url}/admin/budgets/from-config", headers=H)
    assert ro.status_code == 403 and "config file" in ro.json()["error"]["message"]
    assert httpx.get(f"{url}/admin/budgets").status_code == 401
    virtual = {"authorization": f"Bearer {budgets_stack.key}"}
    assert httpx.get(f"{url}/admin/budgets", headers=virtual).status_code == 403
    assert httpx.post(f"{url}/admin/budgets", headers=H, json={}).status_code == 405
    assert "x" not in {b["name"] for b in httpx.get(f"{url}/admin/budgets", headers=H).json()["data"]}


def _poll(url: str, key: str, want: str, within_s: float = 3.0) -> float:
    start = time.monotonic()
    while True:
        got = _call(url, key)
        if got == want:
            return time.monotonic() - start
        assert time.monotonic() - start < within_s, f"still {got!r} after {within_s}s"
        time.sleep(0.1)


def test_api_budget_reaches_other_replica(tmp_path_factory, redis_url):
    prefix = f"thrifty:test:{uuid.uuid4().hex}:keys:"

    def edit(cfg):
        cfg["admin"] = {"key": ADMIN, "key_store": "redis", "redis_url": redis_url, "prefix": prefix}

    a = start_stack(tmp_path_factory.mktemp("budget-replica-a"), edit=edit)
    try:
        b = start_stack(tmp_path_factory.mktemp("budget-replica-b"), edit=edit)
    except Exception:
        _stop(a)
        raise
    try:
        assert _call(b.url, b.key) == "ok"
        r = httpx.put(f"{a.url}/admin/budgets/tiny", headers=H,
                      json={"scope": "tenant", "match": "demo", "limit_usd": 0.000001, "window": "day"})
        assert r.status_code == 201, r.text
        assert _call(a.url, a.key) == "refused"  # at once where it was set
        assert _poll(b.url, b.key, "refused") < 3.0  # within about a second on the other
        assert "tiny" in httpx.get(f"{b.url}/admin/budgets", headers=H).text
        assert httpx.delete(f"{b.url}/admin/budgets/tiny", headers=H).status_code == 200
        assert _call(b.url, b.key) == "ok"
        assert _poll(a.url, a.key, "ok") < 3.0
    finally:
        _stop(a, b)
        delete_redis_prefix(redis_url, prefix)


def test_replace_budgets_keeps_spend_and_in_flight_reservations():
    from thrifty.budgets.memory import MemoryStore

    b1 = BudgetConfig(name="t", scope="tenant", limit_usd=Decimal("1"), window="day")
    e = Enforcer(BudgetsConfig(budgets=[b1]), MemoryStore())
    scopes = CallScopes(tenant="acme")

    async def run():
        r1 = await e.reserve(scopes, Decimal("0.4"), 10)
        await e.settle(r1, Decimal("0.4"), 10)
        in_flight = await e.reserve(scopes, Decimal("0.3"), 10)
        e.replace_budgets([b1.model_copy(update={"limit_usd": Decimal("0.8")})])
        with pytest.raises(ValueError):
            e.replace_budgets([b1, b1])  # names repeat: refused, nothing changes
        assert e.budgets[0].limit_usd == Decimal("0.8")
        # 0.4 spent + 0.3 held: 0.2 more does not fit under 0.8.
        from thrifty.errors import BudgetExceeded

        with pytest.raises(BudgetExceeded):
            await e.reserve(scopes, Decimal("0.2"), 10)
        await e.settle(in_flight, Decimal("0.1"), 10)
        ok = await e.reserve(scopes, Decimal("0.2"), 10)
        await e.release(ok)
        spent = await e.spend("tenant", "acme")
        assert spent["budgets"][0]["spent_usd"] == Decimal("0.5")
        e.replace_budgets([])
        assert not e.has_limits(scopes)
        await e.close()

    asyncio.run(run())
