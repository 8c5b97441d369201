"""The dashboard in headless Chromium against a real `thrifty serve` over the seeded ledger: it
signs in, draws every chart with the numbers the ledger holds, logs no error, asks nothing off
loopback, and a filter changes what it shows. The screenshot is kept as a test artifact
(THRIFTY_ARTIFACTS_DIR, else the test's tmp folder) and, with THRIFTY_UPDATE_DOCS_IMAGE=1, as
docs/images/dashboard.png (the README's)."""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import REPO, start_stack
from tests.dashboard import seed

CHARTS = ("spend_over_time", "savings", "cost_per_success", "cost_per_feature", "cost_per_cohort",
          "cost_per_request_type", "cache", "escalation", "budgets", "call_sites", "active_users")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash_browser")
    seed.seed(tmp / "ledger.db")
    s = start_stack(tmp, edit=seed.dashboard_config, timeout_s=3.0)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def _marks(page, chart: str) -> dict[str, str]:
    return page.eval_on_selector_all(f'[data-chart="{chart}"] .mark',
                                     "els => Object.fromEntries(els.map(e => [e.dataset.key, e.dataset.value]))")


def _total(page, chart: str) -> Decimal:
    return Decimal(page.get_attribute(f'[data-chart="{chart}"] .total', "data-total"))


def test_the_dashboard_draws_the_ledger_and_filters_it(browser, stack, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))

    page.goto(f"{stack.url}/dashboard")
    page.fill('input[name="key"]', seed.DASHBOARD_KEY)
    page.click('button[type="submit"]')
    page.wait_for_selector('#charts[data-state="ready"]', timeout=15000)
    for chart in CHARTS:
        assert page.get_attribute(f'[data-chart="{chart}"]', "data-state") == "ready", chart

    assert _total(page, "spend_over_time") == seed.SPEND
    features = {k: Decimal(v) for k, v in _marks(page, "cost_per_feature").items()}
    assert features == seed.BY_FEATURE
    assert _total(page, "savings") == Decimal("0.030")
    savings = _marks(page, "savings")
    assert Decimal(savings["routing"]) == Decimal("0.010") and Decimal(savings["routing (est.)"]) == Decimal("0.010")
    assert Decimal(page.get_attribute('[data-chart="savings"] [data-provider-discount]',
                                      "data-provider-discount")) == Decimal("0.002")
    assert _total(page, "cost_per_success") == Decimal("0.034")
    per = _marks(page, "cost_per_success")
    assert Decimal(per["chat / call"]) == Decimal("0.013") and Decimal(per["chat / success"]) == Decimal("0.026")
    assert float(_marks(page, "cache")["exact"]) == pytest.approx(0.2)
    assert float(_marks(page, "escalation")["fast"]) == pytest.approx(1 / 3)
    assert Decimal(_marks(page, "budgets")["monthly"]) == seed.SPEND
    assert {k: Decimal(v) for k, v in _marks(page, "call_sites").items()} == \
        {"chat.reply": Decimal("0.052"), "search.query": Decimal("0.050")}
    users = _marks(page, "active_users")
    assert any(k.endswith(" chat") and Decimal(v) == Decimal("0.017333333333") for k, v in users.items())

    shot = Path(os.environ.get("THRIFTY_ARTIFACTS_DIR") or tmp_path) / "dashboard.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("THRIFTY_UPDATE_DOCS_IMAGE") == "1":
        docs = REPO / "docs" / "images" / "dashboard.png"
        docs.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, docs)

    page.select_option('#filters select[name="tenant"]', "beta")
    page.click('#filters button[type="submit"]')
    page.wait_for_selector('#charts[data-state="ready"]', timeout=15000)
    assert {k: Decimal(v) for k, v in _marks(page, "cost_per_feature").items()} == {"search": seed.BETA_SPEND}
    assert _total(page, "spend_over_time") == seed.BETA_SPEND
    assert _total(page, "cost_per_success") == Decimal("0.05")  # b1 is beta's one successful output

    assert errors == []
    off = [u for u in requests if urlsplit(u).hostname not in ("127.0.0.1", "localhost")]
    assert off == [] and any("/dashboard/api/" in u for u in requests)
    page.close()
