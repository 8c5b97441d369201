"""`/dashboard` and its JSON against a real `thrifty serve` over a seeded ledger with known numbers."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import httpx
import pytest

from tests.conftest import start_stack
from tests.dashboard import seed
from thrifty.cli import localstack

AUTH = {"authorization": f"Bearer {seed.DASHBOARD_KEY}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash")
    t0 = seed.seed(tmp / "ledger.db")
    s = start_stack(tmp, edit=seed.dashboard_config, timeout_s=3.0)
    s.t0 = t0
    yield s
    s.gateway.stop()
    s.emulator.stop()


def api(s, name: str, **params) -> dict:
    r = httpx.get(f"{s.url}/dashboard/api/{name}", params=params, headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_spend_over_time_and_per_feature_hold_the_ledger_numbers(stack):
    points = api(stack, "spend_over_time")["points"]
    assert sum(Decimal(p["usd"]) for p in points) == seed.SPEND
    groups = {g["key"]: Decimal(g["usd"]) for g in api(stack, "cost_per_feature")["groups"]}
    assert groups == seed.BY_FEATURE


def test_a_filter_narrows_every_number(stack):
    groups = api(stack, "cost_per_feature", tenant="beta")["groups"]
    assert [(g["key"], Decimal(g["usd"])) for g in groups] == [("search", seed.BETA_SPEND)]
    late = api(stack, "spend_over_time", since=str(stack.t0 + 3 * seed.H - 1))
    assert sum(Decimal(p["usd"]) for p in late["points"]) == seed.BETA_SPEND  # b1 and b2 only
    assert late["bucket_s"] == 3600 and len(late["points"]) == 2
    tiers = {g["key"]: Decimal(g["usd"]) for g in api(stack, "cost_per_feature", tier="standard")["groups"]}
    assert tiers == {"chat": Decimal("0.030"), "search": Decimal("0.050")}


def test_cost_per_successful_output(stack):
    d = api(stack, "cost_per_success")
    t = d["total"]
    assert (t["outputs"], t["successful"], t["attempts"]) == (6, 3, 1)
    assert t["failed"] == {"errored": 1, "bad": 1, "regenerated": 1}
    assert Decimal(t["cost_per_success_usd"]) == Decimal("0.034")  # 0.102 / 3
    assert Decimal(t["cost_per_call_usd"]) == Decimal("0.017")  # 0.102 / 6
    chat = {g["key"]: g for g in d["groups"]}["chat"]
    assert Decimal(chat["cost_per_success_usd"]) == Decimal("0.026") and chat["successful"] == 2


def test_savings_keep_exact_estimated_and_provider_discount_apart(stack):
    t = api(stack, "savings")["total"]
    assert Decimal(t["saved_usd"]) == Decimal("0.030") and Decimal(t["baseline_usd"]) == Decimal("0.130")
    assert Decimal(t["saved_exact_usd"]) == Decimal("0.020") and Decimal(t["saved_estimated_usd"]) == Decimal("0.010")
    assert Decimal(t["provider_discount_usd"]) == Decimal("0.002")
    assert Decimal(t["levers"]["routing"]["estimated_usd"]) == Decimal("0.010")
    assert Decimal(t["levers"]["exact_cache"]["exact_usd"]) == Decimal("0.010")


def test_cache_escalation_call_sites_and_active_users(stack):
    c = api(stack, "cache")
    assert (c["answered_calls"], c["exact_hits"], c["semantic_hits"]) == (5, 1, 0)
    assert c["exact_rate"] == pytest.approx(0.2) and c["prompt_cache_rate"] == pytest.approx(800 / 4000)
    tiers = {t["tier"]: t for t in api(stack, "escalation")["tiers"]}
    assert (tiers["fast"]["calls"], tiers["fast"]["escalated"]) == (3, 1)
    assert (tiers["standard"]["calls"], tiers["standard"]["escalated"]) == (2, 0)
    sites = [(g["key"], Decimal(g["usd"])) for g in api(stack, "call_sites")["groups"]]
    assert sites == [("chat.reply", Decimal("0.052")), ("search.query", Decimal("0.050"))]
    users = {g["feature"]: g for g in api(stack, "active_users")["groups"]}
    assert users["chat"]["active_users"] == 3 and Decimal(users["chat"]["cost_per_active_user_usd"]) == \
        Decimal("0.017333333333")
    assert users["search"]["active_users"] == 2 and Decimal(users["search"]["cost_per_active_user_usd"]) == \
        Decimal("0.025")


def test_cohorts_request_types_and_filters(stack):
    cohorts = {g["key"]: Decimal(g["usd"]) for g in api(stack, "cost_per_cohort", cohort="tenant")["groups"]}
    assert cohorts == {"acme": Decimal("0.052"), "beta": Decimal("0.050")}
    types = api(stack, "cost_per_request_type")
    assert types["stored_bodies"] is False
    assert [(g["key"], Decimal(g["usd"]), g["calls"]) for g in types["groups"]] == [("unknown", seed.SPEND, 6)]
    f = api(stack, "filters")
    assert f["tenant"] == ["acme", "beta"] and f["tier"] == ["fast", "standard"]


def test_budget_burn_down_reads_the_enforcer(stack):
    (b,) = api(stack, "budgets")["budgets"]
    assert b["budget"] == "monthly" and Decimal(b["limit_usd"]) == 1
    assert Decimal(b["spent_usd"]) == seed.SPEND  # re-seeded from the ledger at start
    assert b["burn_usd_per_hour"] > 0 and b["exhausts_in_s"] > 0


def test_who_may_look(stack):
    assert httpx.get(f"{stack.url}/dashboard/api/savings", timeout=5).status_code == 401
    bad = httpx.get(f"{stack.url}/dashboard/api/savings", headers={"authorization": "Bearer nope"}, timeout=5)
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_dashboard_key"
    virtual = httpx.get(f"{stack.url}/dashboard/api/savings", headers={"authorization": f"Bearer {stack.key}"},
                        timeout=5)
    assert virtual.status_code == 401  # a tenant's key sees no one's dashboard
    admin = httpx.get(f"{stack.url}/dashboard/api/savings",
                      headers={"authorization": f"Bearer {seed.ADMIN_KEY}"}, timeout=5)
    assert admin.status_code == 200
    # The read-only key opens nothing of the admin API.
    assert httpx.get(f"{stack.url}/admin/keys", headers=AUTH, timeout=5).status_code == 401
    login = httpx.get(f"{stack.url}/dashboard", timeout=5)
    assert login.status_code == 200 and b'name="key"' in login.content
    assert "default-src 'self'" in login.headers["content-security-policy"]


def test_the_sign_in_form_sets_a_cookie_that_is_not_the_key(stack):
    with httpx.Client(base_url=stack.url, timeout=5) as c:
        wrong = c.post("/dashboard/login", data={"key": "nope"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        r = c.post("/dashboard/login", data={"key": seed.DASHBOARD_KEY})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard"
        cookie = r.headers["set-cookie"]
        assert seed.DASHBOARD_KEY not in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        page = c.get("/dashboard")
        assert b'data-chart="savings"' in page.content
        assert c.get("/dashboard/api/cache").status_code == 200
        assert c.get("/dashboard/assets/dashboard.js").status_code == 200
        assert c.get("/dashboard/assets/../seed.py").status_code == 404
    log = (stack.config_path.parent / "gateway.log").read_text()
    assert "listening" in log and seed.DASHBOARD_KEY not in log  # the key is never logged


def test_bad_queries_get_a_400_naming_the_parameter(stack):
    r = httpx.get(f"{stack.url}/dashboard/api/savings", params={"colour": "red"}, headers=AUTH, timeout=5)
    assert r.status_code == 400 and r.json()["error"]["param"] == "colour"
    r = httpx.get(f"{stack.url}/dashboard/api/savings", params={"since": "yesterday"}, headers=AUTH, timeout=5)
    assert r.status_code == 400 and r.json()["error"]["param"] == "since"
    assert httpx.get(f"{stack.url}/dashboard/api/nothing", headers=AUTH, timeout=5).status_code == 404


def test_feedback_records_ok_and_bad_with_a_reason(tmp_path):
    s = start_stack(tmp_path, timeout_s=3.0)
    try:
        r = httpx.post(f"{s.url}/v1/chat/completions", headers={"authorization": f"Bearer {s.key}"}, timeout=30,
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        rid = r.headers["x-thrifty-request-id"]

        def feedback(key, body):
            return httpx.post(f"{s.url}/v1/thrifty/feedback", headers={"authorization": f"Bearer {key}"},
                              json={"request_id": rid, **body}, timeout=10)

        ok = feedback(s.key, {"outcome": "ok"})
        assert ok.status_code == 200 and ok.json()["outcome"] == "ok" and ok.json()["recorded"] is True
        assert feedback(s.key, {"bad": True, "reason": "made up a refund policy"}).json()["outcome"] == "bad"
        assert feedback(s.key, {"outcome": "meh"}).status_code == 400
        foreign = feedback(localstack.OTHER_KEY, {"outcome": "bad"})
        unknown = httpx.post(f"{s.url}/v1/thrifty/feedback", headers={"authorization": f"Bearer {s.key}"},
                             json={"request_id": "thr_never", "outcome": "bad"}, timeout=10)
        assert foreign.status_code == unknown.status_code == 404 and foreign.json() == unknown.json()
        with sqlite3.connect(s.ledger_path) as db:
            found = db.execute("SELECT request_id, outcome, reason FROM call_outcomes ORDER BY at").fetchall()
        assert found == [(rid, "ok", None), (rid, "bad", "made up a refund policy")]
    finally:
        s.gateway.stop()
        s.emulator.stop()
