"""Upstream faults: client success, retries and cost under 20% mixed faults, against a fault-free run.

`thrifty serve` and `thrifty emulate` run as real processes. The emulator injects, on every
model, 429, 500, `timeout` and `drop` faults with `--fault-rate / 4` probability each (seeded
dice, per model); `--requests` non-streaming chat calls go through the gateway's OpenAI surface
at `--concurrency`, spread over routed tiers and named models. The same workload then runs
against a fault-free emulator. Reported per run:

- client success (HTTP 200) and failures by status; retries per call (ledger `retries`);
- attempts: ledger rows that stand for a billed upstream request (200 rows and `<id>.<n>` rows)
  against the emulator's billed `requests`, and ledger USD against the emulator's invoice (a
  cut attempt's row has an unknown cost: the gateway cannot see what the provider billed);
- cost per route (the model the client asked for) and which models served it.

    python bench/faults.py [--requests 2000] [--concurrency 16] [--fault-rate 0.2]
                           [--client-retries 0] [--max-price-ratio R|none] [--out bench/results/faults.json]

A call makes at most 3 upstream attempts (`max_retries: 2`), so with independent faults at rate
p the gateway alone can at best reach 1 - p**3 (99.2% at p = 0.2); `--client-retries` adds the
client SDK's own retries on top (the OpenAI and Anthropic SDKs default to 2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml

from thrifty.cli import localstack, processes
from thrifty.ledger import SQLiteLedger
from thrifty.pricing import PriceBook

ROUTES = ["thrifty/fast", "thrifty/standard", "gpt-4o-mini", "claude-haiku-4-5"]
FAULT_KINDS = ("429", "500", "timeout", "drop")
TIMEOUT_S = 1.0  # the gateway's provider timeout; a `timeout` fault holds its answer 3 s
RETRIABLE = {408, 409, 429, 500, 502, 503, 504, 529}


def emulator_config(rate: float) -> dict[str, Any]:
    faults = {k: rate / len(FAULT_KINDS) for k in FAULT_KINDS} if rate > 0 else {}
    # Answers shorter than the cap: none is truncated, so escalation's checks do not move calls up.
    return {"seed": 7, "fault_delay_s": 3 * TIMEOUT_S, "retry_after_s": 1, "faults": faults,
            "max_answer_tokens": 48}


async def one(client: httpx.AsyncClient, url: str, key: str, i: int, retries: int) -> dict[str, Any]:
    model = ROUTES[i % len(ROUTES)]
    body = {"model": model, "max_completion_tokens": 1024, "messages": [  # room for gpt-5-nano's reasoning tokens
        {"role": "system", "content": "You answer customer questions for an online shop, briefly."},
        {"role": "user", "content": f"Question {i}: how do refunds work for an order that arrived late?"}]}
    statuses = []
    for attempt in range(1 + retries):  # what an SDK client's own retries would do
        r = await client.post(url, json=body, headers={"authorization": f"Bearer {key}",
                                                       "x-thrifty-feature": "faults-bench"})
        statuses.append(r.status_code)
        if r.status_code == 200 or r.status_code not in RETRIABLE:
            break
        await asyncio.sleep(min(8.0, 0.5 * 2 ** attempt))
    return {"i": i, "model": model, "status": statuses[-1], "statuses": statuses,
            "served": r.headers.get("x-thrifty-model"), "tier": r.headers.get("x-thrifty-tier")}


async def drive(url: str, key: str, n: int, concurrency: int, retries: int) -> list[dict[str, Any]]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    out: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def worker() -> None:
            while not queue.empty():
                out.append(await one(client, url, key, queue.get_nowait(), retries))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def run(tmp: Path, name: str, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    d = tmp / name
    d.mkdir()
    (d / "emulator.yaml").write_text(yaml.safe_dump(emulator_config(rate)))
    emu = processes.start_emulator(latency_scale=0.0, log_path=str(d / "emulator.log"),
                                   extra=["--config", str(d / "emulator.yaml")])
    ledger_path = d / "ledger.db"
    gw = None
    try:
        config = localstack.local_config(emu.url, f"sqlite:///{ledger_path}", timeout_s=TIMEOUT_S)
        if args.max_price_ratio is not None:
            ratio = None if args.max_price_ratio == "none" else float(args.max_price_ratio)
            config["reliability"] = {"fallback_max_price_ratio": ratio}
        gw = processes.start_gateway(localstack.write_config(str(d / "thrifty.yaml"), config),
                                     log_path=str(d / "gateway.log"))
        t0 = time.perf_counter()
        results = asyncio.run(drive(f"{gw.url}/v1/chat/completions", localstack.DEMO_KEY, args.requests,
                                    args.concurrency, args.client_retries))
        wall = time.perf_counter() - t0
        gw.stop()  # graceful: the ledger is flushed
        with urllib.request.urlopen(f"{emu.url}/_emulator/billing") as r:
            billing = json.load(r)
    finally:
        if gw is not None:
            gw.stop()
        emu.stop()
    return summarise(name, rate, results, SQLiteLedger(str(ledger_path)).rows(), billing, wall)


def summarise(name: str, rate: float, results: list[dict[str, Any]], rows: list[Any],
              billing: dict[str, Any], wall: float) -> dict[str, Any]:
    n = len(results)
    ok = sum(1 for r in results if r["status"] == 200)
    main = [r for r in rows if "." not in r.request_id]
    cut = [r for r in rows if "." in r.request_id and r.status != 200]  # retried attempts the provider billed
    extra = [r for r in rows if "." in r.request_id and r.status == 200]  # escalation's discarded answers
    billed_rows = sum(1 for r in main if r.status == 200 and r.cache not in ("exact", "semantic"))
    billed_rows += len(cut) + len(extra)
    # A call that failed after its last attempt was cut (timeout, drop) is billed too: its own row says so.
    billed_rows += sum(1 for r in main if r.status in (502, 504) and r.served_model and
                       r.error_type in ("timeout", "upstream", "api_error"))
    invoice = localstack.invoice_from_billing(billing, PriceBook())
    invoice_usd = sum((v for v in invoice.values() if v is not None), Decimal(0))
    ledger_usd = sum((r.cost_usd for r in rows if r.cost_usd is not None), Decimal(0))
    per_route: dict[str, dict[str, Any]] = {}
    by_route = defaultdict(list)
    for r in main:
        by_route[r.requested_model].append(r)
    for route, rs in sorted(by_route.items()):
        cost = sum((r.cost_usd for r in rs if r.cost_usd is not None), Decimal(0))
        done = [r for r in rs if r.status == 200]
        per_route[route] = {"calls": len(rs), "ok": len(done), "usd": float(cost),
                            "usd_per_ok_call": float(cost / len(done)) if done else None,
                            "served_by": dict(Counter(r.served_model for r in done).most_common())}
    retries = Counter(r.retries for r in main)
    totals = billing["totals"]
    return {
        "run": name, "fault_rate": rate, "requests": n, "wall_s": round(wall, 2),
        "client_success": ok / n if n else None, "client_ok": ok,
        "client_failures_by_status": dict(Counter(r["status"] for r in results if r["status"] != 200)),
        "client_requests_sent": sum(len(r["statuses"]) for r in results),
        "retries_per_call": sum(k * v for k, v in retries.items()) / len(main) if main else None,
        "retries_histogram": {str(k): v for k, v in sorted(retries.items())},
        "max_upstream_attempts": 1 + max(retries, default=0),
        "ledger_rows": len(rows), "ledger_billed_rows": billed_rows, "ledger_cut_attempt_rows": len(cut),
        "emulator_billed_requests": totals["requests"], "emulator_faults": totals["faults"],
        "emulator_dropped": totals["dropped"],
        "ledger_usd": float(ledger_usd), "invoice_usd": float(invoice_usd),
        "unpriced_ledger_rows": sum(1 for r in rows if r.cost_usd is None and r.served_model),
        "per_route": per_route,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--fault-rate", type=float, default=0.2)
    p.add_argument("--client-retries", type=int, default=0)
    p.add_argument("--max-price-ratio", default=None,
                   help="reliability.fallback_max_price_ratio: a number, or `none` for any deployment of "
                        "the tier (default: the config's default, 1 = never a dearer deployment)")
    p.add_argument("--out", default="bench/results/faults.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="thrifty-faults-") as tmp:
        faulty = run(Path(tmp), "faults", args.fault_rate, args)
        clean = run(Path(tmp), "fault-free", 0.0, args)
    for route, r in faulty["per_route"].items():
        base = clean["per_route"].get(route, {}).get("usd_per_ok_call")
        r["usd_per_ok_call_vs_fault_free"] = (r["usd_per_ok_call"] / base
                                              if base and r["usd_per_ok_call"] is not None else None)
    out = {"config": vars(args), "emulator": emulator_config(args.fault_rate), "runs": [faulty, clean]}
    for run_ in (faulty, clean):
        print(f"{run_['run']:>10}: {run_['client_ok']}/{run_['requests']} ok ({100 * run_['client_success']:.2f}%), "
              f"failures {run_['client_failures_by_status']}, retries/call {run_['retries_per_call']:.3f}, "
              f"max attempts {run_['max_upstream_attempts']}, {run_['wall_s']} s")
        print(f"{'':>10}  ledger billed rows {run_['ledger_billed_rows']} (cut attempts {run_['ledger_cut_attempt_rows']})"
              f" vs emulator billed {run_['emulator_billed_requests']}; ledger ${run_['ledger_usd']:.6f}"
              f" vs invoice ${run_['invoice_usd']:.6f} ({run_['unpriced_ledger_rows']} rows of unknown cost)")
    for route, r in faulty["per_route"].items():
        ratio = r["usd_per_ok_call_vs_fault_free"]
        print(f"  {route:>18}: ${r['usd_per_ok_call'] or 0:.7f}/ok call"
              f" ({'n/a' if ratio is None else f'{ratio:.3f}x'} fault-free), served by {r['served_by']}")
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    return 0 if faulty["client_success"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
