"""PostgresLedger: rows/s written at batch sizes 256/1024, record() cost, spool and replay rates.

Run: .venv/bin/python bench/ledger_postgres.py [ROWS]   (PostgreSQL on 127.0.0.1:5432, user root)
Creates and drops a database of its own; writes JSON to bench_ledger_pg.json in the cwd.
"""
import json, os, statistics, sys, tempfile, time, uuid
import psycopg
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tests.ledger_pg.rows import make_row
from thrifty.ledger.postgres import PostgresLedger

ADMIN = "postgresql://root@127.0.0.1:5432/postgres"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
db = f"thrifty_bench_{uuid.uuid4().hex[:8]}"
base = f"postgresql://root@127.0.0.1:5432/{db}"
with psycopg.connect(ADMIN, autocommit=True) as c:
    c.execute(f'CREATE DATABASE "{db}"')


def schema_url(name):
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {name}")
    return f"{base}?options=-csearch_path%3D{name}"


out = {"rows": N, "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
try:
    for bs in (256, 1024):
        url = schema_url(f"b{bs}")
        led = PostgresLedger(url, spool_dir=tempfile.mkdtemp(), batch_size=bs)
        for i in range(N):  # queued first, so the writer's rate is measured alone
            led.record(make_row(f"{bs}-{i}", started_at=1.7e9 + i))
        t0 = time.perf_counter()
        led.start()
        led.flush(timeout=600)
        dt = time.perf_counter() - t0
        assert led.count() == N
        samples = []
        for i in range(50_000):  # record() with the writer busy
            r = make_row(f"{bs}-m{i}")
            t = time.perf_counter_ns()
            led.record(r)
            samples.append(time.perf_counter_ns() - t)
        led.flush(timeout=600)
        led.close()
        samples.sort()
        out[f"batch_{bs}"] = {"write_rows_per_s": round(N / dt),
                              "record_us_p50": samples[len(samples) // 2] / 1000,
                              "record_us_p99": samples[int(len(samples) * .99)] / 1000,
                              "record_us_mean": round(statistics.mean(samples) / 1000, 2)}
        print(bs, out[f"batch_{bs}"], flush=True)

    # Database down: rows go to the spool (fsync per batch); then the spool is replayed.
    url = schema_url("spooled")
    spool = tempfile.mkdtemp()
    down = PostgresLedger("postgresql://root@127.0.0.1:1/none", spool_dir=spool, batch_size=256)
    down.start()
    for i in range(N):
        down.record(make_row(f"s-{i}", started_at=1.7e9 + i))
    t0 = time.perf_counter()
    down.flush(timeout=600)
    down.close()
    spool_dt = time.perf_counter() - t0
    up = PostgresLedger(url, spool_dir=spool)
    t0 = time.perf_counter()
    up.start()
    up.flush(timeout=600)
    replay_dt = time.perf_counter() - t0
    assert up.count() == N
    up.close()
    out["spool_rows_per_s"] = round(N / spool_dt)
    out["replay_rows_per_s"] = round(N / replay_dt)
    print("spool", out["spool_rows_per_s"], "replay", out["replay_rows_per_s"], flush=True)
finally:
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
out["load_after"] = os.getloadavg()[0]
print(json.dumps(out))
with open("bench_ledger_pg.json", "w") as f:
    json.dump(out, f, indent=1)
