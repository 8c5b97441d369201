"""kill -9 of a real gateway under load loses no call answered 200, on SQLite and on PostgreSQL;
calls in flight at the kill come back as interrupted rows (status 0, cost unknown)."""

from __future__ import annotations

from tests.durability.killrun import kill_run

CALLS, CONCURRENCY, KILL_AFTER = 240, 16, 60


def _check(result) -> None:
    assert len(result.answered_200) >= KILL_AFTER
    assert result.failed, "the kill came after every call was answered: nothing was in flight"
    assert result.lost_200 == []
    interrupted = [result.rows[u] for u in result.interrupted]
    assert interrupted, "no call was in flight at the kill"
    for row in interrupted:
        assert (row.status, row.cost_usd, row.tenant) == (0, None, "demo")
        assert row.user in result.failed  # only calls that never got their answer
    # Every call the client saw fail is either unrecorded (it never reached the gateway's
    # handler), interrupted, or fully recorded (answered, but the answer was cut by the kill).
    for u in result.failed:
        row = result.rows.get(u)
        assert row is None or row.error_type == "interrupted" or row.status == 200
    assert result.journal_files_after == []  # the restarted gateway's clean stop left nothing


def test_kill9_loses_no_answered_call_on_sqlite(tmp_path, slow_emulator):
    result = kill_run(tmp_path, slow_emulator.url, f"sqlite:///{tmp_path / 'ledger.db'}", calls=CALLS,
                      concurrency=CONCURRENCY, kill_after=KILL_AFTER,
                      ledger_extra={"journal_dir": str(tmp_path / "journal")})
    _check(result)


def test_kill9_loses_no_answered_call_on_postgres(tmp_path, slow_emulator, url):
    result = kill_run(tmp_path, slow_emulator.url, url, calls=CALLS, concurrency=CONCURRENCY,
                      kill_after=KILL_AFTER, ledger_extra={"spool_dir": str(tmp_path / "spool"),
                                                           "journal_dir": str(tmp_path / "journal")})
    _check(result)


async def _spend(budgets: dict) -> dict:
    from thrifty.budgets import Enforcer
    from thrifty.budgets.limits import BudgetsConfig

    enforcer = Enforcer(BudgetsConfig(**budgets))
    try:
        (budget,) = (await enforcer.spend("tenant", "demo"))["budgets"]
    finally:
        await enforcer.close()
    return budget


def test_kill9_settles_the_budget_holds_of_interrupted_calls(tmp_path, slow_emulator, redis_url):
    import asyncio
    import uuid
    from decimal import Decimal

    from tests.conftest import delete_redis_prefix

    prefix = f"thrifty-test:{uuid.uuid4().hex}:"
    budgets = {"budgets": [{"name": "all", "scope": "tenant", "match": "demo", "limit_usd": 100,
                            "window": "day", "action": "block"}],
               "backend": {"kind": "redis", "redis_url": redis_url, "key_prefix": prefix}}
    try:
        result = kill_run(tmp_path, slow_emulator.url, f"sqlite:///{tmp_path / 'ledger.db'}", calls=CALLS,
                          concurrency=CONCURRENCY, kill_after=KILL_AFTER,
                          ledger_extra={"journal_dir": str(tmp_path / "journal")},
                          edit=lambda c: c.update(budgets=budgets))
        _check(result)
        budget = asyncio.run(_spend(budgets))
    finally:
        delete_redis_prefix(redis_url, prefix)
    # Nothing is left held by the killed gateway (it would be, for reservation_ttl_s, without
    # the journal), and what the interrupted calls held is counted as spent: never less than
    # what the ledger says the answered calls cost.
    assert budget["held_usd"] == 0
    billed = sum((r.cost_usd for r in result.rows.values() if r.cost_usd is not None), Decimal(0))
    assert budget["spent_usd"] > billed > 0
