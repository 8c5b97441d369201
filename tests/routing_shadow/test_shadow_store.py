"""The shadow_outcomes table on SQLite and PostgreSQL, and its rows as routing outcomes."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.ledger_pg.conftest import dbname, postgres_url, schema, url  # noqa: F401 - fixtures
from thrifty.cli.main import main
from thrifty.ledger import SQLiteLedger
from thrifty.ledger.shadow import ShadowOutcome, outcome_rows, record_shadow, select_shadow
from thrifty.routing.eval import read_rows


def outcome(n, score, **kw):
    base = dict(request_id=f"thr_{n}", shadow_request_id=f"thr_{n}.shadow", at=1_800_000_000.0 + n,
                tenant="acme", feature="tickets", route="tickets", request_type="classification",
                prompt=f"Classify ticket {n}", primary_deployment="gpt-4o", primary_tier="standard",
                primary_cost_usd=Decimal("0.000125"), shadow_deployment="gpt-4o-mini", shadow_tier="fast",
                shadow_cost_usd=Decimal("0.0000075"), judge_cost_usd=None,
                method="exact" if score is not None else "unscored", score=score, reason=None)
    base.update(kw)
    return ShadowOutcome(**base)


def roundtrip(ledger):
    ledger.start()
    try:
        written = [outcome(1, 1.0), outcome(2, 0.0, tenant="other"), outcome(3, None)]
        for o in written:
            record_shadow(ledger.driver, o)
        assert select_shadow(ledger.driver) == written  # Decimal money exact, order kept
        assert [o.request_id for o in select_shadow(ledger.driver, tenant="other")] == ["thr_2"]
        assert [o.request_id for o in select_shadow(ledger.driver, since=1_800_000_002.0)] == ["thr_2", "thr_3"]
        assert select_shadow(ledger.driver, route="nope") == []
    finally:
        ledger.close()


def test_roundtrip_sqlite(tmp_path):
    roundtrip(SQLiteLedger(str(tmp_path / "ledger.db")))


def test_roundtrip_postgres(url):  # noqa: F811
    from thrifty.ledger.postgres import PostgresLedger

    roundtrip(PostgresLedger.from_url(url))


def test_outcome_rows_follow_the_eval_router_contract(tmp_path):
    rows = list(outcome_rows([outcome(1, 1.0), outcome(2, 0.5), outcome(3, None)]))
    assert rows[1] == {"prompt": "Classify ticket 2", "cohort": "tickets", "id": "thr_2",
                       "outcomes": {"gpt-4o": {"score": 1.0, "cost_usd": 0.000125},
                                    "gpt-4o-mini": {"score": 0.5, "cost_usd": 0.0000075}}}
    assert len(rows) == 2  # the unscored one is left out
    path = tmp_path / "o.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parsed = read_rows(str(path))  # the reader `eval router` and `train router` use
    assert [r.outcomes["gpt-4o-mini"].score for r in parsed] == [1.0, 0.5]


def test_export_cli_counts_unscored_and_reads_a_config(tmp_path, capsys):
    db = tmp_path / "ledger.db"
    ledger = SQLiteLedger(str(db))
    ledger.start()
    for o in (outcome(1, 1.0), outcome(2, None)):
        record_shadow(ledger.driver, o)
    ledger.close()
    out = tmp_path / "out.jsonl"
    assert main(["export", "shadow", "--ledger", str(db), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shadowed"] == 2 and report["written"] == 1 and report["unscored"] == 1
    assert len(out.read_text().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:  # one of --ledger or --config is needed
        main(["export", "shadow", "--out", str(out)])
    assert exc.value.code == 2


@pytest.mark.parametrize("argv", [["export", "shadow", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0 and "--ledger URL" in capsys.readouterr().out
