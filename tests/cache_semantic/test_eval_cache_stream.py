"""`thrifty eval cache --stream`: policy vs static cosine on a small constructed FAQ stream, with
the real embedder (skipped when its packages are missing)."""

from __future__ import annotations

import json

import pytest

from tests.cache_semantic.test_eval_cache_cli import NEGATIVES, POSITIVES, cli
from thrifty.errors import ThriftyError


def write_stream(path, rows):
    path.write_text("".join(json.dumps({"text": t, "answer": a}) + "\n" for t, a in rows))
    return path


@pytest.fixture
def streams(tmp_path):
    # Each positive pair is one intent (two phrasings); each negative's second text an answer of its own.
    calibrate = [(t, f"i{k}") for k, pair in enumerate(POSITIVES[:5]) for t in pair] + \
        [(b, None) for _, b in NEGATIVES[:6]]
    test = [(t, f"i{k}") for k, pair in enumerate(POSITIVES[5:], start=5) for t in pair] + \
        [(b, None) for _, b in NEGATIVES[6:]]
    return write_stream(tmp_path / "cal.jsonl", calibrate), write_stream(tmp_path / "test.jsonl", test)


def test_stream_reports_policy_and_both_static_baselines_and_saves_a_vote_policy(embedder, streams, tmp_path, capsys):
    cal, test = streams
    saved = tmp_path / "vote.json"
    assert cli(["eval", "cache", "--stream", str(test), "--calibrate", str(cal), "--target-false-hit", "0.2",
                "--confidence", "0", "--orders", "2", "--save", str(saved), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["lookups"] == 16 and r["orders"] == 2
    for name in ("static_cosine", "static_cosine_best", "policy"):
        x = r[name]
        assert x["lookups"] == 32 and 0 <= x["wrong"] <= x["served"]
        # 5 intents x 2 phrasings x 2 orders: only the second phrasing can find its answer cached.
        assert x["possible"] == 2 * 5
        assert x["false_hit_rate"] == pytest.approx(x["wrong"] / x["served"] if x["served"] else 0.0)
    assert r["static_cosine_best"]["false_hit_rate"] <= 0.2
    assert r["policy"]["calibration"]["false_hit_rate"] <= 0.2
    policy = json.loads(saved.read_text())
    assert policy["vote"]["k"] >= 1 and policy["default"]["threshold"] == r["policy"]["threshold"]
    # The saved policy scores the stream as it is.
    assert cli(["eval", "cache", "--stream", str(test), "--policy", str(saved), "--orders", "2"]) == 0
    out = capsys.readouterr().out
    assert "as it is (nothing fitted)" in out and "recall" in out


def test_stream_needs_a_calibration_stream_and_valid_rows(streams, tmp_path):
    cal, test = streams
    with pytest.raises(ThriftyError, match="--calibrate"):
        cli(["eval", "cache", "--stream", str(test)])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": 3}\n')
    with pytest.raises(ThriftyError, match="expected"):
        cli(["eval", "cache", "--stream", str(bad), "--calibrate", str(cal)])
    with pytest.raises(ThriftyError, match="--explore"):
        cli(["eval", "cache", "--stream", str(test), "--calibrate", str(cal), "--explore", "1"])


def test_stream_scores_the_default_the_old_default_and_free_form_traffic(embedder, streams, capsys):
    from thrifty.cache.semantic.decision import DEFAULT_VOTE_POINT, GENERAL_OPERATING_POINT

    _, test = streams
    reports = {}
    for name, flags in (("default", ["--default"]), ("general", ["--general"]),
                        ("free", ["--default", "--free-form"]), ("free_general", ["--general", "--free-form"])):
        assert cli(["eval", "cache", "--stream", str(test), *flags, "--orders", "2", "--json"]) == 0
        reports[name] = json.loads(capsys.readouterr().out)
    default, general = reports["default"]["policy"], reports["general"]["policy"]
    assert default["vote"] is not None and default["threshold"] == DEFAULT_VOTE_POINT["threshold"]
    assert default["nearest_threshold"] == GENERAL_OPERATING_POINT["threshold"]
    assert general["vote"] is None and general["threshold"] == GENERAL_OPERATING_POINT["threshold"]
    assert reports["free"]["free_form"] and not reports["default"]["free_form"]
    # Free-form answers never repeat: the default decides as the general cosine point does.
    counts = ("served", "wrong", "possible")
    assert [reports["free"]["policy"][k] for k in counts] == [reports["free_general"]["policy"][k] for k in counts]
    with pytest.raises(ThriftyError, match="--free-form"):
        cli(["eval", "cache", "--pairs", str(test), "--default", "--free-form"])
