"""bench/e2e.py in miniature: constructed shared data, the real emulator and gateway, the JSON
contract of `--json`, and that its figures add up (ledger = invoice, levers = baseline - actual,
cohorts = totals). The machinery is `thrifty.cli.proof` (bench/e2e.py is its command line).
Not a speed test; the full run is `python bench/e2e.py`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from thrifty.cli.proof import mix as e2e_mix
from thrifty.cli.proof import run as e2e

REPO = Path(__file__).resolve().parents[2]

RECORDED = list(dict.fromkeys(e2e_mix.MODELS.values()))
INTENTS = {"card_arrival": ["Where is my new card?", "My card has not arrived yet.", "When will my card come?"],
           "lost_card": ["I lost my card.", "Help, my card is gone.", "I can't find my card anywhere."],
           "exchange_rate": ["What exchange rate do you use?", "How are currencies converted?",
                             "Which rate applies abroad?"]}


def _routerbench(path: Path, prompts: list[str], cheap_right: set[int] = frozenset()) -> None:
    """RouterBench's CSV shape: the frontier scores 1, the cheaper models 0 with other answers
    (1 on the rows in `cheap_right`)."""
    cols = ["", "sample_id", "prompt", "eval_name", *RECORDED, *(f"{m}|total_cost" for m in RECORDED),
            *(f"{m}|model_response" for m in RECORDED)]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i, p in enumerate(prompts):
            scores = [1.0 if m == e2e_mix.MODELS[e2e_mix.FRONTIER] or i in cheap_right else 0.0 for m in RECORDED]
            answers = [repr([f"Answer {'A' if s else 'B'} for item {i}"]) for s in scores]
            w.writerow([i, f"{path.stem}.{i}", repr([p]), path.stem, *scores, *([0.001] * len(RECORDED)), *answers])


def make_data(root: Path) -> Path:
    (root / "prompts/banking77").mkdir(parents=True)
    with (root / "prompts/banking77/test.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "category"])
        for intent, texts in INTENTS.items():
            w.writerows([t, intent] for t in texts)
    (root / "prompts/headlines").mkdir(parents=True)
    (root / "prompts/headlines/HEADLINES_prefix_e8.txt").write_text(
        "Please determine the price direction (up, down, neutral, or none) in the following news headlines.\n")
    with (root / "prompts/headlines/HEADLINES_test.csv").open("w", newline="") as f:
        csv.writer(f).writerows([f"Q: gold moves {i} points\nA:", ("up", "down")[i % 2], i] for i in range(10))
    (root / "prompts/gsm8k").mkdir(parents=True)
    (root / "prompts/gsm8k/test.jsonl").write_text("".join(
        json.dumps({"question": f"Ann has {i} apples and buys 3 more. How many apples does she have?",
                    "answer": f"{i} + 3 = {i + 3}\n#### {i + 3}"}) + "\n" for i in range(5)))
    (root / "prompts/clinc150").mkdir(parents=True)
    (root / "prompts/clinc150/data_full.json").write_text(json.dumps(
        {"test": [[f"please book a table for {i} people", "restaurant_reservation"] for i in range(10)]}))
    rb = root / "routing/routerbench_subset"
    rb.mkdir(parents=True)
    _routerbench(rb / "arc_challenge_test.csv",
                 [f"Which gas do plants take in? ({i})\nA. oxygen\nB. carbon dioxide\nC. helium\nD. neon\nAnswer:"
                  for i in range(5)])
    _routerbench(rb / "mbpp_test.csv", [f"Write a python function to add {i} to a number." for i in range(5)])
    _routerbench(rb / "winograde_test.csv",
                 [f"The trophy did not fit the suitcase because it was too big ({i}). Option 1: trophy. "
                  "Option 2: suitcase. Answer:" for i in range(5)])
    return root


def test_scores_against_the_labels():
    faq = e2e_mix.Item("faq", [{"role": "user", "content": "x"}], label="Card_arrival")
    assert e2e_mix.score(faq, e2e_mix.faq_answer("Card_arrival"), "gpt-4o") == 1.0
    assert e2e_mix.score(faq, e2e_mix.faq_answer("lost_card"), "gpt-4o") == 0.0  # a false semantic hit
    math = e2e_mix.Item("gsm8k", [{"role": "user", "content": "x"}], label="1200")
    assert e2e_mix.score(math, e2e_mix.gsm8k_answer("1,200"), "gpt-4o") == 1.0
    assert e2e_mix.score(math, "about a thousand", "gpt-4o-mini") == 0.0
    rb = e2e_mix.Item("mbpp", [{"role": "user", "content": "x"}], label={"gpt-4-1106-preview": 1.0, "gpt-3.5-turbo-1106": 0.0},
                      answers={"gpt-4-1106-preview": "good", "gpt-3.5-turbo-1106": "bad"})
    assert e2e_mix.score(rb, "bad", "gpt-4o") == 0.0  # the text served decides, not the header
    assert e2e_mix.score(rb, "good", "gpt-4o-mini") == 1.0
    assert e2e_mix.score(rb, "truncated go", "gpt-4o") == 1.0  # else the served model's own score
    assert e2e_mix.score(rb, None, "gpt-4o") == 0.0


def test_mix_follows_the_shares(tmp_path):
    items, outcomes = e2e_mix.build_mix(20, root=make_data(tmp_path))
    counts = {c: sum(i.cohort == c for i in items) for c in e2e_mix.SHARES}
    # 20 x the shares, rounded down, the largest share (faq) taking the remainder.
    assert counts == {"faq": 7, "headlines": 4, "gsm8k": 1, "arc-challenge": 2, "mbpp": 1, "winogrande": 2,
                      "enrichment": 3}
    assert all(i.defer == (i.cohort == "enrichment") for i in items)
    assert len(outcomes) == 20 - counts["enrichment"]  # every other call has recorded answers
    smaller, _ = e2e_mix.build_mix(40, root=tmp_path)
    assert sum(i.cohort == "faq" for i in smaller) == 9  # a pool smaller than its share gives what it has


def test_missing_data_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "bench/e2e.py"), "--n", "30"], capture_output=True, text=True,
                          env={"THRIFTY_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("e2e: shared data not found under") and proc.stderr.count("\n") == 1


def test_bad_policy_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "bench/e2e.py"), "--policy", str(tmp_path / "none.json")],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("e2e: --policy") and proc.stderr.count("\n") == 1


def _run_e2e(tmp: Path, data: Path, *extra: str) -> dict:
    out = tmp / "e2e.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench/e2e.py"), "--n", "30", "--json", "--out", str(out),
                           "--workdir", str(tmp / "work"), "--concurrency", "4", *extra],
                          capture_output=True, text=True, timeout=240,
                          env={**__import__("os").environ, "THRIFTY_DATA_DIR": str(data)})
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    printed = json.loads(proc.stdout)
    assert printed == json.loads(out.read_text())
    return printed


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    return _run_e2e(tmp, make_data(tmp / "data"), "--rules-only")


def test_learned_run_serves_its_policy(tmp_path):
    """`--learned`: trained on the train side, served on the `learned` rule, the figures still add up."""
    report = _run_e2e(tmp_path, make_train_data(make_data(tmp_path / "data")), "--learned")
    assert report["policy"]["trained"] and report["policy"]["rows"] == 24 and report["policy"]["target"] == 0.99
    config = __import__("yaml").safe_load((tmp_path / "work/thrifty.yaml").read_text())
    rule = next(r for r in config["routing"]["rules"] if r["name"] == "learned")
    assert rule["policy"] == str(tmp_path / "work/policy.json") and rule["tier"] == "heavy"
    assert rule["when"]["feature"] == ["arc-challenge", "mbpp", "winogrande"]
    assert report["failed"] == {"baseline": 0, "thrifty": 0}
    assert_figures_add_up(report)


def test_json_contract(report):
    assert set(report["baseline"]) == {"usd", "quality"} and set(report["thrifty"]) == {"usd", "quality"}
    assert set(report["cohorts"]) == set(e2e_mix.SHARES)
    for c in report["cohorts"].values():
        assert {"baseline_quality", "thrifty_quality", "baseline_usd", "thrifty_usd"} <= set(c)
        assert 0 <= c["thrifty_quality"] <= 100
    assert all(isinstance(v, float) for v in report["levers"].values())
    assert report["failed"] == {"baseline": 0, "thrifty": 0}


def test_baseline_quality_is_the_frontiers(report):
    """Every constructed label is the frontier model's answer, so sent direct it scores 100."""
    assert report["baseline"]["quality"] == 100.0
    assert all(c["baseline_quality"] == 100.0 for c in report["cohorts"].values())
    assert report["cohorts"]["enrichment"]["thrifty_quality"] == 100.0  # every deferred call answered


