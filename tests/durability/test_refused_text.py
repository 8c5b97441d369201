"""A NUL (or a lone surrogate) in what a client sends never costs a ledger row: through a real
gateway, on SQLite and on PostgreSQL, every call leaves its row with the text cleaned."""

from __future__ import annotations

import httpx
import pytest

from thrifty.cli import localstack, processes
from thrifty.ledger import open_ledger


def _calls(url: str) -> list[str]:
    ids = []
    auth = {"authorization": f"Bearer {localstack.DEMO_KEY}"}
    with httpx.Client(base_url=url, timeout=30, headers=auth) as c:
        for i, stream in enumerate((False, True, False)):
            body = {"model": "gpt-4o-mini", "max_tokens": 16, "stream": stream, "user": f"nul\x00user{i}",
                    "messages": [{"role": "user", "content": f"a NUL \x00 in the prompt {i}"}]}
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            ids.append(r.headers["x-thrifty-request-id"])
    return ids


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("url")


def test_nul_from_the_client_is_cleaned_and_every_call_keeps_its_row(tmp_path, slow_emulator, ledger_url):
    config = localstack.local_config(slow_emulator.url, ledger_url, store_bodies=True)
    spool = {} if ledger_url.startswith("sqlite") else {"spool_dir": str(tmp_path / "spool")}
    config["ledger"].update(spool)
    cfg = localstack.write_config(str(tmp_path / "thrifty.yaml"), config)
    gw = processes.start_gateway(cfg, log_path=str(tmp_path / "gateway.log"))
    try:
        ids = _calls(gw.url)
    finally:
        gw.stop()
    rows = {r.request_id: r for r in open_ledger(ledger_url, **spool).rows()}
    assert set(ids) <= set(rows)
    assert [rows[i].user for i in ids] == [f"nul\ufffduser{n}" for n in range(3)]
    assert all(rows[i].status == 200 and rows[i].cost_usd for i in ids)
    assert not (tmp_path / "spool" / "rejected.jsonl").exists()
    assert not (tmp_path / "ledger.db.spill.jsonl").exists()
