"""Gateway overhead: added latency and throughput of `thrifty serve` over calling the emulator directly.

Set-up (2 cores): the gateway pinned alone to core 0; the emulator (zero latency) and the load
generator (wrk with a Lua body script) share core 1. For each concurrency, wrk runs against the
emulator directly, then against the gateway in front of it; the difference is what Thrifty adds.

With several `--servers`, one gateway per HTTP server (`thrifty serve --server NAME`, each with its
own ledger) runs for the whole benchmark, all pinned to core 0; at each concurrency they are measured
one after the other against the same direct run, the order rotating from one concurrency to the
next. An idle gateway uses under 0.2% of a core (measured), so it does not disturb the other.

    python bench/overhead.py [--duration 10] [--concurrency 1 16 64] [--servers uvicorn granian]
                             [--out bench/results/overhead.json]

Needs `wrk` (Debian package `wrk`) and `taskset`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from thrifty.cli import localstack, processes
from thrifty.cli.serve import DEFAULT_SERVER, SERVERS
from thrifty.ledger import SQLiteLedger

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


def start_gateway(config_path: str, server: str, cpu: int, log_path: str) -> processes.Server:
    port = processes.free_port()
    return processes.start_server(f"gateway ({server})", ["serve", "--config", config_path, "--port", str(port),
                                                          "--server", server],
                                  port, log_path=log_path, cpu=cpu)


def fmt(r: dict) -> str:
    return f"{r['rps']:8.0f} req/s p50 {r['p50_us'] / 1000:6.2f} ms p99 {r['p99_us'] / 1000:6.2f} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target (default 2)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--servers", nargs="+", choices=SERVERS, default=[DEFAULT_SERVER],
                    help=f"HTTP servers to run the gateway with, each measured (default: {DEFAULT_SERVER})")
    ap.add_argument("--out", default="bench/results/overhead.json")
    args = ap.parse_args(argv)
    servers = list(dict.fromkeys(args.servers))
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"bench: `{tool}` not found (apt-get install {tool})", file=sys.stderr)
            return 2
    ncpu = os.cpu_count() or 1
    gw_cpu, load_cpu = (0, 1) if ncpu >= 2 else (0, 0)

    work = Path(tempfile.mkdtemp(prefix="thrifty-bench-"))
    results: dict = {"set_up": {"gateway_cpu": gw_cpu, "emulator_and_wrk_cpu": load_cpu,
                                "duration_s": args.duration, "warmup_s": args.warmup, "body": BODY,
                                "cpus": ncpu, "servers": servers}, "runs": []}
    completed = {s: 0 for s in servers}
    # The direct runs call the emulator with the gateway's key: the emulator accepts it too.
    with processes.start_emulator(latency_scale=0.0, cpu=load_cpu, log_path=str(work / "emu.log"),
                                  extra=["--key", localstack.DEMO_KEY]) as emu, \
            contextlib.ExitStack() as stack:
        gateways: dict[str, processes.Server] = {}
        for server in servers:
            cfg = localstack.write_config(str(work / f"thrifty-{server}.yaml"),
                                          localstack.local_config(emu.url, f"sqlite:///{work}/ledger-{server}.db"))
            gateways[server] = stack.enter_context(
                start_gateway(cfg, server, gw_cpu, str(work / f"gw-{server}.log")))
        script = work / "body.lua"
        script.write_text(LUA % {"body": json.dumps(BODY), "key": localstack.DEMO_KEY})
        path = "/v1/chat/completions"
        for i, c in enumerate(args.concurrency):
            run_wrk(emu.url + path, str(script), c, args.warmup, load_cpu)
            d = run_wrk(emu.url + path, str(script), c, args.duration, load_cpu)
            row: dict = {"concurrency": c, "direct": d, "gateways": {}}
            print(f"c={c:<3} direct            {fmt(d)}", flush=True)
            k = i % len(servers)
            for server in servers[k:] + servers[:k]:
                url = gateways[server].url + path
                w = run_wrk(url, str(script), c, args.warmup, load_cpu)
                g = run_wrk(url, str(script), c, args.duration, load_cpu)
                completed[server] += w["requests"] - w["non2xx"] + g["requests"] - g["non2xx"]
                g["added_p50_ms"] = (g["p50_us"] - d["p50_us"]) / 1000
                g["added_p99_ms"] = (g["p99_us"] - d["p99_us"]) / 1000
                row["gateways"][server] = g
                print(f"c={c:<3} gateway {server:<8}  {fmt(g)} | added p50 {g['added_p50_ms']:.2f} ms "
                      f"p99 {g['added_p99_ms']:.2f} ms | errors {g['non2xx'] + g['socket_errors']}", flush=True)
            results["runs"].append(row)
    # The gateways stopped gracefully (SIGINT) above: each ledger holds a row per answered call
    # (more when wrk gave up on calls still in flight at the end of a run).
    results["ledger"] = {s: {"rows": SQLiteLedger(str(work / f"ledger-{s}.db")).count(),
                             "answered_200": completed[s]} for s in servers}
    for s, v in results["ledger"].items():
        print(f"ledger ({s}): {v['rows']} rows for {v['answered_200']} answered calls")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
