"""`/metrics` of `thrifty serve --workers 2` counts every worker's calls, not the answering one's.

A real gateway with two worker processes in front of the emulator; calls on new connections are
spread over both (checked from the per-process metric files), and one scrape must add up to all
of them, as the ledger does."""

from __future__ import annotations

import glob
import math
import os
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from tests.observe.test_metrics import samples, scrape, total
from thrifty.cli import localstack, processes
from thrifty.ledger import SQLiteLedger
from thrifty.observe import workers

N = 40


def _call(url: str, i: int) -> str:
    """One chat completion on a connection of its own (urllib opens one per request)."""
    import json

    body = json.dumps({"model": "gpt-4o-mini", "max_tokens": 16,
                       "messages": [{"role": "user", "content": f"worker question {i}"}]}).encode()
    req = urllib.request.Request(f"{url}/v1/chat/completions", data=body, method="POST",
                                 headers={"content-type": "application/json",
                                          "authorization": f"Bearer {localstack.DEMO_KEY}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
        return r.headers["x-thrifty-request-id"]


def _counting_pids(folder) -> set[str]:
    """The processes that counted a call: each worker writes its own counter_<pid>.db."""
    return {os.path.basename(p)[len("counter_"):-3] for p in glob.glob(os.path.join(folder, "counter_*.db"))}


@pytest.fixture
def emulator(tmp_path):
    emu = processes.start_emulator(log_path=str(tmp_path / "emu.log"))
    yield emu
    emu.stop()


def test_metrics_add_up_over_the_workers(tmp_path, emulator):
    ledger = tmp_path / "l.db"
    cfg = localstack.write_config(str(tmp_path / "t.yaml"), localstack.local_config(emulator.url, f"sqlite:///{ledger}"))
    # The folder named here is the one a user may set; without it serve makes a temporary one
    # (test_a_server_start_gets_a_fresh_folder). Named, the test can see which workers served.
    shared = tmp_path / "metrics"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"left by an earlier run")  # must not be counted
    gw = processes.start_gateway(cfg, log_path=str(tmp_path / "gw.log"), extra=["--workers", "2"],
                                 env={workers.ENV: str(shared)})
    try:
        ids: list[str] = []
        pids: set[str] = set()
        with ThreadPoolExecutor(8) as pool:
            # Rounds of concurrent calls until both workers have served some: the second worker
            # may still be starting when the first answers /health. At least N calls in all.
            while len(ids) < N or (len(pids) < 2 and len(ids) < 20 * N):
                ids += pool.map(lambda i: _call(gw.url, i), range(len(ids), len(ids) + 8))
                pids = _counting_pids(shared)
        status, text = scrape(gw.url, None)
    finally:
        gw.stop()
    assert status == 200, text
    n = len(ids)
    assert len(set(ids)) == n >= N
    assert len(pids) >= 2 and "1" not in pids, f"calls were not spread over the workers: {pids}"
    rows = SQLiteLedger(str(ledger)).rows()
    assert len(rows) == n
    found = samples(text)
    assert total(found, "thrifty_requests_total") == n
    assert total(found, "thrifty_request_duration_seconds_count") == n
    assert total(found, "thrifty_tokens_total", kind="output") == sum(r.completion_tokens for r in rows)
    cost = sum((r.cost_usd or Decimal(0)) for r in rows)
    assert cost > 0 and math.isclose(total(found, "thrifty_cost_usd_total"), float(cost), rel_tol=1e-9)
    # Every call reached the provider: each has its overhead, a part of its latency.
    assert total(found, "thrifty_gateway_overhead_seconds_count") == n
    assert 0 < total(found, "thrifty_gateway_overhead_seconds_sum") < total(found, "thrifty_request_duration_seconds_sum")
    assert "Traceback" not in (tmp_path / "gw.log").read_text()


def test_a_server_start_gets_a_fresh_folder(monkeypatch):
    monkeypatch.delenv(workers.ENV, raising=False)
    with workers.shared_metrics_dir() as path:
        assert os.environ[workers.ENV] == path and os.path.isdir(path) and not os.listdir(path)
    assert workers.ENV not in os.environ and not os.path.exists(path)  # removed when the server stops


def test_a_named_folder_is_emptied_of_metric_files_and_kept(tmp_path, monkeypatch):
    (tmp_path / "counter_99.db").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not ours")
    monkeypatch.setenv(workers.ENV, str(tmp_path))
    with workers.shared_metrics_dir() as path:
        assert path == str(tmp_path) and sorted(os.listdir(path)) == ["notes.txt"]
    assert os.environ[workers.ENV] == str(tmp_path) and (tmp_path / "notes.txt").exists()


def test_one_process_keeps_the_in_memory_registry():
    assert workers.multiprocess_dir() is None  # prometheus_client imported without the variable
