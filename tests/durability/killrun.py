"""The kill -9 experiment: a real `thrifty serve` under concurrent load, killed, restarted, counted.

Used by tests/durability (small, bounded runs) and by bench/ledger_durability.py (the figures).
Each call carries its number in `x-thrifty-user` (`k<n>`), so a call that never got an answer
(and so never learnt its request id) can still be found in the ledger.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

from thrifty.cli import localstack, processes
from thrifty.ledger import open_ledger


@dataclass
class KillResult:
    sent: int  # calls the client started
    answered_200: dict[str, str] = field(default_factory=dict)  # user tag -> request id
    failed: list[str] = field(default_factory=list)  # user tags of calls with no complete answer
    rows: dict[str, Any] = field(default_factory=dict)  # user tag -> its LedgerRow (main rows only)
    journal_files_after: list[str] = field(default_factory=list)

    @property
    def lost_200(self) -> list[str]:
        """Calls answered 200 whose row is not in the ledger (or not as a 200)."""
        return [u for u, rid in self.answered_200.items()
                if u not in self.rows or self.rows[u].request_id != rid or self.rows[u].status != 200]

    @property
    def interrupted(self) -> list[str]:
        return [u for u, r in self.rows.items() if r.error_type == "interrupted"]

    @property
    def billed_lost(self) -> list[str]:
        """Calls the client started that left no row at all (answered or not)."""
        return [u for u in self.answered_200 if u not in self.rows]

    def summary(self) -> dict[str, Any]:
        return {"sent": self.sent, "answered_200": len(self.answered_200), "unanswered": len(self.failed),
                "rows": len(self.rows), "lost_of_answered_200": len(self.lost_200),
                "interrupted_rows": len(self.interrupted),
                "unanswered_without_row": len([u for u in self.failed if u not in self.rows]),
                "journal_files_left": len(self.journal_files_after)}


async def _load(url: str, n: int, concurrency: int, kill_after: int, kill: Callable[[], None],
                stream_every: int, out: KillResult) -> None:
    sem = asyncio.Semaphore(concurrency)
    killed = asyncio.Event()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        async def one(i: int) -> None:
            tag = f"k{i}"
            async with sem:
                if killed.is_set():
                    return
                out.sent += 1
                stream = stream_every > 0 and i % stream_every == 0
                body = {"model": "gpt-4o-mini", "max_tokens": 24, "stream": stream,
                        "messages": [{"role": "user", "content": f"durability question {i}"}]}
                headers = {"authorization": f"Bearer {localstack.DEMO_KEY}", "x-thrifty-user": tag}
                try:
                    if stream:
                        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                            text = (await r.aread()).decode()
                            ok = r.status_code == 200 and "[DONE]" in text
                    else:
                        r = await client.post("/v1/chat/completions", json=body, headers=headers)
                        ok = r.status_code == 200 and r.json().get("choices") is not None
                except (httpx.HTTPError, ValueError):
                    ok = False
                if ok:
                    out.answered_200[tag] = r.headers["x-thrifty-request-id"]
                    if len(out.answered_200) >= kill_after and not killed.is_set():
                        killed.set()
                        kill()
                else:
                    out.failed.append(tag)

        await asyncio.gather(*(one(i) for i in range(n)))


def kill_run(tmp: Path, emulator_url: str, ledger_url: str, *, calls: int, concurrency: int, kill_after: int,
             stream_every: int = 3, ledger_extra: dict[str, Any] | None = None,
             edit: Callable[[dict[str, Any]], None] | None = None) -> KillResult:
    """Serve, load, `kill -9` once `kill_after` calls were answered 200, restart, stop cleanly,
    then read the ledger."""
    config = localstack.local_config(emulator_url, ledger_url)
    config["ledger"].update(ledger_extra or {})
    if edit is not None:
        edit(config)
    cfg = localstack.write_config(str(tmp / "thrifty.yaml"), config)
    gw = processes.start_gateway(cfg, log_path=str(tmp / "gateway-1.log"))
    out = KillResult(sent=0)

    def kill() -> None:
        os.kill(gw.proc.pid, signal.SIGKILL)

    try:
        asyncio.run(_load(gw.url, calls, concurrency, kill_after, kill, stream_every, out))
    finally:
        if gw.proc.poll() is None:
            gw.proc.kill()
        gw.proc.wait(10)
        gw._stopped = True
    again = processes.start_gateway(cfg, log_path=str(tmp / "gateway-2.log"))
    again.stop()  # a clean stop: everything recovered is written before it exits
    ledger = open_ledger(ledger_url, **{k: v for k, v in (ledger_extra or {}).items() if k == "spool_dir"})
    for row in ledger.rows():
        if row.user and "." not in row.request_id:
            out.rows[row.user] = row
    journal = (ledger_extra or {}).get("journal_dir")
    if journal and os.path.isdir(journal):
        out.journal_files_after = sorted(os.listdir(journal))
    return out