def test_figures_add_up(report):
    assert report["policy"] is None  # rules only unless asked
    assert_figures_add_up(report)


def assert_figures_add_up(report):
    rec = {k: Decimal(v) for k, v in report["reconcile"].items() if k.endswith("_usd")}
    assert rec["ledger_usd"] == rec["thrifty_invoice_usd"] > 0  # the ledger is the provider's bill
    assert rec["baseline_invoice_usd"] == rec["baseline_priced_calls_usd"] > 0
    assert rec["levers_sum_usd"] == rec["ledger_saved_usd"] == rec["ledger_baseline_usd"] - rec["ledger_usd"]
    cohorts = report["cohorts"].values()
    assert sum(c["baseline_usd"] for c in cohorts) == pytest.approx(report["baseline"]["usd"], rel=1e-9)
    assert sum(c["thrifty_usd"] for c in cohorts) == pytest.approx(report["thrifty"]["usd"], rel=1e-9)
    assert sum(report["levers"].values()) == pytest.approx(float(rec["ledger_saved_usd"]), rel=1e-9)
    assert report["saving"] == pytest.approx(1 - report["thrifty"]["usd"] / report["baseline"]["usd"], abs=1e-4)
    quality = sum(c["thrifty_quality"] * c["calls"] for c in cohorts) / report["calls"]
    assert report["thrifty"]["quality"] == pytest.approx(quality, abs=0.01)


