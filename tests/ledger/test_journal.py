"""The ledger's journal: rows of a process killed with kill -9 are written by the next one, calls
it left open come back as interrupted, its budget holds are settled at their worst case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest

from thrifty.budgets import Enforcer
from thrifty.budgets.limits import BudgetsConfig
from thrifty.budgets.memory import MemoryStore
from thrifty.budgets.scopes import CallScopes
from thrifty.core.recorder import settle_interrupted
from thrifty.ledger import SQLiteLedger, read_spill
from thrifty.ledger.journal import INTERRUPTED, INTERRUPTED_STATUS

from tests.ledger_util import make_row

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FACTS = {"t": 1_700_000_000.0, "tenant": "acme", "surface": "openai", "feature": "search", "user": "u9",
         "task": None, "call_site": None}


def killed(db: str, body: str, *args: str) -> None:
    """Run `body` in a process that opens SQLiteLedger `led` on `db` and dies with os._exit(9)
    (no close(), no atexit: what kill -9 leaves)."""
    code = ("import json, os, sys\n"
            "from thrifty.ledger import SQLiteLedger\n"
            "from tests.ledger_util import make_row\n"
            "led = SQLiteLedger(sys.argv[1])\n" + body + "\nos._exit(9)\n")
    done = subprocess.run([sys.executable, "-c", code, db, *args], cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True)
    assert done.returncode == 9, done.stderr.decode()


def journal_files(db: str) -> list[str]:
    path = db + ".journal"
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "ledger.db")


def test_rows_of_a_killed_process_are_written_by_the_next_one(db):
    # The process dies right after record(): its writer thread has written some rows at most.
    killed(db, "led.start()\nfor i in range(3000):\n    led.record(make_row(i))")
    assert journal_files(db)
    led = SQLiteLedger(db)
    led.start()
    led.flush()
    assert led.count() == 3000
    assert {r.request_id for r in led.rows()} == {f"req-{i}" for i in range(3000)}
    led.close()
    assert journal_files(db) == []


def test_a_call_open_at_the_kill_becomes_an_interrupted_row(db):
    facts = json.dumps(FACTS)
    killed(db, "led.start()\n"
               "led.begin('req-open', json.loads(sys.argv[2]))\n"
               "led.begin('req-done', json.loads(sys.argv[2]))\n"
               "led.record(make_row('done'))\n"
               "led.flush()", facts)
    led = SQLiteLedger(db)
    led.start()
    led.flush()
    rows = {r.request_id: r for r in led.rows()}
    led.close()
    assert set(rows) == {"req-open", "req-done"}
    assert rows["req-done"].status == 200 and rows["req-done"].cost_usd == Decimal("0.000123")
    cut = rows["req-open"]
    assert (cut.status, cut.error_type, cut.cost_usd, cut.baseline_cost_usd) == (INTERRUPTED_STATUS, INTERRUPTED,
                                                                                None, None)
    assert (cut.tenant, cut.feature, cut.user, cut.started_at) == ("acme", "search", "u9", FACTS["t"])
    assert cut.finished_at >= cut.started_at


async def test_a_hold_left_by_a_killed_process_is_settled_at_its_worst_case(db):
    config = BudgetsConfig(budgets=[{"name": "t", "scope": "tenant", "limit_usd": 1, "window": "day",
                                     "action": "block"}])
    enforcer = Enforcer(config, MemoryStore())  # the store outlives the gateway, as Redis does
    scopes = CallScopes(tenant="acme")
    cut = await enforcer.reserve(scopes, Decimal("0.25"), 1000)
    done = await enforcer.reserve(scopes, Decimal("0.5"), 1000)
    await enforcer.settle(done, Decimal("0.01"), 10)
    held = json.dumps([enforcer.held(cut), enforcer.held(done)])
    killed(db, "for h in json.loads(sys.argv[2]):\n    led.hold(h['id'], h)", held)

    led = SQLiteLedger(db)
    led.start()
    assert await settle_interrupted(led, enforcer) == 1  # `done` was settled already: not again
    (budget,) = (await enforcer.spend("tenant", "acme"))["budgets"]
    assert (budget["spent_usd"], budget["held_usd"]) == (Decimal("0.26"), Decimal(0))
    assert await settle_interrupted(led, enforcer) == 0  # handed out once
    led.close()
    assert journal_files(db) == []


async def test_the_journal_writes_a_hold_until_it_is_settled(db):
    config = BudgetsConfig(budgets=[{"name": "t", "scope": "tenant", "limit_usd": 1, "window": "day",
                                     "action": "block"}])
    enforcer = Enforcer(config, MemoryStore())
    led = SQLiteLedger(db)
    led.start()
    enforcer.journal = led
    r = await enforcer.reserve(CallScopes(tenant="acme"), Decimal("0.25"), 1000)
    assert led.journal.pending() == 1
    await enforcer.release(r)
    assert led.journal.pending() == 0
    led.close()


def test_the_journal_of_a_live_process_is_not_taken(db):
    alive = SQLiteLedger(db)
    alive.record(make_row(1))  # journaled and queued, not written: its writer has not started
    other = SQLiteLedger(db)
    other.start()
    other.flush()
    assert other.count() == 0
    other.close()
    alive.start()
    alive.flush()
    assert alive.count() == 1
    alive.close()
    assert journal_files(db) == []


def test_segments_go_once_their_rows_are_written(db):
    led = SQLiteLedger(db)
    led.journal.segment_bytes = 4096
    led.start()
    for i in range(2000):
        led.record(make_row(i))
        if i % 100 == 99:
            led.flush()
            assert len([n for n in journal_files(db) if n.endswith(".jsonl")]) <= 2
    led.flush()
    assert led.journal.pending() == 0
    led.close()
    assert journal_files(db) == [] and not os.path.exists(db + ".journal")


def test_no_journal_when_turned_off(db):
    led = SQLiteLedger(db, journal=False)
    led.start()
    led.record(make_row(1))
    led.flush()
    assert led.count() == 1 and led.journal is None and not os.path.exists(db + ".journal")
    led.close()


def test_text_a_database_refuses_is_cleaned_not_a_lost_row(db):
    led = SQLiteLedger(db)
    led.start()
    led.record(make_row("nul", user="a\x00b", feature="f\x00", task="t\udc80", call_site="\ud83d\ude00",
                        request_body='{"x": "\x00"}', error_type="e\ud800"))
    led.flush()
    (row,) = led.rows()
    led.close()
    assert (row.user, row.feature, row.task, row.call_site, row.request_body, row.error_type) == \
        ("a\ufffdb", "f\ufffd", "t\ufffd", "\U0001f600", '{"x": "\ufffd"}', "e\ufffd")
    assert not os.path.exists(led.spill_path) or read_spill(led.spill_path) == []
