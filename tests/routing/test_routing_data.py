"""The router on the shared RouterBench subset and RouterArena data (skipped without them):
the converters' output, replayed through the hand-written configs they write."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import DATA_DIR, REPO
from thrifty.routing.eval import evaluate, load_setup, read_rows

ROUTING_DIR = DATA_DIR / "routing"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    if not (ROUTING_DIR / "routerbench_subset").is_dir() or not (ROUTING_DIR / "routerarena").is_dir():
        pytest.skip(f"routing data not found under {ROUTING_DIR} (set THRIFTY_DATA_DIR to the shared data folder)")
    spec = importlib.util.spec_from_file_location("routing_data", REPO / "bench" / "routing_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("routing")
    assert module.main(["--out", str(out), "--data-dir", str(ROUTING_DIR)]) == 0
    return out


def test_converted_rows_follow_the_outcomes_format(converted):
    for name in ("routerbench_train", "routerbench_test", "routerarena_train", "routerarena_test"):
        first = json.loads((converted / f"{name}.jsonl").read_text().splitlines()[0])
        assert isinstance(first["prompt"], str) and first["cohort"]
        for outcome in first["outcomes"].values():
            assert isinstance(outcome["score"], float) and outcome["cost_usd"] >= 0
    train = {json.loads(line)["id"] for line in (converted / "routerarena_train.jsonl").read_text().splitlines()}
    test = {json.loads(line)["id"] for line in (converted / "routerarena_test.jsonl").read_text().splitlines()}
    assert train and test and not train & test


def test_routerbench_test_split_meets_the_issue_targets(converted):
    report = evaluate(read_rows(str(converted / "routerbench_test.jsonl")),
                      load_setup(str(converted / "routerbench.yaml")))
    assert report["strong"] == "gpt-4-1106-preview"
    m = report["methods"]["rules+cascade"]
    assert m["quality_vs_strong"] >= 0.95 and m["cost_vs_strong"] <= 0.40, m
    assert m["beats"] == {"random": True, "longer_prompt": True}
    assert all(c["beats_random"] and c["beats_longer_prompt"] for c in m["cohorts"].values())
    assert m["apgr"] > report["methods"]["random"]["apgr"] and m["apgr"] > report["methods"]["longer_prompt"]["apgr"]


def test_routerarena_has_no_cost_quality_tradeoff_to_recover(converted):
    report = evaluate(read_rows(str(converted / "routerarena_test.jsonl")),
                      load_setup(str(converted / "routerarena.yaml")))
    # gemini-2.0-flash is both the best and the cheapest of the two: APGR/CPT are undefined, and
    # the comparison is at matched cost.
    assert report["strong"] == "gemini-2.0-flash-001" and report["anchors"]["tradeoff"] is False
    assert report["methods"]["rules+cascade"]["apgr"] is None
    assert report["methods"]["rules+cascade"]["quality_vs_strong"] >= 1.0
