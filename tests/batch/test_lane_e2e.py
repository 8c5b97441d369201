"""The batch lane end to end: official SDKs -> thrifty serve -> thrifty emulate (both batch APIs).

Checks the issue's promises on real processes: OpenAI files + batches and Anthropic message
batches with the SDKs unchanged, a malformed line named by its number while the rest go on,
either surface to either provider, deferred single calls (202, job, answer in the client's
format), cancel, ledger == the emulator's invoice at batch prices, and a batch line costing
exactly half the same line sent interactively.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from tests.conftest import start_stack
from thrifty.contract.usage import Usage
from thrifty.pricing import PriceBook

PRICES = PriceBook()


@pytest.fixture(scope="module")
def lane(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lane")
    emu_cfg = tmp / "emulator.yaml"
    emu_cfg.write_text("batch_seconds: 0.3\n")

    def edit(cfg):
        cfg["batch"] = {"tick_s": 0.1, "poll_min_s": 0.1, "poll_max_s": 0.2, "max_wait_s": 0.2}

    s = start_stack(tmp, edit=edit, emulator_args=["--config", str(emu_cfg)])
    yield s
    s.gateway.stop()
    s.emulator.stop()


def _rows(stack, where: str = "1=1", params=()):
    deadline = time.time() + 10
    while True:
        con = sqlite3.connect(stack.ledger_path)
        try:
            rows = con.execute(f"SELECT request_id, lane, status, cost_usd, baseline_cost_usd, served_model, "
                               f"prompt_tokens, completion_tokens, cached_tokens, error_type FROM calls WHERE {where}",
                               params).fetchall()
            return rows
        except sqlite3.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
        finally:
            con.close()


def _rows_when(stack, where: str, n: int, params=()):
    """The rows matching `where` once there are `n` of them: a line's row is journaled before its
    job reads as done, and the ledger's writer puts it in the database a moment later."""
    return _wait(lambda: _rows(stack, where, params), lambda rows: len(rows) == n)


def _wait(fn, done, timeout=20.0):
    deadline = time.time() + timeout
    while True:
        value = fn()
        if done(value):
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting; last value: {value!r}")
        time.sleep(0.1)


def _chat(model: str, text: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 40}


def test_openai_batch_through_the_lane(lane):
    client = openai.OpenAI(base_url=lane.url + "/v1", api_key=lane.key)
    lines = [
        {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": _chat("gpt-4o-mini", "tag: red apple")},
        "this line is not JSON",
        {"custom_id": "b", "method": "POST", "url": "/v1/chat/completions",
         "body": _chat("claude-haiku-4-5", "tag: green pear")},  # an OpenAI-surface line served by Anthropic
        {"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o-mini"}},
    ]
    data = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines).encode()
    f = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    assert f.purpose == "batch" and f.bytes == len(data)
    assert client.files.content(f.id).content == data
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                              metadata={"job": "enrich"})
    assert b.metadata == {"job": "enrich"}
    # Lines 2 and 4 are rejected by number at once; the others go on.
    assert b.errors is not None and sorted(e.line for e in b.errors.data) == [2, 4]
    assert any("line 2" in e.message for e in b.errors.data)
    done = _wait(lambda: client.batches.retrieve(b.id), lambda x: x.status == "completed")
    assert done.request_counts.total == 4 and done.request_counts.completed == 2 and done.request_counts.failed == 2
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    by_id = {o["custom_id"]: o for o in out}
    assert set(by_id) == {"a", "b"}
    for o in out:
        body = o["response"]["body"]
        assert o["response"]["status_code"] == 200 and body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"]
    errs = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert {e["custom_id"] for e in errs} == {"line-2", "c"}
    assert [b.id for b in client.batches.list(limit=5).data][0] == b.id
    # One ledger row per line, lane batch, priced at the batch price; the batch discount is the
    # client's own (it asked for a batch), never a saving: baseline == cost.
    rows = {r[0]: r for r in _wait(lambda: _rows(lane, "lane = 'batch'"),
                                   lambda rows: sum(r[2] == 200 for r in rows) >= 2)}
    ok = [r for r in rows.values() if r[2] == 200]
    assert len(ok) >= 2
    for r in ok:
        usage = Usage(input_tokens=r[6], output_tokens=r[7])
        expected = PRICES.cost(r[5], usage, provider="anthropic" if "claude" in r[5] else None, batch=True).total
        assert Decimal(r[3]) == expected
        assert Decimal(r[4]) == Decimal(r[3])