def _wino(i: int) -> str:
    """Winogrande's shape in RouterBench: worked examples, then the question (longer than ARC's)."""
    shot = ("Please answer with the letter of the correct answer.\n\nSam gave Alex the book because _ had "
            "finished reading it.\nA) Sam\nB) Alex\nPrint only a single choice from \"A\" or \"B\" without "
            "explanation. Answer:")
    return "\nA\n\n".join([shot] * 4) + f" ({i})"


def make_train_data(root: Path) -> Path:
    """The train side: short ARC-like prompts the cheap models get right, long Winogrande-like ones
    they get wrong, one code prompt, and one prompt that is also in a test file (left out)."""
    rb = root / "routing/routerbench_subset"
    arc = [f"Which is a planet? ({i})\nA. Mars\nB. Moon\nC. Sun\nD. Io\nAnswer:" for i in range(12)]
    wino = [_wino(i) for i in range(12)]
    dup = "Which gas do plants take in? (0)\nA. oxygen\nB. carbon dioxide\nC. helium\nD. neon\nAnswer:"
    _routerbench(rb / "arc_challenge_train.csv", [*arc, dup], cheap_right=set(range(12)))
    _routerbench(rb / "winograde_train.csv", wino)
    _routerbench(rb / "mbpp_train.csv", ["Write a python function to reverse a string."])
    return root


def test_policy_trains_only_on_the_train_side(tmp_path):
    root = make_train_data(make_data(tmp_path))
    rows = e2e_mix.policy_training_rows(root)
    prompts = {r["prompt"] for r in rows}
    mix, _ = e2e_mix.build_mix(40, root=root)
    assert len(rows) == 25 and not prompts & {i.prompt for i in mix}  # the duplicate of a test prompt is out
    assert all(set(r["outcomes"]) == set(RECORDED) for r in rows)
    typed = e2e_mix.policy_training_rows(root, request_types=e2e.TRIVIAL_TYPES)
    assert {r["cohort"] for r in typed} == {"arc-challenge", "winogrande"}  # the code prompt is not the rule's
    assert e2e_mix.missing_data(root, train_side=True) is None
    assert "arc_challenge_train.csv" in e2e_mix.missing_data(make_data(tmp_path / "bare"), train_side=True)


