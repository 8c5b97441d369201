"""Traffic sources: each input kind detected and loaded from a small file with known values, and
malformed records counted and named by line and field."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from tests.ledger_pg.conftest import dbname, postgres_url, schema, url  # noqa: F401 (fixtures)
from thrifty.analysis.sources import detect, load
from thrifty.analysis.sources.fields import body_fields
from thrifty.contract.usage import Usage
from thrifty.errors import ThriftyError
from thrifty.ledger import LedgerRow, SQLiteLedger
from thrifty.pricing import PriceBook
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT

DATA_DIR = Path(os.environ.get("THRIFTY_DATA_DIR", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
T0 = 1_700_000_000.0

OPENAI_BODY = {"model": "gpt-4o-mini", "temperature": 0, "max_tokens": 300,
               "messages": [{"role": "system", "content": "You are terse."},
                            {"role": "user", "content": "Summarize this article: the cat sat on the mat."}]}
ANTHROPIC_BODY = {"model": "claude-3-5-haiku-latest", "max_tokens": 64, "system": "You classify tickets.",
                  "messages": [{"role": "user", "content": "Classify: my invoice is wrong. A) billing B) bug"}]}


def price(model: str, **usage: int) -> Decimal:
    return PriceBook().cost(model, Usage(**usage)).total


def rows(report, sql_cols: str = "*", order: str = "id"):
    cur = report.con.execute(f"SELECT {sql_cols} FROM traffic ORDER BY {order}")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


# --- the ledger ------------------------------------------------------------------------------

def ledger_rows() -> list[LedgerRow]:
    common = dict(finished_at=T0 + 1, tenant="acme", feature="search", user="u1", task="t1", call_site="app.py:10",
                  provider="openai", tier="small", error_type=None)
    return [
        LedgerRow(request_id="a", started_at=T0, surface="openai", requested_model="fast",
                  served_model="gpt-4o-mini", status=200, prompt_tokens=100, cached_tokens=20,
                  cache_write_tokens=5, completion_tokens=50, reasoning_tokens=3, cost_usd=Decimal("0.000123"),
                  stream=True, cache="miss", request_hash="x1:gateway-key",
                  request_body=json.dumps(OPENAI_BODY), response_body="{}", **common),
        LedgerRow(request_id="b", started_at=T0 + 86_400, surface="anthropic", requested_model="claude-3-5-haiku-latest",
                  served_model=None, status=200, prompt_tokens=40, completion_tokens=2, cost_usd=None,
                  request_body=json.dumps(ANTHROPIC_BODY), lane="deferred", **common),
        LedgerRow(request_id="c", started_at=T0 + 5, surface="openai", requested_model="gpt-4o-mini",
                  served_model="gpt-4o-mini", status=502, prompt_tokens=1000, completion_tokens=0, cost_usd=None,
                  request_hash="x1:other", **{**common, "error_type": "upstream_error"}),
    ]


def write_sqlite_ledger(path: Path) -> Path:
    led = SQLiteLedger(str(path))
    led.start()
    led.record_many(ledger_rows())
    led.flush()
    led.close()
    return path


def check_ledger_load(report) -> None:
    assert report.format == "ledger" and report.rows == 3 and report.bad_count == 0
    a, b, c = rows(report)
    # prompt_tokens is the uncached part: the traffic table counts every input token.
    assert (a["input_tokens"], a["cached_tokens"], a["cache_write_tokens"], a["output_tokens"]) == (125, 20, 5, 50)
    assert a["cost_usd"] == Decimal("0.000123") and a["cost_estimated"] is False
    assert a["stream"] is True and a["model"] == "gpt-4o-mini" and a["requested_model"] == "fast"
    assert (a["tenant"], a["feature"], a["user_id"], a["task"], a["call_site"]) == ("acme", "search", "u1", "t1",
                                                                                   "app.py:10")
    # From the stored body, through the wire object of the row's surface:
    assert a["request_hash"] == body_fields(OPENAI_CHAT, OPENAI_BODY)["request_hash"] != "x1:gateway-key"
    assert (a["prompt_text"], a["system_text"], a["max_tokens"]) == (
        "Summarize this article: the cat sat on the mat.", "You are terse.", 300)
    assert a["request_type"] == "summarization" and a["prefix_hashes"]
    # No cost recorded, a known model: priced here, and marked as estimated.
    assert b["model"] == "claude-3-5-haiku-latest" and b["lane"] == "deferred"
    assert b["cost_usd"] == price("claude-3-5-haiku-latest", input_tokens=40, output_tokens=2)
    assert b["cost_estimated"] is True and b["max_tokens"] == 64 and b["system_text"] == "You classify tickets."
    assert b["request_hash"] == body_fields(ANTHROPIC_MESSAGES, ANTHROPIC_BODY)["request_hash"]
    # A failed call is not billed: no made-up price. Without a body the gateway's key stays.
    assert c["status"] == 502 and c["error"] == "upstream_error" and c["cost_usd"] is None
    assert c["cost_estimated"] is None and c["request_hash"] == "x1:other" and c["prompt_text"] is None


def test_sqlite_ledger_written_by_the_real_ledger_loads_with_known_values(tmp_path):
    path = write_sqlite_ledger(tmp_path / "ledger.db")
    assert detect(str(path)) == detect(f"sqlite:///{path}") == "ledger"
    check_ledger_load(load(f"sqlite:///{path}"))
    assert load(str(path)).rows == 3


def test_ledger_window_keeps_only_calls_started_inside_it(tmp_path):
    path = write_sqlite_ledger(tmp_path / "ledger.db")
    report = load(str(path), since=T0 + 1, until=T0 + 86_400)
    assert [r["id"] for r in rows(report, "id")] == ["c"]


def test_postgres_ledger_loads_the_same_as_sqlite(url, tmp_path):  # noqa: F811 (fixture)
    from thrifty.ledger.postgres import PostgresLedger

    led = PostgresLedger(url, spool_dir=str(tmp_path / "spool"))
    led.start()
    led.record_many(ledger_rows())
    led.flush()
    led.close()
    assert detect(url) == "ledger"
    check_ledger_load(load(url, chunk_rows=2))  # a chunk smaller than the ledger: more than one fetch


def test_a_database_without_a_ledger_is_refused_with_a_reason(tmp_path):
    import sqlite3

    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE x (y)").connection.commit()
    with pytest.raises(ThriftyError, match="not a Thrifty ledger"):
        load(str(path))


# --- LiteLLM ---------------------------------------------------------------------------------

def litellm_line(**kw) -> dict:
    base = {
        "id": "chatcmpl-1", "call_type": "acompletion", "model": "gpt-4o-mini", "model_group": "fast",
        "custom_llm_provider": "openai", "startTime": T0, "endTime": T0 + 1.5, "status": "success",
        "response_cost": 0.00042, "prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280,
        "messages": [{"role": "user", "content": "Write a haiku about rain"}],
        "response": {"id": "chatcmpl-1", "model": "gpt-4o-mini-2024-07-18", "choices": [],
                     "usage": {"prompt_tokens": 1200, "completion_tokens": 80,
                               "prompt_tokens_details": {"cached_tokens": 1024}}},
        "model_parameters": {"max_tokens": 4000, "stream": True, "temperature": 0.7},
        "metadata": {"user_api_key_team_id": "team-a", "user_api_key_user_id": "alice",
                     "requester_metadata": {"call_site": "poems.py:3"}},
        "request_tags": ["feature:poetry", "cohort:free"], "cache_hit": False, "error_str": None,
    }
    base.update(kw)
    return base


def test_litellm_payloads_load_with_tags_tokens_and_costs(tmp_path):
    path = write_lines(tmp_path / "litellm.jsonl", [
        litellm_line(),
        litellm_line(id="chatcmpl-2", status="failure", response_cost=0, response=None, completion_tokens=0,
                     error_str="RateLimitError: slow down",
                     error_information={"error_code": "429", "error_class": "RateLimitError"}),
        litellm_line(id="chatcmpl-3", response_cost=None, cache_hit=True, request_tags=["summaries"],
                     response=None, messages="Summarize: tea is hot", model_parameters={}),
        litellm_line(id="bad-1", model=None),
        "{not json",
        litellm_line(id="bad-2", startTime="yesterday-ish"),
        litellm_line(id="bad-3", prompt_tokens=-4),
    ])
    assert detect(str(path)) == "litellm"
    report = load(str(path))
    assert report.rows == 3
    assert report.bad_count == 4
    assert [(line, field) for line, field, _ in report.bad] == [
        (4, "model"), (5, "(line)"), (6, "startTime"), (7, "prompt_tokens")]
    one, two, three = rows(report)
    assert (one["tenant"], one["user_id"], one["feature"], one["user_cohort"], one["call_site"]) == (
        "team-a", "alice", "poetry", "free", "poems.py:3")
    assert (one["input_tokens"], one["cached_tokens"], one["output_tokens"]) == (1200, 1024, 80)
    assert one["cost_usd"] == Decimal("0.00042") and one["cost_estimated"] is False
    assert (one["model"], one["requested_model"], one["max_tokens"], one["stream"]) == (
        "gpt-4o-mini-2024-07-18", "fast", 4000, True)
    assert one["status"] == 200 and one["cache"] == "miss" and one["request_type"] == "generation"
    assert one["prompt_text"] == "Write a haiku about rain"
    assert (two["status"], two["error"], two["cost_usd"]) == (429, "RateLimitError", Decimal(0))
    assert three["cache"] == "exact" and three["feature"] == "summaries"
    assert three["prompt_text"] == "Summarize: tea is hot" and three["max_tokens"] is None
    assert three["cost_usd"] == price("gpt-4o-mini", input_tokens=1200, output_tokens=80)
    assert three["cost_estimated"] is True


# --- OpenAI / Anthropic wire-format logs -----------------------------------------------------

def test_wire_logs_of_both_dialects_load_and_the_same_request_hashes_alike(tmp_path):
    openai_resp = {"id": "chatcmpl-9", "object": "chat.completion", "model": "gpt-4o-mini",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "A cat sat."},
                                "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 30, "completion_tokens": 4,
                             "prompt_tokens_details": {"cached_tokens": 0}}}
    anthropic_resp = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
                      "content": [{"type": "text", "text": "A"}], "stop_reason": "end_turn",
                      "usage": {"input_tokens": 10, "cache_read_input_tokens": 2000,
                                "cache_creation_input_tokens": 100, "output_tokens": 1}}
    path = write_lines(tmp_path / "wire.jsonl", [
        {"timestamp": "2023-11-14T22:13:20Z", "request": OPENAI_BODY, "response": openai_resp,
         "tags": {"feature": "digest", "call_site": "digest.py:9"}, "cost_usd": "0.0000069"},
        {"ts": T0 + 60, "request": ANTHROPIC_BODY, "response": anthropic_resp,
         "metadata": {"feature": "triage", "user": "bob"}},
        {"created": T0 + 61, "request": {**OPENAI_BODY, "user": "carol"}, "status": 429,
         "error": {"error": {"type": "rate_limit_error", "message": "slow down"}}},
        {"timestamp": T0, "request": "not an object"},
        {"request": OPENAI_BODY},
    ])
    assert detect(str(path)) == "wire"
    report = load(str(path))
    assert report.rows == 3 and report.bad_count == 2
    assert [(line, field) for line, field, _ in report.bad] == [(4, "request"), (5, "timestamp")]
    first, second, third = rows(report, order="source_line")
    assert first["id"] == "chatcmpl-9" and first["ts"] == T0 and first["feature"] == "digest"
    assert (first["input_tokens"], first["output_tokens"], first["cost_usd"]) == (30, 4, Decimal("0.0000069"))
    assert first["request_hash"] == third["request_hash"]  # `user` does not change the request
    assert first["request_type"] == "summarization" and first["max_tokens"] == 300
    # Anthropic's usage, read by its wire object: every input token, cache reads and writes apart.
    assert (second["input_tokens"], second["cached_tokens"], second["cache_write_tokens"]) == (2110, 2000, 100)
    assert second["model"] == "claude-3-5-haiku-20241022" and second["user_id"] == "bob"
    assert second["system_text"] == "You classify tickets." and second["request_type"] == "classification"
    assert second["cost_usd"] == price("claude-3-5-haiku-20241022", input_tokens=10, cache_read_tokens=2000,
                                       cache_write_5m_tokens=100, output_tokens=1)
    assert second["cost_estimated"] is True
    assert (third["status"], third["error"], third["user_id"], third["cost_usd"]) == (
        429, "rate_limit_error", "carol", None)


def test_a_logged_wire_format_request_hashes_like_the_same_request_in_the_ledger(tmp_path):
    """Exact duplicates across sources: the hash is the request's, not the source's."""
    ledger = load(str(write_sqlite_ledger(tmp_path / "l.db")))
    logs = load(str(write_lines(tmp_path / "w.jsonl", [{"timestamp": T0, "request": OPENAI_BODY}])))
    assert rows(ledger)[0]["request_hash"] == rows(logs)[0]["request_hash"]


# --- token-only traces -----------------------------------------------------------------------

def test_azure_style_csv_loads_and_is_priced_only_with_a_model(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                    "2023-11-16 18:15:46.6805900,374,44\n"
                    "2023-11-16 18:15:50.9951690,396,109\n"
                    "2023-11-16 18:15:51.0000000,lots,3\n"
                    "2023-11-16 18:15:52,10\n"
                    "not a time,1,1\n")
    assert detect(str(path)) == "token-csv"
    report = load(str(path))
    assert report.rows == 2 and report.bad_count == 3 and report.unpriced == 2
    assert [(line, field) for line, field, _ in report.bad] == [(4, "input_tokens"), (5, "(line)"), (6, "timestamp")]
    first, second = rows(report, order="source_line")
    assert first["ts"] == pytest.approx(1700158546.68059) and (first["input_tokens"], first["output_tokens"]) == (374, 44)
    assert first["cost_usd"] is None and first["model"] is None
    priced = rows(load(str(path), model="gpt-4o-mini"), order="source_line")
    assert priced[1]["cost_usd"] == price("gpt-4o-mini", input_tokens=396, output_tokens=109)
    assert priced[1]["cost_estimated"] is True and priced[1]["model"] == "gpt-4o-mini"


def test_a_csv_model_column_wins_over_the_load_option(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("timestamp,input_tokens,output_tokens,model\n1700000000,100,10,gpt-4o\n1700000001,100,10,\n")
    a, b = rows(load(str(path), model="gpt-4o-mini"), order="source_line")
    assert (a["model"], b["model"]) == ("gpt-4o", "gpt-4o-mini")
    assert a["cost_usd"] == price("gpt-4o", input_tokens=100, output_tokens=10)


def test_mooncake_jsonl_keeps_hash_ids_as_prefix_hashes(tmp_path):
    path = write_lines(tmp_path / "mooncake.jsonl", [
        {"timestamp": 0, "input_length": 1000, "output_length": 10, "hash_ids": [0, 1]},
        {"timestamp": 1500, "input_length": 700, "output_length": 5, "hash_ids": [0, 2]},
        {"timestamp": 2000, "input_length": 700, "output_length": 5, "hash_ids": "0,2"},
        {"timestamp": 2500, "output_length": 5},
    ])
    assert detect(str(path)) == "mooncake"
    report = load(str(path), chunk_rows=1)
    assert report.rows == 2 and [(line, field) for line, field, _ in report.bad] == [(3, "hash_ids"),
                                                                                   (4, "input_length")]
    a, b = rows(report, order="source_line")
    assert (a["ts"], b["ts"]) == (0.0, 1.5) and a["prefix_hashes"] == ["0", "1"] and b["prefix_hashes"] == ["0", "2"]


# --- detection and bad input -----------------------------------------------------------------

def test_format_can_be_forced_and_an_unknown_one_is_refused(tmp_path):
    path = write_lines(tmp_path / "x.jsonl", [{"timestamp": 0, "input_tokens": 5, "output_tokens": 1}])
    assert detect(str(path)) == "mooncake"
    assert load(str(path), format="mooncake").rows == 1
    with pytest.raises(ThriftyError, match="unknown format"):
        load(str(path), format="xml")


@pytest.mark.parametrize("content, problem", [("", "empty"), ("hello,world\n1,2\n", "cannot tell"),
                                              ('{"what": 1}\n', "cannot tell")])
def test_undetectable_sources_fail_with_a_reason(tmp_path, content, problem):
    path = tmp_path / "f.txt"
    path.write_text(content)
    with pytest.raises(ThriftyError, match=problem):
        load(str(path))


def test_a_missing_source_fails_with_a_reason(tmp_path):
    with pytest.raises(ThriftyError, match="no such file"):
        load(str(tmp_path / "nope.jsonl"))


def test_only_the_first_bad_records_are_listed_but_all_are_counted(tmp_path):
    from thrifty.analysis.sources.report import MAX_LISTED

    path = write_lines(tmp_path / "m.jsonl", [{"timestamp": 0, "input_length": 1, "output_length": 1}]
                       + ["{oops"] * (MAX_LISTED + 5))
    report = load(str(path))
    assert report.rows == 1 and report.bad_count == MAX_LISTED + 5 and len(report.bad) == MAX_LISTED


def test_progress_reports_reach_the_whole_file(tmp_path):
    path = write_lines(tmp_path / "m.jsonl", [{"timestamp": i, "input_length": 1, "output_length": 1}
                                              for i in range(5)])
    seen = []
    load(str(path), chunk_rows=2, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (path.stat().st_size, path.stat().st_size) and len(seen) >= 3


# --- the shared public traces ----------------------------------------------------------------

def _shared(relative: str) -> Path:
    path = DATA_DIR / relative
    if not path.is_file():
        pytest.skip(f"{path} not found (set THRIFTY_DATA_DIR to the shared data folder)")
    return path


def test_the_shared_azure_and_mooncake_traces_load_without_bad_records():
    azure = _shared("traces/azure_llm_2023/AzureLLMInferenceTrace_code.csv")
    report = load(str(azure))
    lines = sum(1 for _ in azure.open()) - 1
    assert report.format == "token-csv" and report.rows == lines and report.bad_count == 0
    mooncake = _shared("traces/mooncake/conversation_trace.jsonl")
    report = load(str(mooncake))
    assert report.format == "mooncake" and report.bad_count == 0
    assert report.rows == sum(1 for line in mooncake.open() if line.strip())
    assert report.con.execute("SELECT count(*) FROM traffic WHERE prefix_hashes IS NULL").fetchone()[0] == 0


def test_responses_api_logs_are_told_apart_and_a_named_wire_wins(tmp_path):
    request = {"model": "gpt-4o-mini", "input": "Extract the date from: due 3 May", "max_output_tokens": 20}
    response = {"id": "resp_1", "object": "response", "model": "gpt-4o-mini", "output": [],
                "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 4}}
    path = write_lines(tmp_path / "responses.jsonl", [
        {"timestamp": T0, "request": request, "response": response},
        {"timestamp": T0, "wire": "anthropic", "request": ANTHROPIC_BODY},
        {"timestamp": T0, "wire": "telepathy", "request": ANTHROPIC_BODY},
    ])
    report = load(str(path))
    assert report.rows == 2 and [(line, field) for line, field, _ in report.bad] == [(3, "wire")]
    first, second = rows(report, order="source_line")
    assert (first["input_tokens"], first["output_tokens"], first["max_tokens"]) == (12, 4, 20)
    assert first["prompt_text"] == "Extract the date from: due 3 May"
    assert second["system_text"] == "You classify tickets." and second["max_tokens"] == 64


def test_gzipped_logs_are_read_as_they_are(tmp_path):
    import gzip

    path = tmp_path / "litellm.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(litellm_line()) + "\n")
    assert detect(str(path)) == "litellm"
    assert load(str(path)).rows == 1
