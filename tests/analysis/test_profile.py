"""The aggregates of `thrifty analyze` on constructed tables with answers known by hand."""

from __future__ import annotations

from decimal import Decimal

from thrifty.analysis import profile
from thrifty.pricing import PriceBook

from tests.analysis.traffic_rows import traffic

BOOK = PriceBook()


def test_spend_by_dimension_is_sorted_by_usd_and_keeps_untagged_calls():
    con = traffic([
        {"feature": "search", "model": "gpt-4o", "cost_usd": "0.30"},
        {"feature": "search", "model": "gpt-4o-mini", "cost_usd": "0.02"},
        {"feature": "chat", "model": "gpt-4o", "cost_usd": "0.50"},
        {"feature": None, "model": "gpt-4o", "cost_usd": "0.01"},
        {"feature": "chat", "model": "gpt-4o"},  # unknown cost: a call, but no dollars
    ])
    by_feature = profile.by_dimension(con, "traffic", "feature")
    assert by_feature == [
        {"key": "chat", "calls": 2, "usd": Decimal("0.50")},
        {"key": "search", "calls": 2, "usd": Decimal("0.32")},
        {"key": None, "calls": 1, "usd": Decimal("0.01")},
    ]
    t = profile.totals(con, "traffic")
    assert (t["calls"], t["spend_usd"], t["calls_without_cost"]) == (5, Decimal("0.83"), 1)


def test_input_token_histogram_uses_power_of_two_buckets_with_gaps_filled():
    con = traffic([{"input_tokens": n} for n in (0, 1, 2, 3, 4, 7, 8, 1000, 1023, 1024)] + [{}])
    hist = profile.input_tokens_histogram(con, "traffic")
    as_tuples = [(b["lo"], b["hi"], b["calls"]) for b in hist]
    assert as_tuples == [
        (0, 1, 1), (1, 2, 1), (2, 4, 2), (4, 8, 2), (8, 16, 1), (16, 32, 0), (32, 64, 0), (64, 128, 0),
        (128, 256, 0), (256, 512, 0), (512, 1024, 2), (1024, 2048, 1),
    ]


def test_input_output_share_prices_tokens_apart_and_says_it_is_estimated():
    card = BOOK.card("gpt-4o")
    con = traffic([
        {"model": "gpt-4o", "input_tokens": 3000, "cached_tokens": 1000, "output_tokens": 500, "cost_usd": "0.02"},
        {"model": "gpt-4o", "input_tokens": 1000, "cached_tokens": 0, "output_tokens": 500, "cost_usd": "0.01"},
        {"model": "no-such-model-anywhere", "input_tokens": 10, "output_tokens": 10, "cost_usd": "1"},
    ])
    share = profile.input_output_share(con, "traffic", profile.price_cards(con, "traffic", BOOK))
    list_in = 3000 * card.input + 1000 * card.cache_read
    list_out = 1000 * card.output
    expected_in = Decimal("0.03") * list_in / (list_in + list_out)
    assert share["input_usd"] == expected_in
    assert share["input_usd"] + share["output_usd"] == Decimal("0.03")
    assert share["estimated"] is True
    assert share["models_left_out"] == ["no-such-model-anywhere"]


def test_top_shapes_group_call_site_system_prompt_and_model_with_their_share():
    con = traffic([
        {"call_site": "a.py:1", "system_text": "S1", "model": "m", "cost_usd": "3"},
        {"call_site": "a.py:1", "system_text": "S1", "model": "m", "cost_usd": "3"},
        {"call_site": "a.py:1", "system_text": "S2", "model": "m", "cost_usd": "1"},
        {"call_site": "b.py:9", "system_text": "S1", "model": "m", "cost_usd": "3"},
    ])
    shapes = profile.top_shapes(con, "traffic")
    assert [(s["call_site"], s["calls"], s["usd"], s["share"]) for s in shapes] == [
        ("a.py:1", 2, Decimal(6), 0.6), ("b.py:9", 1, Decimal(3), 0.3), ("a.py:1", 1, Decimal(1), 0.1)]
    assert shapes[0]["system_hash"] == shapes[1]["system_hash"] != shapes[2]["system_hash"]
    assert shapes[0]["system_preview"] == "S1"


