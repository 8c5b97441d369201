"""`thrifty eval router`: JSON and text output, saved calibration, one-line errors."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from thrifty.cli import eval_router
from thrifty.errors import ThriftyError
from tests.routing.test_eval import ROUTING, rows, write


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="thrifty")
    sub = p.add_subparsers(dest="command", required=True)
    eval_router.add_parser(sub)
    return p


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


@pytest.fixture
def files(tmp_path):
    return write(tmp_path, "rows.jsonl", rows()), write(tmp_path, "routing.yaml", ROUTING), tmp_path


def test_json_report(files, capsys):
    data, config, _ = files
    assert run(["eval", "router", "--data", data, "--config", config, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["methods"]) == {"rules", "rules+cascade", "random", "longer_prompt", "oracle"}
    m = report["methods"]["rules+cascade"]
    for key in ("quality", "quality_vs_strong", "cost_vs_strong", "apgr", "cpt50", "cpt80", "curve", "cohorts"):
        assert key in m
    assert m["beats"] == {"random": True, "longer_prompt": True}
    assert report["anchors"]["tradeoff"] is True


def test_text_report_and_saved_calibration(files, capsys):
    data, config, tmp = files
    saved = tmp / "calibrated.yaml"
    assert run(["eval", "router", "--data", data, "--config", config, "--calibrate", data,
                "--min-support", "2", "--save", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "rules+cascade" in out and "calibrated" in out and "APGR" in out and "by cohort" in out
    routing = yaml.safe_load(saved.read_text())
    assert routing["tiers"] == ROUTING["tiers"] and routing["rules"]
    assert run(["eval", "router", "--data", data, "--config", str(saved), "--json", "--no-cascade"]) == 0
    assert "rules+cascade" not in json.loads(capsys.readouterr().out)["methods"]


@pytest.mark.parametrize("extra, problem", [
    (["--save", "x.yaml"], "--save needs --calibrate"),
    (["--target", "0"], "--target must be"),
    (["--strong", "nobody"], "--strong 'nobody'"),
])
def test_bad_options_raise_one_line_errors(files, extra, problem):
    data, config, _ = files
    with pytest.raises(ThriftyError) as err:
        run(["eval", "router", "--data", data, "--config", config, *extra])
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_registered_in_the_thrifty_command(files, capsys):
    from thrifty.cli import main

    try:
        main.build_parser().parse_args(["eval", "router", "--help"])
    except SystemExit:
        pass
    help_text = capsys.readouterr().out
    if "--calibrate" not in help_text:
        pytest.skip("`eval router` is not registered in cli/main.py yet")
    data, config, _ = files
    assert main.main(["eval", "router", "--data", data, "--config", config, "--json"]) == 0
    capsys.readouterr()
    assert main.main(["eval", "router", "--data", data + ".missing", "--config", config]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("thrifty:") and "\n" not in err
