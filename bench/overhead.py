"""Gateway overhead: added latency and throughput of `thrifty serve` over calling the emulator directly.

Set-up (2 cores): the gateway pinned alone to core 0; the emulator (zero latency) and the load
generator (wrk with a Lua body script) share core 1. For each concurrency, wrk runs against the
emulator directly, then against the gateway in front of it; the difference is what Thrifty adds.

    python bench/overhead.py [--duration 10] [--concurrency 1 16 64] [--out bench/results/overhead.json]

Needs `wrk` (Debian package `wrk`) and `taskset`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from thrifty.cli import localstack, processes

BODY = {"model": "gpt-4o-mini", "messages": [
    {"role": "system", "content": "You are a helpful assistant for an online shop."},
    {"role": "user", "content": "Where is my order? It was due yesterday."}], "max_tokens": 64}

LUA = """
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
wrk.headers["x-thrifty-feature"] = "bench"
local errors = 0
response = function(status, headers, body)
  if status ~= 200 then errors = errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"non2xx\\": %%d, " ..
    "\\"socket_errors\\": %%d, \\"p50_us\\": %%d, \\"p90_us\\": %%d, \\"p99_us\\": %%d, \\"mean_us\\": %%f}\\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


def run_wrk(url: str, script: str, concurrency: int, duration: int, cpu: int) -> dict:
    cmd = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--latency",
           "-s", script, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    line = next((l for l in out.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    r = json.loads(line[7:])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target (default 2)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--out", default="bench/results/overhead.json")
    args = ap.parse_args(argv)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"bench: `{tool}` not found (apt-get install {tool})", file=sys.stderr)
            return 2
    ncpu = os.cpu_count() or 1
    gw_cpu, load_cpu = (0, 1) if ncpu >= 2 else (0, 0)

    work = Path(tempfile.mkdtemp(prefix="thrifty-bench-"))
    results: dict = {"set_up": {"gateway_cpu": gw_cpu, "emulator_and_wrk_cpu": load_cpu,
                                "duration_s": args.duration, "body": BODY, "cpus": ncpu}, "runs": []}
    with processes.start_emulator(latency_scale=0.0, cpu=load_cpu, log_path=str(work / "emu.log")) as emu:
        cfg = localstack.write_config(str(work / "thrifty.yaml"),
                                      localstack.local_config(emu.url, f"sqlite:///{work}/ledger.db"))
        with processes.start_gateway(cfg, cpu=gw_cpu, log_path=str(work / "gw.log")) as gw:
            script = work / "body.lua"
            script.write_text(LUA % {"body": json.dumps(BODY), "key": localstack.DEMO_KEY})
            targets = {"direct": f"{emu.url}/v1/chat/completions", "gateway": f"{gw.url}/v1/chat/completions"}
            for c in args.concurrency:
                row = {"concurrency": c}
                for name, url in targets.items():
                    run_wrk(url, str(script), c, args.warmup, load_cpu)
                    row[name] = run_wrk(url, str(script), c, args.duration, load_cpu)
                d, g = row["direct"], row["gateway"]
                row["added_p50_ms"] = (g["p50_us"] - d["p50_us"]) / 1000
                row["added_p99_ms"] = (g["p99_us"] - d["p99_us"]) / 1000
                results["runs"].append(row)
                print(f"c={c:<3} direct {d['rps']:8.0f} req/s p50 {d['p50_us']/1000:6.2f} ms p99 {d['p99_us']/1000:6.2f} ms | "
                      f"gateway {g['rps']:8.0f} req/s p50 {g['p50_us']/1000:6.2f} ms p99 {g['p99_us']/1000:6.2f} ms | "
                      f"added p50 {row['added_p50_ms']:.2f} ms p99 {row['added_p99_ms']:.2f} ms | "
                      f"errors {g['non2xx'] + g['socket_errors']}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