def test_tasks_sum_tokens_and_cost_per_task():
    con = traffic([
        {"task": "t1", "input_tokens": 100, "output_tokens": 10, "cost_usd": "0.1"},
        {"task": "t1", "input_tokens": 200, "output_tokens": 20, "cost_usd": "0.2"},
        {"task": "t2", "input_tokens": 50, "output_tokens": 5, "cost_usd": "0.9"},
        {"input_tokens": 1, "output_tokens": 1, "cost_usd": "5"},
    ])
    tasks = profile.tasks(con, "traffic")
    assert tasks["count"] == 2 and tasks["usd"] == Decimal("1.2") and tasks["usd_per_task"] == Decimal("0.6")
    assert tasks["top"] == [
        {"key": "t2", "calls": 1, "input_tokens": 50, "output_tokens": 5, "usd": Decimal("0.9")},
        {"key": "t1", "calls": 2, "input_tokens": 300, "output_tokens": 30, "usd": Decimal("0.3")},
    ]
    assert profile.tasks(traffic([{"cost_usd": "1"}]), "traffic")["available"] is False


def test_window_keeps_calls_in_since_until():
    con = traffic([{"ts": t, "cost_usd": "1"} for t in (10.0, 20.0, 30.0)])
    rel = profile.window(con, since=20.0, until=30.0)
    assert profile.totals(con, rel)["calls"] == 1
    assert profile.window(con) == "traffic"


# ---------------------------------------------------------------- the command, end to end


def _wire_line(ts: float, question: str, *, status: int = 200) -> str:
    import json

    request = {"model": "gpt-4o-mini", "max_tokens": 2048,
               "messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": question}]}
    response = {"id": f"c{ts}", "object": "chat.completion", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}}
    return json.dumps({"timestamp": ts, "request": request, "response": response, "status": status,
                       "tags": {"feature": "faq"}})


def test_analyze_json_has_the_contract_keys_and_money_as_decimal_strings(tmp_path, capsys):
    import json

    from thrifty.cli.main import main

    log = tmp_path / "calls.jsonl"
    lines = [_wire_line(1_700_000_000 + i, "What are your opening hours?") for i in range(3)]
    lines += [_wire_line(1_700_000_010, "Where are you?"), "{not json"]
    log.write_text("\n".join(lines) + "\n")
    html = tmp_path / "report.html"
    assert main(["analyze", str(log), "--json", "--near-sample", "0", "--html", str(html)]) == 0
    out = json.loads(capsys.readouterr().out)

    for key in ("calls", "spend_usd", "by", "input_tokens_histogram", "input_output_share", "top_shapes",
                "tasks", "waste", "source"):
        assert key in out, key
    assert set(out["by"]) == {"feature", "model", "tenant", "call_site", "request_type", "user_cohort"}
    assert set(out["waste"]) == {"exact_duplicates", "near_duplicates", "retry_storms", "oversized_max_tokens",
                                 "uncached_prefixes", "streams_to_buffer", "unread_generations"}
    for finding in out["waste"].values():
        assert isinstance(finding["calls"], int) and isinstance(finding["usd"], str)
        Decimal(finding["usd"])
    assert out["calls"] == 4
    assert out["by"]["feature"][0]["key"] == "faq"
    assert isinstance(out["spend_usd"], str) and Decimal(out["spend_usd"]) > 0
    assert out["waste"]["exact_duplicates"]["calls"] == 2
    one_call = Decimal(out["spend_usd"]) / 4  # four calls of identical usage
    assert Decimal(out["waste"]["exact_duplicates"]["usd"]) == 2 * one_call
    assert out["waste"]["oversized_max_tokens"]["calls"] == 4
    assert out["source"]["format"] == "wire" and out["source"]["rows"] == 4
    assert out["source"]["bad_total"] == 1 and out["source"]["bad"][0]["line"] == 5
    assert html.read_text().startswith("<!DOCTYPE html>")


def test_analyze_fails_with_a_one_line_reason_on_bad_input(tmp_path, capsys):
    from thrifty.cli.main import main

    assert main(["analyze", str(tmp_path / "missing.jsonl")]) != 0
    assert main(["analyze", str(tmp_path), "--since", "last tuesday"]) != 0
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("thrifty: ") for line in errors)


def test_analyze_prints_a_readable_summary_without_json(tmp_path, capsys):
    from thrifty.cli.main import main

    log = tmp_path / "calls.jsonl"
    log.write_text("\n".join(_wire_line(1_700_000_000 + i, "Same question?") for i in range(3)) + "\n")
    assert main(["analyze", str(log), "--near-sample", "0"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"{log} (wire): 3 calls, $")
    dup = next(line for line in out.splitlines() if "Identical requests answered again" in line)
    assert " 2 calls " in dup
    near = next(line for line in out.splitlines() if "Near-identical prompts" in line)
    assert "n/a: turned off" in near
