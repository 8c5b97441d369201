"""Cost alerts on constructed rows, delivered to a local HTTP server (the webhook) and the log."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.ledger_util import make_row
from thrifty.budgets import BudgetsConfig, Enforcer
from thrifty.observe.alerts import Alerts, exhaustion_time
from thrifty.observe.settings import AlertRule, ObserveConfig


@pytest.fixture
def webhook():
    """A local receiver: each POSTed JSON body lands in `received`."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook/secret-token", received
    server.shutdown()
    server.server_close()


def rows(n: int, *, t0: float = 1_000.0, step: float = 1.0, **kw):
    return [make_row(f"thr_{kw.get('tier', 'x')}{i}", started_at=t0 + i * step, finished_at=t0 + i * step,
                     **kw) for i in range(n)]


async def test_cost_per_request_fires_once_per_window(webhook, caplog):
    url, received = webhook
    rule = AlertRule(name="fast-creep", kind="cost_per_request", tier="fast", above_usd=Decimal("0.001"),
                     window_s=100, min_calls=5, webhook=url)
    alerts = Alerts([rule])
    caplog.set_level(logging.WARNING)
    # 5 cheap calls, then 5 dear ones: the average of the last 100 s crosses $0.001 at the 8th
    # ((5 x 0.0005 + 3 x 0.002) / 8 = 0.0010625), and fires once for the window.
    for r in rows(5, tier="fast", cost_usd=Decimal("0.0005")):
        alerts.observe(r)
    assert alerts.fired == []
    for r in rows(5, t0=1_005.0, tier="fast", cost_usd=Decimal("0.002")):
        alerts.observe(r)
    for r in rows(3, tier="standard", cost_usd=Decimal("0.05")):  # another tier: not watched by this rule
        alerts.observe(r)
    await alerts.alerter.drain(5)
    assert len(alerts.fired) == 1 and len(received) == 1
    body = received[0]
    assert body["rule"] == "fast-creep" and body["tier"] == "fast" and body["feature"] == "search"
    assert body["calls"] == 8 and body["value"] == pytest.approx(0.0010625)
    assert "fast-creep" in caplog.text and "secret-token" not in caplog.text
    # Still above the threshold within the window: silent. A window later: fires again.
    alerts.observe(make_row("thr_late1", started_at=1_050.0, finished_at=1_050.0, tier="fast",
                            cost_usd=Decimal("0.002")))
    assert len(alerts.fired) == 1
    for r in rows(6, t0=1_200.0, tier="fast", cost_usd=Decimal("0.003")):
        alerts.observe(r)
    await alerts.alerter.drain(5)
    assert len(alerts.fired) == 2 and len(received) == 2
    await alerts.close()


async def test_escalation_rate_by_first_tier():
    rule = AlertRule(name="too-small", kind="escalation_rate", above=0.3, window_s=3600, min_calls=10)
    alerts = Alerts([rule])
    # 10 calls routed to the fast tier, 4 of them escalated to standard: 40% > 30%.
    for i in range(10):
        rid = f"thr_{i:04d}"
        if i % 5 in (0, 1):
            alerts.observe(make_row(f"{rid}.1", tier="fast", error_type="escalated: truncated",
                                    started_at=10.0 + i, finished_at=10.0 + i))
            alerts.observe(make_row(rid, tier="standard", started_at=10.0 + i, finished_at=10.5 + i))
        else:
            alerts.observe(make_row(rid, tier="fast", started_at=10.0 + i, finished_at=10.5 + i))
    assert len(alerts.fired) == 1
    fired = alerts.fired[0]
    assert fired["event"] == "escalation_rate" and fired["tier"] == "fast"
    assert fired["value"] == pytest.approx(0.4) and fired["calls"] == 10
    await alerts.close()


async def test_escalation_rate_below_threshold_is_quiet():
    alerts = Alerts([AlertRule(name="r", kind="escalation_rate", above=0.3, min_calls=10)])
    for i in range(20):
        rid = f"thr_{i:04d}"
        if i % 5 == 0:  # 20%
            alerts.observe(make_row(f"{rid}.1", tier="fast", error_type="escalated: empty"))
            alerts.observe(make_row(rid, tier="standard"))
        else:
            alerts.observe(make_row(rid, tier="fast"))
    assert alerts.fired == []
    await alerts.close()


def test_exhaustion_time():
    # $30 of $100 spent in the first 3 days of a 30-day window: $10/day, runs out on day 10.
    day = 86_400.0
    assert exhaustion_time(Decimal(30), Decimal(100), 0.0, 3 * day) == pytest.approx(10 * day)
    assert exhaustion_time(Decimal(0), Decimal(100), 0.0, 3 * day) is None
    assert exhaustion_time(Decimal(100), Decimal(100), 0.0, 3 * day) == 3 * day


async def test_budget_burn_fires_once_per_window(webhook):
    url, received = webhook
    from thrifty.budgets.scopes import CallScopes

    month_start = 1_767_225_600.0  # 2026-01-01T00:00:00Z; January has 31 days
    enforcer = Enforcer(BudgetsConfig(budgets=[{"name": "monthly", "scope": "global", "limit_usd": 100,
                                                "window": "month", "alert_at": []}]))
    now = month_start + 3 * 86_400  # day 3: $30 spent, $10 a day, out on day 10 (< 31)
    r = await enforcer.reserve(CallScopes(tenant="acme"), Decimal(30), 0, now=now)
    await enforcer.settle(r, Decimal(30), 0, now=now)
    alerts = Alerts([AlertRule(name="burn", kind="budget_burn", webhook=url)], enforcer=enforcer)
    assert await alerts.check_budgets(now=now) == 1
    assert await alerts.check_budgets(now=now + 3600) == 0  # once per window
    await alerts.alerter.drain(5)
    (body,) = received
    assert body["event"] == "budget_burn" and body["budget"] == "monthly"
    assert body["runs_out_at"] == pytest.approx(month_start + 10 * 86_400)
    await alerts.close()
    await enforcer.close()


async def test_budget_on_track_is_quiet():
    from thrifty.budgets.scopes import CallScopes

    month_start = 1_767_225_600.0
    enforcer = Enforcer(BudgetsConfig(budgets=[{"name": "monthly", "scope": "global", "limit_usd": 100,
                                                "window": "month", "alert_at": []}]))
    now = month_start + 15 * 86_400  # day 15: $30 spent, $2 a day: $62 by the end of the month
    r = await enforcer.reserve(CallScopes(tenant="acme"), Decimal(30), 0, now=now)
    await enforcer.settle(r, Decimal(30), 0, now=now)
    alerts = Alerts([AlertRule(name="burn", kind="budget_burn")], enforcer=enforcer)
    assert await alerts.check_budgets(now=now) == 0
    await alerts.close()
    await enforcer.close()


def test_rule_needs_its_threshold():
    with pytest.raises(ValueError, match="above_usd"):
        AlertRule(name="x", kind="cost_per_request")
    with pytest.raises(ValueError, match="unique"):
        ObserveConfig(alerts=[{"name": "a", "kind": "budget_burn"}, {"name": "a", "kind": "budget_burn"}])


def test_attempt_rows_never_count_as_calls():
    alerts = Alerts([AlertRule(name="c", kind="cost_per_request", above_usd=Decimal("0.0001"), min_calls=1)])
    alerts.observe(make_row("thr_9.1", error_type="consistency sample", cost_usd=Decimal(1)))
    assert alerts.fired == [] and not alerts._windows
    asyncio.run(alerts.close())