def test_learned_policy_is_served_to_the_features_it_was_trained_on(tmp_path, monkeypatch):
    from thrifty.routing.eval import build_router, load_setup
    from thrifty.routing.features import features_from_prompt

    monkeypatch.setenv("THRIFTY_DATA_DIR", str(make_train_data(make_data(tmp_path / "data"))))
    path, info = e2e.train_learned_policy(tmp_path, target=0.95)
    assert info["trained"] and info["rows"] == 24
    assert (info["cheap_model"], info["strong_model"]) == (e2e_mix.MODELS["llama-3.1-8b-instant"],
                                                           e2e_mix.MODELS[e2e_mix.FRONTIER])
    config = e2e.gateway_config("http://127.0.0.1:1", "sqlite:///x.db", path)
    names = [r["name"] for r in config["routing"]["rules"]]
    assert names.index("learned") == names.index("trivial") - 1  # before the rules-only catch of the same types
    rule = config["routing"]["rules"][names.index("learned")]
    assert rule["tier"] == "heavy" and rule["policy"] == str(path) and "consistency" in rule["checks"]
    setup = load_setup(__import__("thrifty.cli.localstack", fromlist=["x"]).write_config(
        str(tmp_path / "thrifty.yaml"), config))
    router = build_router(setup.routing, setup)  # loads the policy as the gateway does
    easy = "Which is a planet? (99)\nA. Mars\nB. Moon\nC. Sun\nD. Io\nAnswer:"
    hard = _wino(99)
    # The rows recorded the cheap models' answers, but on these two cheap models agree on every
    # wrong Winogrande answer: a cascade would escalate them after two cheap calls, so training
    # serves the prompt-only policy (the easy kind to the fast tier, the hard kind to the frontier).
    assert json.loads(path.read_text()).get("answer") is None
    described = e2e.describe_policy(path)  # what --policy FILE reports says the same of it
    assert not described["cascade"] and not info["cascade"] and described["threshold"] == info["threshold"]
    for prompt, feature, tier in ((easy, "arc-challenge", "fast"), (hard, "winogrande", "heavy")):
        decided = router.decide(features_from_prompt(prompt, headers={"x-thrifty-feature": feature}), e2e_mix.FRONTIER)
        assert decided.tier == tier and decided.answer_stage is None
        assert decided.rule == ("learned" if tier == "fast" else None)  # heavy: the model the client asked for
    # A feature the policy never saw keeps the rules: the `trivial` rule's fast tier.
    decided = router.decide(features_from_prompt(hard, headers={"x-thrifty-feature": "headlines"}), e2e_mix.FRONTIER)
    assert decided.tier == "fast" and decided.rule == "trivial" and decided.answer_stage is None


def test_seeds_summary_pools_cohorts_by_calls_and_counts_the_mixes_that_met():
    """`bench/e2e.py --seeds`: the summary over several mixes (a pure function of their reports)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_e2e", REPO / "bench" / "e2e.py")
    bench_e2e = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_e2e)

    def report(saving, met, arc):  # arc: (calls, baseline quality, thrifty quality)
        return {"saving": saving, "quality_loss_points": 0.0, "target": {"met": met},
                "worst_cohort": {"name": "arc", "loss_points": arc[1] - arc[2]},
                "baseline": {"usd": 1.0}, "thrifty": {"usd": 1.0 - saving},
                "cohorts": {"arc": {"calls": arc[0], "baseline_quality": arc[1], "thrifty_quality": arc[2],
                                    "baseline_usd": 0.5, "thrifty_usd": 0.1}}}

    s = bench_e2e.summarise([1, 2], [report(0.8, True, (10, 90.0, 90.0)), report(0.6, False, (30, 80.0, 70.0))])
    assert (s["met"], s["of"]) == (1, 2)
    assert [m["seed"] for m in s["mixes"]] == [1, 2] and s["mixes"][1]["met"] is False
    arc = s["pooled"]["cohorts"]["arc"]
    assert arc["calls"] == 40
    assert arc["baseline_quality"] == pytest.approx((10 * 90 + 30 * 80) / 40)  # by calls, not a mean of means
    assert arc["thrifty_quality"] == pytest.approx((10 * 90 + 30 * 70) / 40)
    assert s["pooled"]["saving"] == pytest.approx(1 - (0.2 + 0.4) / 2)