def test_an_embeddings_batch_at_half_price(lane):
    """`/v1/embeddings` lines (an embeddings backfill): answered in OpenAI's embeddings shape,
    recorded at the batch price of the provider's token count."""
    client = openai.OpenAI(base_url=lane.url + "/v1", api_key=lane.key)
    lines = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "text-embedding-3-small", "input": [f"document {i}", f"title {i}"]}} for i in range(3)]
    lines.append({"custom_id": "chat", "method": "POST", "url": "/v1/embeddings",
                  "body": {"model": "claude-haiku-4-5", "input": "x"}})  # no embeddings batch API there
    f = client.files.create(file=("emb.jsonl", io.BytesIO("\n".join(json.dumps(x) for x in lines).encode())),
                            purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")
    assert [e.line for e in b.errors.data] == [4]
    done = _wait(lambda: client.batches.retrieve(b.id), lambda x: x.status == "completed")
    assert done.request_counts.completed == 3
    for line in client.files.content(done.output_file_id).text.splitlines():
        body = json.loads(line)["response"]["body"]
        assert body["object"] == "list" and len(body["data"]) == 2 and body["data"][0]["embedding"]
        (row,) = _rows_when(lane, "request_id = ?", 1, (json.loads(line)["response"]["request_id"],))
        expected = PRICES.cost("text-embedding-3-small", Usage(input_tokens=row[6]), provider="openai", batch=True).total
        assert row[6] > 0 and Decimal(row[3]) == expected


def test_a_cached_line_never_reaches_the_provider_and_batch_answers_fill_the_cache(lane):
    client = openai.OpenAI(base_url=lane.url + "/v1", api_key=lane.key)
    seen = {"model": "gpt-4o-mini", "temperature": 0, "max_tokens": 20,
            "messages": [{"role": "user", "content": "category of: stapler"}]}
    fresh = {**seen, "messages": [{"role": "user", "content": "category of: hole punch"}]}
    first = client.chat.completions.with_raw_response.create(**seen)
    assert first.headers["x-thrifty-cache"] == "miss"
    before = lane.billing()["batch"]["totals"]["requests"]
    lines = [{"custom_id": "seen", "method": "POST", "url": "/v1/chat/completions", "body": seen},
             {"custom_id": "fresh", "method": "POST", "url": "/v1/chat/completions", "body": fresh}]
    f = client.files.create(file=("c.jsonl", io.BytesIO("\n".join(json.dumps(x) for x in lines).encode())),
                            purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    done = _wait(lambda: client.batches.retrieve(b.id), lambda x: x.status == "completed")
    out = {json.loads(x)["custom_id"]: json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()}
    assert out["seen"]["response"]["body"]["choices"][0]["message"]["content"] == \
        first.parse().choices[0].message.content
    assert lane.billing()["batch"]["totals"]["requests"] == before + 1  # only "fresh" reached the provider
    (hit,) = _rows(lane, "request_id = ?", (out["seen"]["response"]["request_id"],))
    assert hit[1] == "batch" and Decimal(hit[3]) == 0
    # The batch line's answer is in the exact cache now: the same call interactively is a hit.
    again = client.chat.completions.with_raw_response.create(**fresh)
    assert again.headers["x-thrifty-cache"] == "exact"
    assert again.parse().choices[0].message.content == \
        out["fresh"]["response"]["body"]["choices"][0]["message"]["content"]


def test_anthropic_message_batch_through_the_lane(lane):
    client = anthropic.Anthropic(base_url=lane.url, api_key=lane.key)
    batch = client.messages.batches.create(requests=[
        {"custom_id": "one", "params": {"model": "claude-haiku-4-5", "max_tokens": 30,
                                        "messages": [{"role": "user", "content": "classify: invoice"}]}},
        {"custom_id": "two", "params": {"model": "gpt-4o-mini", "max_tokens": 30,  # served by OpenAI
                                        "messages": [{"role": "user", "content": "classify: receipt"}]}},
        {"custom_id": "bad", "params": {"model": "claude-haiku-4-5", "messages": []}},
    ])
    assert batch.type == "message_batch"
    done = _wait(lambda: client.messages.batches.retrieve(batch.id), lambda x: x.processing_status == "ended")
    assert done.request_counts.succeeded == 2 and done.request_counts.errored == 1
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["one"].type == "succeeded" and results["one"].message.content[0].text
    assert results["two"].type == "succeeded" and results["two"].message.role == "assistant"
    assert results["bad"].type == "errored"
    assert batch.id in [b.id for b in client.messages.batches.list(limit=10).data]


def test_a_tenant_sees_only_its_own_batches(lane):
    from thrifty.cli.localstack import OTHER_KEY

    mine = anthropic.Anthropic(base_url=lane.url, api_key=lane.key).messages.batches.create(requests=[
        {"custom_id": "x", "params": {"model": "claude-haiku-4-5", "max_tokens": 10,
                                      "messages": [{"role": "user", "content": "hi"}]}}])
    other = anthropic.Anthropic(base_url=lane.url, api_key=OTHER_KEY)
    with pytest.raises(anthropic.NotFoundError):
        other.messages.batches.retrieve(mine.id)


def test_deferred_call_is_answered_later_at_half_price(lane):
    body = _chat("gpt-4o-mini", "enrich: the product 'blue mug', write one sentence")
    r = httpx.post(lane.url + "/v1/chat/completions", json=body,
                   headers={"authorization": f"Bearer {lane.key}", "x-thrifty-defer": "24h",
                            "x-thrifty-feature": "enrichment"})
    assert r.status_code == 202, r.text
    job = r.json()
    rid = r.headers["x-thrifty-request-id"]
    assert job["object"] == "thrifty.job" and job["request_id"] == rid
    done = _wait(lambda: httpx.get(lane.url + f"/v1/thrifty/jobs/{job['id']}",
                                   headers={"authorization": f"Bearer {lane.key}"}).json(),
                 lambda j: j["status"] == "completed")
    assert done["response"]["object"] == "chat.completion"
    # The same call sent interactively: same usage (the emulator is deterministic), twice the price.
    inter = httpx.post(lane.url + "/v1/chat/completions", json=body,
                       headers={"authorization": f"Bearer {lane.key}", "x-thrifty-cache": "no-store"})
    assert inter.status_code == 200
    # The row is journaled before the job reads as completed; the ledger's writer puts it in the
    # database a moment later.
    (row,) = _rows_when(lane, "request_id = ?", 1, (rid,))
    assert row[1] == "deferred" and row[2] == 200
    cost, baseline = Decimal(row[3]), Decimal(row[4])
    assert cost * 2 == baseline  # gpt-4o-mini's batch price is half its interactive price
    assert cost == Decimal(done["cost_usd"])
    inter_cost = Decimal(inter.headers["x-thrifty-cost-usd"])
    assert inter_cost == baseline and cost == inter_cost / 2
    con = sqlite3.connect(lane.ledger_path)
    (saved,) = con.execute("SELECT saved_usd FROM call_levers WHERE request_id = ? AND lever = 'batch'",
                           (rid,)).fetchone()
    con.close()
    assert Decimal(saved) == baseline - cost


def test_bad_defer_window_is_a_400(lane):
    r = httpx.post(lane.url + "/v1/chat/completions", json=_chat("gpt-4o-mini", "x"),
                   headers={"authorization": f"Bearer {lane.key}", "x-thrifty-defer": "5m"})
    assert r.status_code == 400 and "24h" in r.json()["error"]["message"]


def test_cancel_a_batch(lane):
    client = anthropic.Anthropic(base_url=lane.url, api_key=lane.key)
    batch = client.messages.batches.create(requests=[
        {"custom_id": f"c{i}", "params": {"model": "claude-haiku-4-5", "max_tokens": 10,
                                          "messages": [{"role": "user", "content": f"n {i}"}]}} for i in range(3)])
    client.messages.batches.cancel(batch.id)
    done = _wait(lambda: client.messages.batches.retrieve(batch.id), lambda x: x.processing_status == "ended")
    c = done.request_counts
    assert c.canceled + c.succeeded == 3
    kinds = {r.result.type for r in client.messages.batches.results(batch.id)}
    assert kinds <= {"canceled", "succeeded"}


def test_ledger_equals_the_emulators_invoice_at_batch_prices(lane):
    """Every line the emulator billed in its batch section is a ledger row at the batch price."""
    from thrifty.cli.localstack import invoice_from_billing

    billing = lane.billing()["batch"]
    invoice = invoice_from_billing({"models": {}, "batch": billing}, PRICES)  # at batch prices
    expected = sum(invoice.values(), Decimal(0))
    rows = _rows_when(lane, "lane IN ('batch', 'deferred') AND status = 200 AND cost_usd IS NOT NULL "
                            "AND cache NOT IN ('exact', 'semantic')",  # cache hits never reached the provider
                      billing["totals"]["requests"])
    ledger = sum((Decimal(r[3]) for r in rows), Decimal(0))
    assert billing["totals"]["requests"] == len(rows) > 0
    assert ledger == expected
    # The one counterfactual holds on every lane row: the levers' savings add up to baseline - cost.
    from thrifty.ledger import SQLiteLedger

    lane_rows = [r for r in SQLiteLedger(str(lane.ledger_path)).rows() if r.lane in ("batch", "deferred")
                 and r.status == 200]
    assert lane_rows
    for r in lane_rows:
        priced = sum((s.saved_usd for s in r.levers if s.saved_usd is not None), Decimal(0))
        assert r.baseline_cost_usd - r.cost_usd == priced, r


def test_budget_is_held_at_the_batch_price_and_refuses_lines_past_it(tmp_path):
    """A $0.0001 budget: the first small line fits at the batch price, a huge line does not and
    is refused by number, the others go on."""
    def edit(cfg):
        cfg["batch"] = {"tick_s": 0.1, "poll_min_s": 0.1, "poll_max_s": 0.2}
        cfg["budgets"] = {"budgets": [{"name": "tiny", "scope": "tenant", "limit_usd": "0.0001",
                                       "window": "day"}]}

    emu_cfg = tmp_path / "emulator.yaml"
    emu_cfg.write_text("batch_seconds: 0.2\n")
    s = start_stack(tmp_path, edit=edit, emulator_args=["--config", str(emu_cfg)])
    try:
        client = anthropic.Anthropic(base_url=s.url, api_key=s.key)
        big = "word " * 20000
        batch = client.messages.batches.create(requests=[
            {"custom_id": "small", "params": {"model": "claude-haiku-4-5", "max_tokens": 10,
                                              "messages": [{"role": "user", "content": "hi"}]}},
            {"custom_id": "huge", "params": {"model": "claude-haiku-4-5", "max_tokens": 10,
                                             "messages": [{"role": "user", "content": big}]}},
        ])
        done = _wait(lambda: client.messages.batches.retrieve(batch.id), lambda x: x.processing_status == "ended")
        assert done.request_counts.succeeded == 1 and done.request_counts.errored == 1
        results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
        assert results["small"].type == "succeeded"
        assert results["huge"].type == "errored" and "tiny" in results["huge"].error.error.message
    finally:
        s.gateway.stop()
        s.emulator.stop()


def test_a_gateway_killed_mid_job_resumes_polling_and_bills_each_line_once(tmp_path):
    from thrifty.cli import processes

    emu_cfg = tmp_path / "emulator.yaml"
    emu_cfg.write_text("batch_seconds: 2.0\n")

    def edit(cfg):
        cfg["batch"] = {"tick_s": 0.1, "poll_min_s": 0.2, "poll_max_s": 0.4}

    s = start_stack(tmp_path, edit=edit, emulator_args=["--config", str(emu_cfg)])
    gw = s.gateway
    try:
        client = anthropic.Anthropic(base_url=s.url, api_key=s.key)
        batch = client.messages.batches.create(requests=[
            {"custom_id": f"r{i}", "params": {"model": "claude-haiku-4-5", "max_tokens": 10,
                                              "messages": [{"role": "user", "content": f"label {i}"}]}}
            for i in range(4)])

        def emulator_batches():
            with httpx.Client() as h:
                return h.get(s.emulator.url + "/v1/messages/batches",
                             headers={"x-api-key": "emulator-key", "anthropic-version": "2023-06-01"}).json()["data"]

        _wait(emulator_batches, lambda d: len(d) == 1)  # submitted, still running at the provider
        gw.proc.kill()  # kill -9: no shutdown, no flush
        gw.proc.wait(5)
        gw = processes.start_gateway(str(s.config_path), log_path=str(tmp_path / "gateway2.log"))
        client = anthropic.Anthropic(base_url=gw.url, api_key=s.key)
        done = _wait(lambda: client.messages.batches.retrieve(batch.id), lambda x: x.processing_status == "ended")
        assert done.request_counts.succeeded == 4
        assert len(emulator_batches()) == 1  # never submitted twice
        billed = s.billing()["batch"]["totals"]["requests"]
        assert billed == 4
        rows = _rows_when(s, "lane = 'batch'", 4)
        assert all(r[2] == 200 for r in rows)
    finally:
        gw.stop()
        s.emulator.stop()


def test_partial_failure_expiry_and_a_provider_without_a_batch_api(tmp_path):
    """One stack, three promises: a line the provider fails is `errored` while the others
    succeed; lines the provider did not run within its window come back `expired`; a deployment
    whose provider has no batch API (Azure here) is served through the normal path, still
    recorded in the lane, at the interactive price."""
    emu_cfg = tmp_path / "emulator.yaml"
    emu_cfg.write_text("batch_seconds: 0.4\n")

    def edit(cfg):
        cfg["batch"] = {"tick_s": 0.1, "poll_min_s": 0.1, "poll_max_s": 0.2}
        base = cfg["providers"]["openai"]["base_url"].removesuffix("/v1")
        cfg["providers"]["azure"] = {"kind": "azure", "base_url": base, "api_key": "emulator-key"}
        cfg["deployments"]["azure-mini"] = {"provider": "azure", "model": "gpt-4o-mini", "tier": "fast",
                                            "price_provider": "azure"}

    s = start_stack(tmp_path, edit=edit, emulator_args=["--config", str(emu_cfg)])
    try:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key=s.key)
        lines = [{"custom_id": "ok", "method": "POST", "url": "/v1/chat/completions",
                  "body": _chat("gpt-4o-mini", "tag: lamp")},
                 {"custom_id": "boom", "method": "POST", "url": "/v1/chat/completions",
                  "body": _chat("gpt-4o-mini", "tag: chair [emulator:batch_fault]")},
                 {"custom_id": "azure", "method": "POST", "url": "/v1/chat/completions",
                  "body": _chat("azure-mini", "tag: table")}]
        data = "\n".join(json.dumps(x) for x in lines).encode()
        f = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
        b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        done = _wait(lambda: client.batches.retrieve(b.id), lambda x: x.status == "completed")
        assert done.request_counts.completed == 2 and done.request_counts.failed == 1
        out = {json.loads(x)["custom_id"] for x in client.files.content(done.output_file_id).text.splitlines()}
        assert out == {"ok", "azure"}
        (err,) = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
        assert err["custom_id"] == "boom" and err["response"]["status_code"] == 500
        ok = _rows_when(s, "lane = 'batch' AND status = 200", 2)
        rows = {r[5]: r for r in ok}
        az = [r for r in ok if r[0] != rows.get("gpt-4o-mini", (None,))[0]]
        assert az, rows
        billing = s.billing()
        assert billing["batch"]["totals"]["requests"] == 1  # only "ok" ran as a provider batch line
        assert billing["totals"]["requests"] == 1  # the Azure line ran interactively
    finally:
        s.gateway.stop()
        s.emulator.stop()


def test_lines_the_provider_did_not_run_in_time_expire(tmp_path):
    emu_cfg = tmp_path / "emulator.yaml"
    emu_cfg.write_text("batch_seconds: 3.0\nbatch_expire_seconds: 0.2\n")

    def edit(cfg):
        cfg["batch"] = {"tick_s": 0.1, "poll_min_s": 0.1, "poll_max_s": 0.2}

    s = start_stack(tmp_path, edit=edit, emulator_args=["--config", str(emu_cfg)])
    try:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key=s.key)
        data = json.dumps({"custom_id": "late", "method": "POST", "url": "/v1/chat/completions",
                           "body": _chat("gpt-4o-mini", "tag: sofa")}).encode()
        f = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
        b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        done = _wait(lambda: client.batches.retrieve(b.id), lambda x: x.status in ("expired", "completed"))
        assert done.status == "expired" and done.request_counts.failed == 1
        (err,) = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
        assert err["error"]["code"] == "batch_expired"
        (row,) = _rows_when(s, "lane = 'batch'", 1)
        assert row[9] == "batch_expired" and Decimal(row[3]) == 0
        assert s.billing()["batch"]["totals"]["requests"] == 0  # expired lines are not billed
    finally:
        s.gateway.stop()
        s.emulator.stop()


def test_a_deferral_asked_of_a_gateway_without_the_lane_is_a_400(tmp_path):
    def edit(cfg):
        cfg["batch"] = {"enabled": False}

    s = start_stack(tmp_path, edit=edit)
    try:
        headers = {"authorization": f"Bearer {s.key}"}
        r = httpx.post(s.url + "/v1/chat/completions", json=_chat("gpt-4o-mini", "x"),
                       headers={**headers, "x-thrifty-defer": "24h"})
        assert r.status_code == 400 and "batch lane is off" in r.json()["error"]["message"]
        r = httpx.post(s.url + "/v1/chat/completions", json=_chat("gpt-4o-mini", "x"),
                       headers={**headers, "x-thrifty-defer": "false"})
        assert r.status_code == 200
        r = httpx.get(s.url + "/v1/batches", headers=headers)
        assert r.status_code == 400 and r.json()["error"]["code"] == "batch_lane_disabled"
    finally:
        s.gateway.stop()
        s.emulator.stop()
