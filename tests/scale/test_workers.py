"""`thrifty serve --workers N` and several gateway processes sharing Redis act as one gateway."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import openai
import pytest

from thrifty.cli import localstack, processes
from thrifty.ledger import SQLiteLedger


async def _burst(url: str, n: int, **kw) -> list:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=localstack.DEMO_KEY, max_retries=0) as c:
        async def one(i):
            try:
                return await c.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", max_tokens=40, messages=[{"role": "user", "content": f"q{i}"}], **kw)
            except openai.RateLimitError as exc:
                return exc
        return await asyncio.gather(*(one(i) for i in range(n)))


@pytest.fixture
def emulator(tmp_path):
    emu = processes.start_emulator(log_path=str(tmp_path / "emu.log"))
    yield emu
    emu.stop()


def test_workers_share_one_sqlite_ledger(tmp_path, emulator):
    cfg = localstack.write_config(str(tmp_path / "t.yaml"),
                                  localstack.local_config(emulator.url, f"sqlite:///{tmp_path / 'l.db'}"))
    gw = processes.start_gateway(cfg, log_path=str(tmp_path / "gw.log"), extra=["--workers", "2"])
    try:
        answers = asyncio.run(_burst(gw.url, 40))
    finally:
        gw.stop()
    assert all(not isinstance(a, Exception) for a in answers)
    assert SQLiteLedger(str(tmp_path / "l.db")).count() == 40


def test_replicas_on_redis_hold_one_budget(tmp_path, emulator, redis_url):
    import uuid

    limit = Decimal("0.0015")
    config = localstack.local_config(emulator.url, f"sqlite:///{tmp_path / 'l.db'}")
    config["budgets"] = {
        "budgets": [{"name": "shared", "scope": "tenant", "match": "demo", "limit_usd": float(limit),
                     "window": "day", "action": "block"}],
        "backend": {"kind": "redis", "redis_url": redis_url, "key_prefix": f"thrifty-test:{uuid.uuid4().hex}:"},
    }
    cfg = localstack.write_config(str(tmp_path / "t.yaml"), config)
    a = processes.start_gateway(cfg, log_path=str(tmp_path / "a.log"))
    b = processes.start_gateway(cfg, log_path=str(tmp_path / "b.log"), extra=["--workers", "2"])
    try:
        async def both():
            return await asyncio.gather(_burst(a.url, 30), _burst(b.url, 30))
        ra, rb = asyncio.run(both())
    finally:
        a.stop()
        b.stop()
    answers = ra + rb
    refused = [x for x in answers if isinstance(x, Exception)]
    assert refused and len(refused) < len(answers)
    rows = SQLiteLedger(str(tmp_path / "l.db")).rows()
    assert len(rows) == 60
    spent = sum((r.cost_usd for r in rows if r.status == 200), Decimal(0))
    assert 0 < spent <= limit
