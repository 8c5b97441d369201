"""The lane never submits a batch twice and records each line once, across crashes.

In-process: a real Gateway (SQLite ledger, its real store tables) and the lane's real code, with
a provider batch API stand-in that can fail the way a crash looks from the lane: the provider
created the batch but its answer was never recorded (or it never got the request at all).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Collection, Sequence

import pytest

from thrifty.api.app import GatewayApp
from thrifty.batch.lane import BatchLane, Intake
from thrifty.batch.store import BatchStore
from thrifty.cli import localstack
from thrifty.config import Config
from thrifty.core.gateway import Gateway
from tests.ledger_pg.conftest import dbname, postgres_url, schema, url  # noqa: F401 (fixtures)
from thrifty.errors import UpstreamError
from thrifty.providers.batches import BatchAmbiguous, BatchLine, BatchStatus, LineResult
from thrifty.wire import OPENAI_CHAT


class Provider:
    """What the provider side holds: its batches, by id, with their lines."""

    def __init__(self) -> None:
        self.batches: dict[str, dict[str, Any]] = {}
        self.submits = 0
        self.fail_next: str | None = None  # "after_create": created, then the answer is lost; "before"
        self.ambiguous = False


class FakeAPI:
    max_lines, max_bytes = 50_000, 200 * 1024 * 1024

    def __init__(self, side: Provider) -> None:
        self.side = side

    async def submit(self, lines: Sequence[BatchLine], *, submission_id: str, endpoint: str) -> str:
        self.side.submits += 1
        how, self.side.fail_next = self.side.fail_next, None
        if how == "before":
            raise UpstreamError("connection reset before the request reached the provider")
        bid = f"batch_{len(self.side.batches) + 1}"
        self.side.batches[bid] = {"submission": submission_id, "lines": list(lines)}
        if how == "after_create":
            raise UpstreamError("connection reset while the answer was on its way")
        return bid

    async def find(self, submission_id: str, *, since: float, line_count: int,
                   exclude: Collection[str]) -> str | None:
        if self.side.ambiguous:
            raise BatchAmbiguous(submission_id, ["batch_x", "batch_y"])
        for bid, b in self.side.batches.items():
            if b["submission"] == submission_id and bid not in exclude:
                return bid
        return None

    async def poll(self, batch_id: str) -> BatchStatus:
        return BatchStatus(batch_id, True, "completed", {})

    async def results(self, batch_id: str) -> AsyncIterator[LineResult]:
        for line in self.side.batches[batch_id]["lines"]:
            yield LineResult(line.custom_id, "succeeded", {
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": line.body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}}, None, 200)

    async def cancel(self, batch_id: str) -> BatchStatus:
        return BatchStatus(batch_id, True, "cancelled", {})


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, tmp_path):
    """A gateway config whose ledger (and so the lane's tables) is SQLite or PostgreSQL."""
    if request.param == "sqlite":
        ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        ledger = request.getfixturevalue("url")  # tests/ledger_pg: skipped with a reason when down
    cfg = localstack.local_config("http://127.0.0.1:9", ledger)
    if request.param != "sqlite":
        cfg["ledger"]["spool_dir"] = str(tmp_path / "spool")
    cfg["batch"] = {"tick_s": 0.05, "poll_min_s": 0.01, "poll_max_s": 0.01}
    return Config.model_validate(cfg), None


async def _lane(config: Config, side: Provider) -> tuple[Gateway, BatchLane]:
    gw = Gateway(config)
    await gw.start()
    app = GatewayApp.__new__(GatewayApp)  # only its flow and stages: no HTTP here
    from thrifty.core.flow import build_flow

    flow, stages = build_flow(gw)
    lane = BatchLane(gw, flow, stages, BatchStore(gw.ledger.driver), apis=lambda provider: FakeAPI(side))
    del app
    return gw, lane


async def _job(lane: BatchLane, n: int = 2):
    lines = [Intake(i + 1, f"c{i}", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"t{i}"}]})
             for i in range(n)]
    return await lane.create_job(tenant="demo", surface="openai", lane="batch", endpoint="/v1/chat/completions",
                                 wire=OPENAI_CHAT, lines=lines, headers={}, attribution={})


async def _close(gw: Gateway, lane: BatchLane) -> None:
    await lane.close()
    await gw.close()


def _ledger_rows(gw: Gateway) -> list[tuple]:
    gw.ledger.flush()
    return sorted((r.request_id, r.lane, r.status, r.cost_usd) for r in gw.ledger.rows())


def _run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("how", ["after_create", "before"])
def test_a_crash_between_submit_and_record_submits_nothing_twice(world, how):
    config, _ = world
    side = Provider()

    async def first_process():
        gw, lane = await _lane(config, side)
        job = await _job(lane)
        side.fail_next = how
        await lane._submit_due(10**12)  # the provider is asked; its answer never gets recorded
        await _close(gw, lane)
        return job.id

    job_id = _run(first_process())
    assert side.submits == 1

    async def second_process():
        gw, lane = await _lane(config, side)
        lane.started_at -= 10
        import time as _t
        await lane._recover_submitting(_t.time() + 60)  # finds the submission left `submitting`
        await lane._poll_due(_t.time() + 60)
        counts = await lane.store.run(lane.store.counts, job_id)
        rows = _ledger_rows(gw)
        await _close(gw, lane)
        return counts, rows

    counts, rows = _run(second_process())
    # Created before the crash: looked up and adopted, never sent again. Never created: sent once.
    assert side.submits == (1 if how == "after_create" else 2)
    assert len(side.batches) == 1
    assert counts == {"succeeded": 2}
    assert len(rows) == 2 and all(r[1] == "batch" and r[2] == 200 for r in rows)


def test_an_ambiguous_lookup_sends_nothing(world):
    config, _ = world
    side = Provider()

    async def go():
        gw, lane = await _lane(config, side)
        await _job(lane)
        side.fail_next = "after_create"
        await lane._submit_due(10**12)
        side.ambiguous = True
        import time as _t
        await lane._recover_submitting(_t.time() + 60)
        subs = await lane.store.run(lane.store.submissions, "ambiguous")
        await _close(gw, lane)
        return subs

    subs = _run(go())
    assert side.submits == 1 and len(subs) == 1 and "several provider batches" in subs[0].info["why"]


def test_results_read_twice_record_each_line_once(world):
    config, _ = world
    side = Provider()

    async def go():
        gw, lane = await _lane(config, side)
        job = await _job(lane, 3)
        await lane._submit_due(10**12)
        import time as _t
        await lane._poll_due(_t.time() + 60)
        (sub,) = await lane.store.run(lane.store.submissions, "done")
        # As after a crash while results were being applied: the submission is polled again.
        await lane.store.run(lane.store.set_submission, sub.id, state="submitted", next_poll_at=0)
        await lane._poll_due(_t.time() + 60)
        counts = await lane.store.run(lane.store.counts, job.id)
        rows = _ledger_rows(gw)
        await _close(gw, lane)
        return counts, rows

    counts, rows = _run(go())
    assert counts == {"succeeded": 3}
    assert len(rows) == 3 and len({r[0] for r in rows}) == 3
