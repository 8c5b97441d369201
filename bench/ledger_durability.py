"""What the durable ledger costs on the hot path, and what kill -9 of a loaded gateway loses.

    .venv/bin/python bench/ledger_durability.py record [--rows 20000] [--runs 7]
    .venv/bin/python bench/ledger_durability.py e2e [--calls 1000] [--concurrency 16] [--rounds 5]
    .venv/bin/python bench/ledger_durability.py kill [--calls 1000] [--concurrency 16] [--kill-after 500]
    .venv/bin/python bench/ledger_durability.py all

`record`: µs per call of the ledger's request-path work, median of `--runs` runs (each the mean
over `--rows` calls, the writer thread writing to SQLite meanwhile): record() alone with the
journal off and on, begin() + record() (what a call does with the journal: its open line and its
row), the journal's own work for one call with no writer thread running, and record() with
journal_fsync (fewer rows: a disk flush each).

`e2e`: two real gateways (journal on, journal off) in front of a zero-latency emulator, the same
httpx load on each in turns: req/s and median latency (the client shares the machine: compare
the two, not with other benchmarks).

`kill`: the issue's experiment, on SQLite and on PostgreSQL (127.0.0.1:5432, database `test`, a
schema of its own, dropped afterwards): a real `thrifty serve` under `--concurrency` concurrent
calls against the emulator (a third of them streamed), `kill -9` once `--kill-after` calls were
answered 200, a restart, a clean stop; then the rows are counted. Run with the journal on (the
default) and off (what main did), so the two can be compared in one run.

Writes bench/results/ledger_durability.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.ledger_util import make_row  # noqa: E402
from thrifty.ledger import SQLiteLedger  # noqa: E402

FACTS = {"t": 1.7e9, "tenant": "acme", "surface": "openai", "feature": "search", "user": "u1",
         "task": None, "call_site": None}


def _one_run(rows: int, *, journal: bool, begin: bool = False, fsync: bool = False) -> float:
    tmp = tempfile.mkdtemp()
    led = SQLiteLedger(os.path.join(tmp, "l.db"), journal=journal, journal_fsync=fsync)
    led.start()
    made = [make_row(f"r{i}") for i in range(rows)]
    t0 = time.perf_counter_ns()
    if begin:
        for row in made:
            led.begin(row.request_id, FACTS)
            led.record(row)
    else:
        for row in made:
            led.record(row)
    dt = time.perf_counter_ns() - t0
    led.flush(timeout=600)
    assert led.count() == rows
    led.close()
    return dt / rows / 1000


def _journal_alone(rows: int) -> float:
    """The journal's own work per call (open line + row line), no writer thread running."""
    from thrifty.ledger.journal import Journal

    j = Journal(tempfile.mkdtemp())
    made = [make_row(f"r{i}") for i in range(rows)]
    t0 = time.perf_counter_ns()
    for row in made:
        j.open_call(row.request_id, FACTS)
        j.rows((row,))
    dt = time.perf_counter_ns() - t0
    j.done(made)
    j.close()
    return dt / rows / 1000


