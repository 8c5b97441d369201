"""`thrifty export parquet`: the ledger as day-partitioned Parquet that loads back as the same rows."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.analysis.test_sources import T0, ledger_rows, write_sqlite_ledger
from thrifty.analysis.schema import COLUMN_NAMES
from thrifty.analysis.sources import detect, load
from thrifty.analysis.sources import parquet as parquet_source
from thrifty.cli.main import main
from thrifty.ledger import LedgerRow, SQLiteLedger


def table(report) -> list[tuple]:
    return report.con.execute(f"SELECT {', '.join(COLUMN_NAMES)} FROM traffic ORDER BY id").fetchall()


def run_json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_export_then_load_gives_back_the_same_rows_and_sums(tmp_path, capsys):
    ledger = write_sqlite_ledger(tmp_path / "ledger.db")
    out = tmp_path / "export"
    result = run_json(capsys, "export", "parquet", "--ledger", f"sqlite:///{ledger}", "--out", str(out), "--json")
    # Rows a and c start on 2023-11-14 (UTC), b a day later.
    assert result["rows"] == 3 and result["days"] == 2
    assert (result["first_day"], result["last_day"]) == ("2023-11-14", "2023-11-15")
    days = sorted(p.name for p in out.iterdir())
    assert days == ["day=2023-11-14", "day=2023-11-15"]
    assert all(f.name.startswith("part-") and f.suffix == ".parquet" for d in out.iterdir() for f in d.iterdir())
    assert result["files"] == sum(1 for d in out.iterdir() for _ in d.iterdir())
    assert detect(str(out)) == "parquet"
    back, direct = load(str(out)), load(str(ledger))
    assert back.format == "parquet" and back.rows == 3
    assert table(back) == table(direct)
    total = "SELECT sum(cost_usd), sum(input_tokens), sum(output_tokens) FROM traffic"
    assert back.con.execute(total).fetchone() == direct.con.execute(total).fetchone()
    assert back.con.execute(total).fetchone()[0] == Decimal("0.000123") + direct.con.execute(
        "SELECT cost_usd FROM traffic WHERE id = 'b'").fetchone()[0]


def test_export_streams_in_flushes_and_keeps_every_row(tmp_path):
    path = tmp_path / "big.db"
    led = SQLiteLedger(str(path))
    led.start()
    template = ledger_rows()[0]
    led.record_many([LedgerRow(**{**{f: getattr(template, f) for f in template.__slots__},
                                  "request_id": f"r{i:03d}", "started_at": T0 + 3600 * i,
                                  "cost_usd": Decimal("0.001") * (i + 1)})
                     for i in range(30)])
    led.flush()
    led.close()
    out = tmp_path / "out"
    result = parquet_source.export_ledger(str(path), str(out), chunk_rows=3, flush_rows=4).as_dict()
    # 30 hourly calls from 22:13 UTC on the 14th: 2 on the 14th, 24 on the 15th, 4 on the 16th.
    assert result["rows"] == 30 and result["days"] == 3
    # Every flush (6 rows: two chunks of 3) writes part files of its own; 5 flushes, 3 days.
    assert result["files"] >= 5
    back = load(str(out))
    assert back.con.execute("SELECT count(*), sum(cost_usd) FROM traffic").fetchone() == (
        30, sum(Decimal("0.001") * (i + 1) for i in range(30)))


def test_since_and_until_window_the_export(tmp_path, capsys):
    ledger = write_sqlite_ledger(tmp_path / "ledger.db")
    out = tmp_path / "w"
    result = run_json(capsys, "export", "parquet", "--ledger", str(ledger), "--out", str(out),
                      "--since", "2023-11-15", "--json")
    assert result["rows"] == 1
    assert [r[0] for r in load(str(out)).con.execute("SELECT id FROM traffic").fetchall()] == ["b"]
    out2 = tmp_path / "w2"
    result = run_json(capsys, "export", "parquet", "--ledger", str(ledger), "--out", str(out2),
                      "--until", str(T0 + 1), "--json")
    assert result["rows"] == 1 and result["last_day"] == "2023-11-14"


def test_plain_output_says_what_was_written(tmp_path, capsys):
    ledger = write_sqlite_ledger(tmp_path / "ledger.db")
    assert main(["export", "parquet", "--ledger", str(ledger), "--out", str(tmp_path / "p")]) == 0
    assert capsys.readouterr().out.startswith("wrote 3 rows in ")


@pytest.mark.parametrize("extra, reason", [
    (["--since", "last tuesday"], "--since: not a time"),
    (["--since", "2023-11-16", "--until", "2023-11-15"], "--since must be before --until"),
])
def test_bad_options_exit_non_zero_with_one_line(tmp_path, capsys, extra, reason):
    ledger = write_sqlite_ledger(tmp_path / "ledger.db")
    code = main(["export", "parquet", "--ledger", str(ledger), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code != 0 and reason in err and err.count("\n") == 1


def test_an_export_folder_is_never_exported_into_twice(tmp_path, capsys):
    ledger = write_sqlite_ledger(tmp_path / "ledger.db")
    out = tmp_path / "o"
    assert main(["export", "parquet", "--ledger", str(ledger), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", "parquet", "--ledger", str(ledger), "--out", str(out)]) != 0
    assert "already holds Parquet files" in capsys.readouterr().err
    assert load(str(out)).rows == 3


def test_a_missing_ledger_exits_non_zero(tmp_path, capsys):
    code = main(["export", "parquet", "--ledger", str(tmp_path / "none.db"), "--out", str(tmp_path / "o")])
    assert code != 0 and "no ledger file" in capsys.readouterr().err


def test_export_is_a_group_whose_help_lists_parquet(capsys):
    with pytest.raises(SystemExit) as done:
        main(["export", "--help"])
    assert done.value.code == 0 and "parquet" in capsys.readouterr().out
