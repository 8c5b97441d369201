"""`thrifty eval cache` options of issue 14: --policy, --default, the static-cosine baseline, the
progress bar, and the batch embedder behind them (order, duplicates, same vectors as one by one)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from tests.cache_semantic.test_eval_cache_cli import NEGATIVES, POSITIVES, cli, write_pairs
from thrifty.cache.semantic.decision import GENERAL_OPERATING_POINT
from thrifty.cli import eval_cache
from thrifty.errors import ThriftyError


@pytest.fixture
def pairs_file(tmp_path):
    rows = [(a, b, 1) for a, b in POSITIVES] + [(a, b, 0) for a, b in NEGATIVES]
    return write_pairs(tmp_path / "pairs.jsonl", rows)


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_a_saved_policy_scores_the_same_as_when_it_was_fitted(embedder, pairs_file, tmp_path, capsys):
    saved = tmp_path / "policy.json"
    assert cli(["eval", "cache", "--pairs", str(pairs_file), "--calibrate", str(pairs_file),
                "--target-false-hit", "0.25", "--confidence", "0", "--latency-samples", "0",
                "--save", str(saved), "--json"]) == 0
    fitted = _json(capsys)
    assert json.loads(saved.read_text())["verifier"] is not None  # the file says the guard was on
    assert cli(["eval", "cache", "--pairs", str(pairs_file), "--policy", str(saved),
                "--latency-samples", "0", "--json"]) == 0
    scored = _json(capsys)
    assert scored["method"].startswith(f"saved policy {saved}")
    assert scored["operating_point"]["threshold"] == pytest.approx(fitted["operating_point"]["threshold"])
    for key in ("hits", "false_hits", "precision", "recall"):
        assert scored[key] == fitted[key]


def test_the_default_policy_is_scored_without_fitting(embedder, pairs_file, capsys):
    assert cli(["eval", "cache", "--pairs", str(pairs_file), "--default", "--latency-samples", "0",
                "--json", "--threads", "1"]) == 0
    report = _json(capsys)
    assert report["method"].startswith("shipped default policy")
    assert report["operating_point"]["threshold"] == GENERAL_OPERATING_POINT["threshold"]
    assert report["embedding"]["texts"] == len({t for pair in POSITIVES + NEGATIVES for t in pair})
    static = report["static_cosine"]
    # 12 negatives, target 1%: no negative may pass, so the cut is the highest negative's cosine.
    assert static["false_hit_rate"] == 0.0 and 0.0 <= static["recall"] <= 1.0


def test_static_cosine_is_the_best_single_cut_within_the_target():
    negatives = [0.95, 0.90] + [0.1] * 198  # 200 negatives, 1% may pass: two
    positives = [0.97, 0.93, 0.92, 0.85, 0.5]
    sims = np.array(negatives + positives)
    labels = np.array([0] * 200 + [1] * 5)
    static = eval_cache.static_cosine(sims, labels, 0.01)
    # allowed 2 -> cut at the third-highest negative (0.1): 0.95 and 0.90 pass (2/200 = 1%)
    assert static == {"threshold": 0.1, "recall": 1.0, "false_hit_rate": 0.01}
    static = eval_cache.static_cosine(sims, labels, 0.005)  # one may pass: cut at 0.90
    assert static["threshold"] == 0.9 and static["recall"] == 0.6 and static["false_hit_rate"] == 0.005


def test_fixed_policies_refuse_what_they_cannot_do(tmp_path, pairs_file):
    with pytest.raises(SystemExit):  # argparse: not allowed with --calibrate
        cli(["eval", "cache", "--pairs", str(pairs_file), "--default", "--calibrate", str(pairs_file)])
    with pytest.raises(ThriftyError, match="--save writes a fitted policy"):
        cli(["eval", "cache", "--pairs", str(pairs_file), "--default", "--save", str(tmp_path / "p.json")])
    with pytest.raises(ThriftyError, match="cannot read policy file"):
        cli(["eval", "cache", "--pairs", str(pairs_file), "--policy", str(tmp_path / "missing.json")])
    bad = tmp_path / "bad.json"
    bad.write_text('{"threshold": 0.9}')
    with pytest.raises(ThriftyError, match="not a saved policy"):
        cli(["eval", "cache", "--pairs", str(pairs_file), "--policy", str(bad)])
    with pytest.raises(ThriftyError, match="--threads"):
        cli(["eval", "cache", "--pairs", str(pairs_file), "--threads", "0"])


def test_progress_bar_draws_and_ends_the_line(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    bar = eval_cache._Progress()
    bar(5, 10)
    bar(10, 10)
    text = err.getvalue()
    assert "embedding [" in text and "10/10" in text and "/s)" in text and text.endswith("\n")


def test_embed_batch_keeps_order_embeds_duplicates_once_and_matches_single_embeds(embedder):
    texts = ["short", "a much longer sentence about refunds, invoices and the shipping of parcels",
             "short", "medium length question?", ""] + [f"sentence number {i}" for i in range(70)]
    calls = []
    vectors = embedder.embed_batch(texts, batch_size=16, progress=lambda done, total: calls.append((done, total)))
    assert vectors.shape == (len(texts), 384)
    assert np.array_equal(vectors[0], vectors[2])
    distinct = len(set(texts))
    assert calls[-1] == (distinct, distinct) and len(calls) >= distinct // 16
    for i in (0, 1, 3, 4, 40):
        assert float(vectors[i] @ embedder.embed(texts[i])) > 0.9999
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_cache_pairs_from_the_shared_data_are_disjoint_and_balanced():
    import importlib.util

    from tests.conftest import DATA_DIR, REPO

    if not (DATA_DIR / "prompts" / "clinc150").is_dir() or not (DATA_DIR / "pairs").is_dir():
        pytest.skip(f"shared data not found under {DATA_DIR} (set THRIFTY_DATA_DIR to the shared data folder)")
    spec = importlib.util.spec_from_file_location("cache_pairs", REPO / "bench" / "cache_pairs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first = module.clinc150(DATA_DIR, "test", 200)
    assert first == module.clinc150(DATA_DIR, "test", 200)  # fixed seed: the same pairs every run
    calibration = module.clinc150(DATA_DIR, "train", 200)
    texts = {t for a, b, _ in calibration for t in (a, b)}
    assert not texts & {t for a, b, _ in first for t in (a, b)}
    assert sum(y for *_, y in first) == 100 and len(first) == 200
    banking = module.banking77(DATA_DIR, "test", 100)
    assert sum(y for *_, y in banking) == 50 and all(a != b for a, b, _ in banking)
