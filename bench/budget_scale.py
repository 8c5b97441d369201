"""Hard budget across replicas: N gateway processes on Redis (budgets) + PostgreSQL (ledger).

200 concurrent clients send requests of varied size, round-robin over the gateways, until the
tenant's $1.00 budget refuses them. Reports requests admitted, the spend recorded in the ledger,
overshoot past the limit (must be $0.00), ledger rows against the emulator's request count (must
be equal), and throughput, against the same run on one gateway process.

    python bench/budget_scale.py [--gateways 4] [--clients 200] [--limit 1.00]

Needs PostgreSQL (127.0.0.1:5432, trust auth) and Redis (127.0.0.1:6379); creates and drops a
database of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path

import aiohttp
import psycopg

from thrifty.cli import localstack, processes
from thrifty.ledger.postgres import PostgresLedger

ADMIN_DB = "postgresql://root@127.0.0.1:5432/postgres"
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "claude-haiku-4-5"]


async def client_loop(session: aiohttp.ClientSession, urls: list[str], seed: int, stats: dict, cap: int) -> None:
    rng = random.Random(seed)
    i = seed
    while stats["sent"] < cap:
        url = urls[i % len(urls)]
        i += 1
        words = " ".join(rng.choice(["cost", "budget", "replica", "ledger", "token"]) for _ in range(rng.randint(5, 400)))
        body = {"model": rng.choice(MODELS), "max_tokens": rng.choice([50, 150, 400]),
                "messages": [{"role": "user", "content": f"Summarise: {words}"}]}
        stats["sent"] += 1
        async with session.post(f"{url}/v1/chat/completions", json=body,
                                headers={"authorization": f"Bearer {localstack.DEMO_KEY}"}) as r:
            await r.read()
            if r.status == 200:
                stats["admitted"] += 1
            elif r.status == 429:
                stats["refused"] += 1
                return  # this client's budget is spent
            else:
                stats["errors"] += 1


def run(gateways: int, clients: int, limit: Decimal, work: Path) -> dict:
    db = f"thrifty_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DB, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{db}"')
    url = f"postgresql://root@127.0.0.1:5432/{db}"
    try:
        with processes.start_emulator(log_path=str(work / f"emu-{gateways}.log")) as emu:
            config = localstack.local_config(emu.url, url)
            config["ledger"]["spool_dir"] = str(work / f"spool-{gateways}")
            config["levers"] = {"exact_cache": {"enabled": False}}
            config["budgets"] = {
                "budgets": [{"name": "tenant-total", "scope": "tenant", "match": "demo", "limit_usd": float(limit),
                             "window": "day", "action": "block"}],
                "backend": {"kind": "redis", "redis_url": "redis://127.0.0.1:6379/0",
                            "key_prefix": f"thrifty-bench:{uuid.uuid4().hex}:"},
            }
            cfg = localstack.write_config(str(work / f"thrifty-{gateways}.yaml"), config)
            gws = [processes.start_gateway(cfg, log_path=str(work / f"gw-{gateways}-{i}.log")) for i in range(gateways)]
            stats = {"sent": 0, "admitted": 0, "refused": 0, "errors": 0}

            async def drive() -> float:
                conn = aiohttp.TCPConnector(limit=clients)
                async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as s:
                    t0 = time.perf_counter()
                    await asyncio.gather(*(client_loop(s, [g.url for g in gws], i, stats, 200_000)
                                           for i in range(clients)))
                    return time.perf_counter() - t0

            try:
                seconds = asyncio.run(drive())
            finally:
                for g in gws:
                    g.stop()
            with urllib.request.urlopen(f"{emu.url}/_emulator/billing") as r:
                billed = sum(m["requests"] for m in json.load(r)["models"].values())
        ledger = PostgresLedger(url, spool_dir=str(work / f"spool-{gateways}"))
        rows = ledger.rows()
        spend = sum((r.cost_usd for r in rows if r.status == 200 and r.cost_usd is not None), Decimal(0))
        return {"gateways": gateways, "clients": clients, "limit_usd": str(limit), "seconds": seconds,
                **stats, "admitted_per_s": stats["admitted"] / seconds, "ledger_rows": len(rows),
                "ledger_rows_ok": sum(r.status == 200 for r in rows), "emulator_requests": billed,
                "recorded_spend_usd": str(spend), "overshoot_usd": str(max(Decimal(0), spend - limit))}
    finally:
        with psycopg.connect(ADMIN_DB, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateways", type=int, default=4)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--limit", type=Decimal, default=Decimal("1.00"))
    ap.add_argument("--out", default="bench/results/budget_scale.json")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="thrifty-budgetbench-"))
    results = []
    for n in (1, args.gateways):
        r = run(n, args.clients, args.limit, work)
        results.append(r)
        print(f"{n} gateway(s): {r['admitted']} admitted, {r['refused']} refused, {r['errors']} errors in "
              f"{r['seconds']:.1f}s ({r['admitted_per_s']:.0f}/s); spend ${r['recorded_spend_usd']} of "
              f"${r['limit_usd']}, overshoot ${r['overshoot_usd']}; ledger rows {r['ledger_rows']} "
              f"({r['ledger_rows_ok']} answered) vs emulator requests {r['emulator_requests']}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": results, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                              indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
