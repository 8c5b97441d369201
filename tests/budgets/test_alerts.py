"""Alerts: a log line and a webhook POST at each threshold, once per window, never in the way."""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal

import pytest
import pytest_asyncio
from aiohttp import web

from thrifty.budgets import BudgetExceeded, CallScopes

D = Decimal
ACME = CallScopes("acme", feature="search")


@pytest_asyncio.fixture(loop_scope="function")
async def receiver():
    """A webhook receiver on loopback: (url, received JSON bodies, delay setter)."""
    got: list[dict] = []
    delay = {"s": 0.0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(delay["s"])
        got.append(body)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook/secret-token", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook/secret-token", got, delay
    await runner.cleanup()


def budget(url, **kw):
    return {"name": "daily", "scope": "tenant", "limit_usd": "1", "window": "day", "action": "alert",
            "webhook": url, **kw}


async def spend(e, usd, tokens=1):
    r = await e.reserve(ACME, D(usd), tokens)
    await e.settle(r, D(usd), tokens)


async def test_each_threshold_fires_once_per_window(make_enforcer, receiver, clock, caplog):
    url, got, _ = receiver
    clock.t -= 10 * 86400  # mid-month, 23:59:30
    e = make_enforcer(budgets=[budget(url)])
    with caplog.at_level(logging.WARNING, "thrifty.budgets"):
        for usd in ("0.3", "0.3", "0.1", "0.15", "0.2", "0.2", "0.5"):
            await spend(e, usd)
        await e.alerter.drain()
    assert sorted(a["threshold_pct"] for a in got) == [50, 80, 100]
    a = next(a for a in got if a["threshold_pct"] == 50)
    assert a["type"] == "thrifty.budget.threshold" and a["budget"] == "daily"
    assert (a["scope"], a["scope_value"], a["tenant"], a["window"]) == ("tenant", "acme", "acme", "day")
    assert a["spent_usd"] == pytest.approx(0.6) and a["limit_usd"] == 1.0
    assert a["resets_at"].endswith("T00:00:00Z") and "reached 50%" in a["text"]
    assert caplog.text.count("budget alert") == 3
    assert "secret-token" not in caplog.text
    clock.advance(31)  # the next day: the thresholds arm again
    await spend(e, "0.55")
    await e.alerter.drain()
    assert sorted(a["threshold_pct"] for a in got[3:]) == [50]


async def test_one_big_call_crosses_several_thresholds(make_enforcer, receiver):
    url, got, _ = receiver
    e = make_enforcer(budgets=[budget(url, alert_at=[25, 50, 75])])
    await spend(e, "0.8")
    await e.alerter.drain()
    assert sorted(a["threshold_pct"] for a in got) == [25, 50, 75]


async def test_token_thresholds(make_enforcer, receiver):
    url, got, _ = receiver
    e = make_enforcer(budgets=[{"name": "tok", "scope": "task", "limit_tokens": 1000, "window": "lifetime",
                                "action": "alert", "alert_at": [90], "webhook": url}])
    r = await e.reserve(CallScopes("acme", task="t"), D(0), 950)
    await e.settle(r, D(0), 950)
    await e.alerter.drain()
    assert [(a["threshold_pct"], a["spent_tokens"], a["resets_at"]) for a in got] == [(90, 950, None)]


async def test_replicas_send_each_alert_once(make_enforcer, make_store, receiver):
    url, got, _ = receiver
    replicas = [make_enforcer(store=make_store(), budgets=[budget(url)]) for _ in range(3)]
    await asyncio.gather(*(spend(replicas[i % 3], "0.05") for i in range(30)))
    for e in replicas:
        await e.alerter.drain()
    assert sorted(a["threshold_pct"] for a in got) == [50, 80, 100]


async def test_a_hard_stop_alerts_once_when_it_starts_refusing(make_enforcer, receiver):
    url, got, _ = receiver
    e = make_enforcer(budgets=[budget(url, action="block", alert_at=[])])
    await spend(e, "0.95")
    for _ in range(3):
        with pytest.raises(BudgetExceeded):
            await e.reserve(ACME, D("0.1"), 1)
    await e.alerter.drain()
    assert [a["type"] for a in got] == ["thrifty.budget.blocked"]
    assert "refusing calls" in got[0]["text"]


async def test_a_slow_webhook_never_holds_up_a_call(make_enforcer, receiver, caplog):
    url, got, delay = receiver
    delay["s"] = 1.0
    e = make_enforcer(budgets=[budget(url)], webhook_timeout_s=0.2)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, "thrifty.budgets"):
        await spend(e, "0.9")
        took = time.perf_counter() - started
        await e.alerter.drain()
    assert took < 0.2  # settle returned before the webhook even answered
    assert "webhook 127.0.0.1" in caplog.text and "failed" in caplog.text  # timed out, logged
    assert got == []
