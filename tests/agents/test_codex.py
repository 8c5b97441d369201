"""Codex CLI, the real one, through the gateway's Responses API (`wire_api = "responses"`).

One headless `codex exec` session per model (an OpenAI one and an Anthropic one) against an emulator + gateway stack: Codex sends its prompt to
`POST /v1/responses` (streamed), the emulator calls one of Codex's tools with made-up arguments,
Codex answers the call, the emulator answers. The session must succeed, every call it made must
have a ledger row on the Responses surface, and the tokens must agree three ways: the ledger, the
emulator's invoice and Codex's own usage report; the ledger's cost is the invoice's. The client
sends no `x-thrifty-task`: the ledger's task is Codex's own session id (its `session_id` header,
the `thread_id` of its `thread.started` event), recognised by `thrifty.api.attribution`.

The Codex binary is the one `make test` installs into .tools/ (THRIFTY_CODEX overrides it).
Without it this module skips, except with THRIFTY_REQUIRE_SERVICES=1, where that fails. Codex
gets a temp HOME/CODEX_HOME, a read-only sandbox in an empty directory, and proxies pointed at a
closed loopback port (it tries GitHub and its metrics endpoint; those go nowhere).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import REPO, start_stack
from thrifty.cli import localstack
from thrifty.ledger import LedgerRow, RowFilter, SQLiteLedger
from thrifty.pricing import PriceBook

MODELS = ["gpt-4o-mini", "claude-haiku-4-5"]  # served by the emulator: an OpenAI and an Anthropic model
FEATURE = "codex"
RUN_TIMEOUT_S = 120


def _codex_binary() -> str:
    chosen = os.environ.get("THRIFTY_CODEX")
    candidates = [chosen] if chosen else [str(REPO / ".tools" / "node_modules" / ".bin" / "codex"),
                                          shutil.which("codex")]
    found = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    reason = None
    if found is None:
        reason = (f"Codex CLI not found at THRIFTY_CODEX={chosen}" if chosen else
                  "Codex CLI not installed (make test installs it into .tools/ when npm is available)")
    else:
        try:
            version = subprocess.run([found, "--version"], check=False, capture_output=True, text=True, timeout=30,
                                     env={"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent"})
            if version.returncode != 0:
                reason = f"{found} --version exited {version.returncode}: {version.stderr.strip()[:200]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = f"{found} --version failed: {exc}"
    if reason is not None:
        if os.environ.get("THRIFTY_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} and THRIFTY_REQUIRE_SERVICES=1")
        pytest.skip(f"{reason}; THRIFTY_REQUIRE_SERVICES=1 turns this into a failure")
    return found


def _config(base_url: str, model: str) -> str:
    return f"""model = "{model}"
model_provider = "thrifty"
approval_policy = "never"
sandbox_mode = "read-only"

[model_providers.thrifty]
name = "Thrifty"
base_url = "{base_url}/v1"
env_key = "THRIFTY_API_KEY"
wire_api = "responses"
http_headers = {{ "x-thrifty-feature" = "{FEATURE}" }}
"""


def _rows(ledger_path: Path, n: int, timeout: float = 10.0) -> list[LedgerRow]:
    deadline = time.monotonic() + timeout
    while True:
        rows = SQLiteLedger(str(ledger_path)).rows(RowFilter(feature=FEATURE)) if ledger_path.exists() else []
        if len(rows) >= n or time.monotonic() > deadline:
            assert len(rows) == n, f"{len(rows)} ledger rows, the emulator billed {n} calls"
            return sorted(rows, key=lambda r: r.started_at)
        time.sleep(0.05)


@pytest.fixture(scope="module", params=MODELS)
def session(request, tmp_path_factory):
    codex = _codex_binary()
    model = request.param
    tmp = tmp_path_factory.mktemp("codex")
    stack = start_stack(tmp)
    try:
        home, work = tmp / "home", tmp / "work"
        (home / ".codex").mkdir(parents=True)
        work.mkdir()
        (home / ".codex" / "config.toml").write_text(_config(stack.url, model))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "CODEX_HOME": str(home / ".codex"),
               "LANG": "C.UTF-8", "THRIFTY_API_KEY": stack.key,
               "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
               "NO_PROXY": "127.0.0.1,localhost"}
        proc = subprocess.run([codex, "exec", "--skip-git-repo-check", "--json", "List the files here"],
                              check=False, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=RUN_TIMEOUT_S)
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        billing = stack.billing()["models"]
        rows = _rows(stack.ledger_path, sum(m["requests"] for m in billing.values()))
        yield model, proc, events, billing, rows
    finally:
        stack.gateway.stop()
        stack.emulator.stop()


def test_codex_exec_succeeds_through_the_responses_api(session):
    model, proc, events, _, rows = session
    assert proc.returncode == 0, f"codex exited {proc.returncode}: {proc.stderr[-2000:]}\n{proc.stdout[-2000:]}"
    kinds = [e.get("type") for e in events]
    assert "turn.completed" in kinds and "turn.failed" not in kinds and "error" not in kinds, kinds
    assert any(e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"
               and e["item"].get("text") for e in events), events
    assert len(rows) >= 2  # the tool call and the answer after it
    for row in rows:
        assert (row.status, row.surface, row.requested_model, row.served_model, row.stream, row.feature) == \
            (200, "openai_responses", model, model, True, "codex"), row
        assert row.error_type is None and row.cost_usd > 0


def test_the_ledger_records_codex_session_as_the_task(session):
    _, _, events, _, rows = session
    (started,) = [e for e in events if e.get("type") == "thread.started"]
    assert started["thread_id"]
    assert {row.task for row in rows} == {started["thread_id"]}, (started, [r.task for r in rows])


def test_ledger_tokens_and_cost_match_codex_and_the_invoice(session):
    model, _, events, billing, rows = session
    (usage,) = [e["usage"] for e in events if e.get("type") == "turn.completed"]
    sums = {k: sum(getattr(r, k) for r in rows) for k in ("prompt_tokens", "cached_tokens", "cache_write_tokens",
                                                          "completion_tokens", "reasoning_tokens")}
    # Codex's input_tokens include the cached and cache-written ones, as the Responses API counts them.
    assert (sums["prompt_tokens"] + sums["cached_tokens"] + sums["cache_write_tokens"], sums["cached_tokens"],
            sums["completion_tokens"]) == \
        (usage["input_tokens"], usage["cached_input_tokens"], usage["output_tokens"]), (sums, usage)
    b = billing[model]
    assert (sums["prompt_tokens"], sums["cached_tokens"], sums["cache_write_tokens"], sums["completion_tokens"],
            sums["reasoning_tokens"]) == (b["input_tokens"], b["cache_read_tokens"],
                                          b["cache_write_5m_tokens"] + b["cache_write_1h_tokens"],
                                          b["output_tokens"], b["reasoning_tokens"]), (sums, b)
    invoice = localstack.invoice_from_billing({"models": billing}, PriceBook())[model]
    ledger = sum((r.cost_usd for r in rows), Decimal(0))
    assert abs(ledger - invoice) < Decimal("0.000001"), (ledger, invoice)
