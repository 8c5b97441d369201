"""`GET /metrics` against a real stack (emulator + gateway): the Prometheus text, parsed with
prometheus_client's own parser, against what the ledger holds for the same calls."""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections import defaultdict
from decimal import Decimal

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import start_stack
from tests.ledger_util import make_row, wait_rows
from thrifty.ledger import SQLiteLedger
from thrifty.observe.metrics import BoundedLabel, Metrics, may_scrape, status_class
from thrifty.observe.settings import MetricsConfig

ADMIN = "admin-metrics-secret"
METRICS_KEY = "metrics-scrape-secret"


@pytest.fixture(scope="module")
def mstack(tmp_path_factory):
    def edit(cfg):
        cfg["admin"] = {"key": ADMIN}
        # Alerts on too, so the wiring runs in a real gateway (their firing: test_alerts.py).
        cfg["observe"] = {"metrics": {"key": METRICS_KEY, "max_label_values": 2}, "budget_check_s": 0.2,
                          "alerts": [{"name": "dear", "kind": "cost_per_request", "above_usd": 100},
                                     {"name": "burn", "kind": "budget_burn"}]}
        cfg["budgets"] = {"budgets": [{"name": "all-spend", "scope": "global", "limit_usd": 5, "window": "month"},
                                      {"name": "each-tenant", "scope": "tenant", "limit_usd": 5}]}

    s = start_stack(tmp_path_factory.mktemp("metrics"), edit=edit)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def scrape(url: str, key: str | None) -> tuple[int, str]:
    req = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text: str) -> dict[str, list]:
    out: dict[str, list] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name].append(s)
    return out


def total(found: dict[str, list], name: str, **labels: str) -> float:
    return sum(s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_match_the_ledger(mstack):
    client = openai.OpenAI(base_url=f"{mstack.url}/v1", api_key=mstack.key, max_retries=0)
    ids = []
    for i, feature in enumerate(["search", "summary", "invented-3", "search"]):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"metrics question {i}"}],
            extra_headers={"x-thrifty-feature": feature, "x-thrifty-user": f"user-{i}"})
        ids.append(raw.headers["x-thrifty-request-id"])
    for _ in range(2):  # the second is an exact-cache hit
        raw = client.chat.completions.with_raw_response.create(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "same question"}], temperature=0)
        ids.append(raw.headers["x-thrifty-request-id"])
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "stream it"}], stream=True)
    ids.append(raw.headers["x-thrifty-request-id"])
    assert list(raw.parse())
    wait_rows(mstack.ledger_path, ids)
    all_rows = SQLiteLedger(str(mstack.ledger_path)).rows()
    assert sorted(r.request_id for r in all_rows) == sorted(ids)

    assert scrape(mstack.url, None)[0] == 401
    assert scrape(mstack.url, "wrong")[0] == 401
    assert scrape(mstack.url, ADMIN)[0] == 200
    status, text = scrape(mstack.url, METRICS_KEY)
    assert status == 200
    found = samples(text)

    # requests: one per row, by model and cache outcome
    assert total(found, "thrifty_requests_total") == len(all_rows)
    by_model: dict[str, int] = defaultdict(int)
    for r in all_rows:
        by_model[r.served_model or ""] += 1
    for model, n in by_model.items():
        assert total(found, "thrifty_requests_total", model=model) == n
    assert total(found, "thrifty_cache_outcomes_total", outcome="exact") == 1
    assert total(found, "thrifty_requests_total", cache="exact", status_class="2xx") == 1

    # tokens by kind, cost, baseline and savings: the ledger's sums
    assert total(found, "thrifty_tokens_total", kind="input") == sum(r.prompt_tokens for r in all_rows)
    assert total(found, "thrifty_tokens_total", kind="output") == sum(r.completion_tokens for r in all_rows)
    cost = sum((r.cost_usd or Decimal(0)) for r in all_rows)
    assert math.isclose(total(found, "thrifty_cost_usd_total"), float(cost), rel_tol=1e-9)
    baseline = sum((r.baseline_cost_usd or Decimal(0)) for r in all_rows)
    assert math.isclose(total(found, "thrifty_baseline_usd_total"), float(baseline), rel_tol=1e-9)
    exact_saved = sum(s.saved_usd for r in all_rows for s in r.levers if s.lever == "exact_cache" and s.saved_usd)
    assert exact_saved > 0
    assert math.isclose(total(found, "thrifty_saved_usd_total", lever="exact_cache"), float(exact_saved),
                        rel_tol=1e-9)

    # latency: one observation per row; time to first token for the stream
    assert total(found, "thrifty_request_duration_seconds_count") == len(all_rows)
    assert total(found, "thrifty_time_to_first_token_seconds_count", surface="openai") >= 1

    # bounded labels: two features kept, the third counted as "other"; no per-user labels
    features = {s.labels["feature"] for s in found["thrifty_cost_usd_total"]}
    assert features <= {"search", "summary", "other", ""} and "other" in features
    assert not any(k in s.labels for v in found.values() for s in v for k in ("user", "task", "request_id"))
    assert "user-1" not in text

    # budget utilisation: the global budget's spend / limit, read from the enforcer on scrape
    ratio = total(found, "thrifty_budget_utilisation_ratio", budget="all-spend")
    assert math.isclose(ratio, float(cost) / 5, rel_tol=1e-6, abs_tol=1e-9)
    log = (mstack.config_path.parent / "gateway.log").read_text()
    assert "Traceback" not in log and "alert" not in log  # on, and quiet: nothing crossed a threshold
    assert not found.get("thrifty_budget_utilisation_ratio") or all(
        s.labels["budget"] != "each-tenant" for s in found["thrifty_budget_utilisation_ratio"])


def test_bounded_label_keeps_first_values():
    label = BoundedLabel(2)
    assert [label(v) for v in ("a", "b", "c", "a", None)] == ["a", "b", "other", "a", ""]


def test_status_class():
    assert (status_class(200), status_class(429), status_class(503), status_class(0)) == ("2xx", "4xx", "5xx", "none")


def test_who_may_scrape():
    open_cfg, keyed = MetricsConfig(), MetricsConfig(key="k")
    assert may_scrape(open_cfg, None, None, "127.0.0.1") and may_scrape(open_cfg, None, None, "::1")
    assert not may_scrape(open_cfg, None, None, "10.0.0.5")
    assert not may_scrape(open_cfg, "adm", None, "127.0.0.1") and may_scrape(open_cfg, "adm", "adm", "10.0.0.5")
    assert may_scrape(keyed, "adm", "k", None) and may_scrape(keyed, "adm", "adm", None)
    assert not may_scrape(keyed, None, "x", "127.0.0.1")


def test_observer_counts_errors_retries_and_escalations():
    m = Metrics(MetricsConfig())
    m.observe(make_row(1, retries=2))
    m.observe(make_row("2.1", status=200, error_type="escalated: truncated", tier="fast"))
    m.observe(make_row(3, status=503, error_type="upstream_error", cost_usd=None))
    from prometheus_client import generate_latest

    found = samples(generate_latest(m.registry).decode())
    assert total(found, "thrifty_retries_total", provider="openai") == 2 + 2  # make_row's default is 1 retry
    assert total(found, "thrifty_escalations_total", tier="fast") == 1
    assert total(found, "thrifty_upstream_errors_total", status_class="5xx") == 1
    assert total(found, "thrifty_unpriced_calls_total") == 0  # a failed call's cost is not a missing price
