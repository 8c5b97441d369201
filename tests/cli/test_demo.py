"""`thrifty demo` as a user runs it: the workload section, then the end-to-end proof's short form
(`thrifty.cli.proof`, the code `bench/e2e.py` runs) on constructed shared data, and the one-line
skip when that data is absent. Real emulator and gateway processes; never a speed test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.bench.test_e2e_short import assert_figures_add_up, make_data
from thrifty.cli.proof import mix

SKIP_LINE = "the end-to-end proof (short form): skipped, "


def _demo(tmp: Path, data: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thrifty", "demo", "--calls", "8", "--workdir", str(tmp / "work"),
                           *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "THRIFTY_DATA_DIR": str(data)})


@pytest.fixture(scope="module")
def with_proof(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    proc = _demo(tmp, make_data(tmp / "data"), "--json", "--proof-calls", "30")
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    return tmp, json.loads(proc.stdout)


def test_demo_json_keeps_its_contract_beside_the_proof(with_proof):
    _, report = with_proof
    assert {"calls", "baseline_usd", "actual_usd", "levers", "ledger_usd", "invoice_usd"} <= set(report)
    assert report["calls"] == 9 and report["failed"] == 0  # 8 calls + 1 deferred
    assert Decimal(report["ledger_usd"]) == Decimal(report["invoice_usd"]) > 0
    assert "proof_skipped" not in report


def test_demo_runs_the_proofs_short_form(with_proof):
    tmp, report = with_proof
    proof = report["proof"]
    # bench/e2e.py --json's shape, on the mix the flags asked for
    assert set(proof["baseline"]) == {"usd", "quality"} and set(proof["thrifty"]) == {"usd", "quality"}
    assert set(proof["cohorts"]) == set(mix.SHARES)
    assert proof["calls"] == sum(c["calls"] for c in proof["cohorts"].values()) == 29  # the FAQ pool holds 9 of 10
    assert proof["config"]["n"] == 30 and proof["config"]["seed"] == 14
    for c in proof["cohorts"].values():
        assert {"baseline_quality", "thrifty_quality", "baseline_usd", "thrifty_usd"} <= set(c)
    assert proof["failed"] == {"baseline": 0, "thrifty": 0}
    # every constructed label is the frontier's answer: direct, it scores 100 everywhere
    assert proof["baseline"]["quality"] == 100.0
    assert_figures_add_up(proof)  # ledger = invoice, levers = baseline - actual, cohorts = totals
    # its own servers and ledger, in the demo's work folder, apart from the workload's
    assert proof["workdir"] == str(tmp / "work" / "proof")
    assert (tmp / "work/proof/thrifty.yaml").is_file() and (tmp / "work/proof/calls.jsonl").is_file()
    assert proof["reconcile"]["ledger_usd"] != report["ledger_usd"]


def test_demo_prints_the_proof_section(tmp_path):
    proc = _demo(tmp_path, make_data(tmp_path / "data"), "--proof-calls", "20", "--no-semantic")
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    out = proc.stdout
    assert "the end-to-end proof, short form: 20 labelled calls (seed 14)" in out
    for cohort in mix.SHARES:
        assert any(line.startswith(cohort) for line in out.splitlines()), cohort
    assert "saving by lever" in out and "(equal)" in out and "target (-70% cost" in out
    assert SKIP_LINE not in out
    assert out.index("where the money went") < out.index("the end-to-end proof") < out.index("Point your own client")


def test_demo_without_the_shared_data_skips_the_proof_in_one_line(tmp_path):
    proc = _demo(tmp_path, tmp_path / "absent", "--no-semantic")
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    lines = [line for line in proc.stdout.splitlines() if "proof" in line]
    assert len(lines) == 1, lines
    assert lines[0] == f"{SKIP_LINE}shared data not found under {tmp_path / 'absent'} " \
                       "(prompts/banking77/test.csv...): set THRIFTY_DATA_DIR"
    assert "where the money went" in proc.stdout  # the rest of the demo ran
    assert not (tmp_path / "work/proof").exists()


def test_no_proof_flag_and_json_without_data(tmp_path):
    proc = _demo(tmp_path, make_data(tmp_path / "data"), "--json", "--no-proof", "--no-semantic")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["proof"] is None and report["proof_skipped"] == "--no-proof"
    assert not (tmp_path / "work/proof").exists()
    proc = _demo(tmp_path, tmp_path / "absent", "--json", "--no-semantic")
    report = json.loads(proc.stdout)
    assert report["proof"] is None and report["proof_skipped"].startswith("shared data not found under")


def test_too_few_proof_calls_is_one_line(tmp_path):
    proc = _demo(tmp_path, tmp_path, "--proof-calls", "5", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == "thrifty demo: --proof-calls must be at least 20 (each cohort needs a few)\n"