def bench_record(rows: int, runs: int) -> dict:
    cases = {
        "record_no_journal": dict(journal=False),
        "record_journal": dict(journal=True),
        "begin_and_record_journal": dict(journal=True, begin=True),
    }
    out: dict = {"rows_per_run": rows, "runs": runs}
    for name, kw in cases.items():
        samples = [_one_run(rows, **kw) for _ in range(runs)]
        out[name] = {"us_median": round(statistics.median(samples), 2),
                     "us_min": round(min(samples), 2), "us_max": round(max(samples), 2)}
        print(f"{name:28s} {out[name]['us_median']:8.2f} µs/call (median of {runs}; "
              f"min {out[name]['us_min']}, max {out[name]['us_max']})", flush=True)
    samples = [_journal_alone(rows) for _ in range(runs)]
    out["journal_alone_open_and_row"] = {"us_median": round(statistics.median(samples), 2)}
    print(f"{'journal_alone_open_and_row':28s} {out['journal_alone_open_and_row']['us_median']:8.2f} µs/call "
          "(no writer thread)", flush=True)
    few = max(50, rows // 100)
    samples = [_one_run(few, journal=True, fsync=True) for _ in range(max(3, runs // 2))]
    out["record_journal_fsync"] = {"rows_per_run": few, "us_median": round(statistics.median(samples), 2)}
    print(f"{'record_journal_fsync':28s} {out['record_journal_fsync']['us_median']:8.2f} µs/call "
          f"({few} rows a run)", flush=True)
    extra = out["record_journal"]["us_median"] - out["record_no_journal"]["us_median"]
    out["journal_extra_us_per_record"] = round(extra, 2)
    out["journal_extra_us_per_call"] = round(out["begin_and_record_journal"]["us_median"]
                                             - out["record_no_journal"]["us_median"], 2)
    print(f"journal: +{out['journal_extra_us_per_record']} µs per record(), "
          f"+{out['journal_extra_us_per_call']} µs per call (open line + row)", flush=True)
    return out


def bench_kill(calls: int, concurrency: int, kill_after: int) -> dict:
    import psycopg

    from tests.durability.killrun import kill_run
    from thrifty.cli import processes

    admin = "postgresql://root@127.0.0.1:5432/test"
    schema = f"bench_kill_{uuid.uuid4().hex[:8]}"
    out: dict = {"calls": calls, "concurrency": concurrency, "kill_after_200s": kill_after}
    emu = processes.start_emulator(latency_scale=0.3)
    try:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
        for journal in (True, False):
            for db in ("sqlite", "postgres"):
                tmp = Path(tempfile.mkdtemp())
                url = (f"sqlite:///{tmp / 'ledger.db'}" if db == "sqlite"
                       else f"{admin}?options=-csearch_path%3D{schema}_{int(journal)}")
                if db == "postgres":
                    with psycopg.connect(admin, autocommit=True) as c:
                        c.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}_{int(journal)}"')
                extra = {"journal": journal, "journal_dir": str(tmp / "journal")}
                if db == "postgres":
                    extra["spool_dir"] = str(tmp / "spool")
                r = kill_run(tmp, emu.url, url, calls=calls, concurrency=concurrency, kill_after=kill_after,
                             ledger_extra=extra)
                key = f"{db}_{'journal' if journal else 'no_journal'}"
                out[key] = r.summary()
                print(key, json.dumps(out[key]), flush=True)
    finally:
        emu.stop()
        with psycopg.connect(admin, autocommit=True) as c:
            for suffix in ("", "_0", "_1"):
                c.execute(f'DROP SCHEMA IF EXISTS "{schema}{suffix}" CASCADE')
    return out


async def _drive(url: str, n: int, concurrency: int) -> list[float]:
    import asyncio

    import httpx

    from thrifty.cli import localstack

    body = {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "hello"}]}
    headers = {"authorization": f"Bearer {localstack.DEMO_KEY}"}
    lat: list[float] = []
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers,
                                 limits=httpx.Limits(max_connections=concurrency)) as c:
        async def one() -> None:
            async with sem:
                t = time.perf_counter()
                r = await c.post("/v1/chat/completions", json=body)
                assert r.status_code == 200, r.text
                lat.append(time.perf_counter() - t)
        await asyncio.gather(*(one() for _ in range(n)))
    return lat


def bench_e2e(calls: int, concurrency: int, rounds: int) -> dict:
    """Two real gateways in front of a zero-latency emulator, the journal on and off, measured
    in turns with the same httpx load: req/s and median latency per call."""
    import asyncio

    from thrifty.cli import localstack, processes

    out: dict = {"calls_per_round": calls, "concurrency": concurrency, "rounds": rounds}
    emu = processes.start_emulator(latency_scale=0.0)
    gws = {}
    try:
        for journal in (True, False):
            tmp = Path(tempfile.mkdtemp())
            config = localstack.local_config(emu.url, f"sqlite:///{tmp / 'ledger.db'}")
            config["ledger"]["journal"] = journal
            gws[journal] = processes.start_gateway(localstack.write_config(str(tmp / "t.yaml"), config))
        runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for i in range(rounds + 1):
            for journal in ((True, False) if i % 2 else (False, True)):
                t0 = time.perf_counter()
                lat = asyncio.run(_drive(gws[journal].url, calls, concurrency))
                if i:  # the first round warms both up
                    runs[journal].append((calls / (time.perf_counter() - t0), statistics.median(lat) * 1000))
        for journal, rs in runs.items():
            key = "journal" if journal else "no_journal"
            out[key] = {"rps_median": round(statistics.median(r for r, _ in rs), 1),
                        "p50_ms_median": round(statistics.median(p for _, p in rs), 3)}
            print(f"e2e {key:11s} {out[key]['rps_median']:8.1f} req/s, p50 {out[key]['p50_ms_median']:.3f} ms "
                  f"(median of {rounds} rounds of {calls} calls at c={concurrency})", flush=True)
    finally:
        for gw in gws.values():
            gw.stop()
        emu.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["record", "e2e", "kill", "all"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--kill-after", type=int, default=500)
    ap.add_argument("--out", default="bench/results/ledger_durability.json")
    args = ap.parse_args()
    result: dict = {"cpus": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2),
                    "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    def stamped(section: dict) -> dict:  # each mode says when and under what load it ran
        return {"measured_at": result["started_at"], "load_before": result["load_before"], **section}

    if args.mode in ("record", "all"):
        result["record"] = stamped(bench_record(args.rows, args.runs))
    if args.mode in ("e2e", "all"):
        result["e2e"] = stamped(bench_e2e(args.calls, args.concurrency, args.rounds))
    if args.mode in ("kill", "all"):
        result["kill"] = stamped(bench_kill(args.calls, args.concurrency, args.kill_after))
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():  # keep the other mode's figures from an earlier run
        try:
            result = {**json.loads(path.read_text()), **result}
        except ValueError:
            pass
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
