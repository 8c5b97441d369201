"""`thrifty eval cache` on a tiny pairs file made here, with the real embedder."""

from __future__ import annotations

import argparse
import json

import pytest

from thrifty.cache.semantic import DecisionPolicy
from thrifty.cli import eval_cache
from thrifty.errors import ThriftyError

POSITIVES = [
    ("How do I reset my password?", "how can i reset my password"),
    ("How long does a refund take?", "how long do refunds take"),
    ("How can I cancel my subscription?", "how do I cancel my subscription"),
    ("What are your support hours?", "what are the support hours"),
    ("Where can I download my invoice?", "where do I download my invoices"),
    ("How do I change my email address?", "how can I change my email address"),
    ("Do you ship to Canada?", "do you deliver to Canada"),
    ("How do I add a team member?", "how can I add a member to my team"),
    ("What payment methods do you accept?", "which payment methods are accepted"),
    ("How do I enable two-factor authentication?", "how to turn on two-factor authentication"),
]
NEGATIVES = [
    ("How do I reset my password?", "How do I delete my account?"),
    ("How long does a refund take?", "How long does shipping take?"),
    ("Where is order 1234?", "Where is order 1235?"),
    ("Is my card blocked?", "Is my card not blocked?"),
    ("What are your support hours?", "What is your refund policy?"),
    ("Do you ship to Canada?", "Do you ship to Japan?"),
    ("How do I add a team member?", "How do I remove a team member?"),
    ("What is the capital of France?", "Write a poem about the sea."),
    ("Can I pay with PayPal?", "Can I get an invoice in PDF?"),
    ("How do I export my data?", "How do I import my data?"),
    ("Upgrade me to 3 seats", "Upgrade me to 5 seats"),
    ("What does the Pro plan cost?", "What does the Team plan include?"),
]


def write_pairs(path, pairs):
    path.write_text("".join(json.dumps({"a": a, "b": b, "label": y}) + "\n" for a, b, y in pairs))
    return path


@pytest.fixture
def pairs_file(tmp_path):
    rows = [(a, b, 1) for a, b in POSITIVES] + [(a, b, 0) for a, b in NEGATIVES]
    return write_pairs(tmp_path / "pairs.jsonl", rows)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="thrifty")
    sub = parser.add_subparsers(dest="command", required=True)
    eval_cache.add_parser(sub)
    args = parser.parse_args(argv)
    return args.run(args)


def test_eval_cache_reports_json(embedder, pairs_file, tmp_path, capsys):
    saved = tmp_path / "policy.json"
    code = cli(["eval", "cache", "--pairs", str(pairs_file), "--target-false-hit", "0.25",
                "--confidence", "0", "--folds", "3", "--latency-samples", "5", "--save", str(saved), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["pairs"], report["positives"], report["negatives"]) == (22, 10, 12)
    assert report["auc"] > 0.8
    for key in ("precision", "recall", "false_hit_rate"):
        assert report[key] is None or 0.0 <= report[key] <= 1.0
    op = report["operating_point"]
    assert op["target_false_hit"] == 0.25 and op["confidence"] is None and op["negatives"] == 12
    assert report["lookup_latency_ms"]["lookups"] == 5 and report["lookup_latency_ms"]["p50"] > 0
    assert "out-of-fold" in report["method"]
    policy = DecisionPolicy.from_dict(json.loads(saved.read_text()))
    assert policy.threshold("any") == pytest.approx(op["threshold"])


def test_eval_cache_with_a_separate_calibration_file_prints_text(embedder, pairs_file, capsys):
    code = cli(["eval", "cache", "--pairs", str(pairs_file), "--calibrate", str(pairs_file),
                "--target-false-hit", "0.25", "--confidence", "0", "--latency-samples", "0"])
    assert code == 0
    out = capsys.readouterr().out
    for word in ("precision", "recall", "false-hit rate", "AUC", "operating pt", "serve when cosine >"):
        assert word in out
    assert "lookup" not in out.split("operating pt")[1]


def test_eval_cache_refuses_bad_input(tmp_path, pairs_file):
    with pytest.raises(ThriftyError, match="cannot read pairs file"):
        cli(["eval", "cache", "--pairs", str(tmp_path / "missing.jsonl")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": "x", "b": "y", "label": 2}\n')
    with pytest.raises(ThriftyError, match=r"bad.jsonl:1: label must be 0 or 1"):
        cli(["eval", "cache", "--pairs", str(bad)])
    bad.write_text('{"a": "x", "b": "y", "label": 1}\nnot json\n')
    with pytest.raises(ThriftyError, match=r"bad.jsonl:2: not JSON"):
        cli(["eval", "cache", "--pairs", str(bad)])
    with pytest.raises(ThriftyError, match="target-false-hit"):
        cli(["eval", "cache", "--pairs", str(pairs_file), "--target-false-hit", "1.5"])


def test_eval_cache_says_when_there_are_too_few_negatives(embedder, pairs_file):
    with pytest.raises(ThriftyError, match="cannot calibrate: need at least 230 negative pairs"):
        cli(["eval", "cache", "--pairs", str(pairs_file), "--latency-samples", "0"])


def test_eval_group_is_shared_by_its_sub_commands():
    parser = argparse.ArgumentParser(prog="thrifty")
    sub = parser.add_subparsers(dest="command")
    eval_cache.add_parser(sub)
    table = eval_cache.eval_subparsers(sub)
    table.add_parser("router").set_defaults(run=lambda args: 7)
    assert set(table.choices) == {"cache", "router"}
    args = parser.parse_args(["eval", "router"])
    assert args.run(args) == 7
    with pytest.raises(SystemExit):
        parser.parse_args(["eval"])  # a sub-command is required


def test_eval_cache_json_has_no_nan_when_nothing_is_served(embedder, tmp_path, capsys):
    # Negatives only: recall and (with no hits) precision are undefined, and must print as null.
    rows = [(a, b, 0) for a, b in NEGATIVES]
    path = write_pairs(tmp_path / "neg.jsonl", rows)
    assert cli(["eval", "cache", "--pairs", str(path), "--calibrate", str(path), "--target-false-hit", "0.09",
                "--confidence", "0", "--latency-samples", "0", "--json"]) == 0
    text = capsys.readouterr().out
    assert "NaN" not in text
    report = json.loads(text)
    assert report["recall"] is None and report["positives"] == 0
