"""Thrifty and the LiteLLM proxy side by side, against the same zero-latency upstream.

Set-up (2 cores): the proxy under test runs alone on core 0 (`taskset`), one at a time; the
emulator (`thrifty emulate --latency-scale 0`), wrk and this script share core 1. Every target
gets the same wrk script: a small non-streaming chat completion (temperature 0, max_tokens 64)
whose user message carries a counter, so no two requests are alike.

Targets, each started fresh, warmed up, then measured at every --concurrency:
  thrifty-pass-through     every lever off, no budgets or rate limits (the SQLite ledger stays:
                           it cannot be switched off in config)
  thrifty-production-like  the levers as shipped: OpenAI prompt-cache keys, the exact cache in memory
                           (temperature 0 makes every request eligible, the counter makes every
                           lookup a miss, so each answer is stored: the cache grows during a run),
                           the SQLite ledger, a tenant USD budget and a tenant rpm limit set far
                           above what a run spends
  litellm                  the LiteLLM proxy from PyPI in its own venv: one model
                           (openai/gpt-4o-mini, api_base = the emulator's /v1), a master key, no
                           database, one worker, LITELLM_LOCAL_MODEL_COST_MAP=True, LITELLM_LOG=ERROR
Before each proxy run, wrk runs straight at the emulator at the same concurrency ("direct"):
added latency = proxy p50 - direct p50. wrk waits up to 30 s for an answer, so slow answers are
counted, not dropped as timeouts (wrk's default is 2 s). Peak RSS is the proxy's process tree (summed /proc RSS,
sampled every 0.1 s) during the run at the highest concurrency. `others%` is the share of the
proxy's core that other processes took during its run (from /proc/stat): the noise to watch for
on a shared machine.

Printed: a table, then the ratios against the targets of the issue (Thrifty / LiteLLM: added p50
at c=1 <= 1/20, p99 at c=64 <= 1/20, peak RSS <= 1/4; production-like / pass-through req/s at
c=64 >= 0.85) and against the ratios first measured ("today"; none may get worse).

The first run creates the LiteLLM venv (--litellm-venv, pip install 'litellm[proxy]' from PyPI);
that is the only network access: the proxies are started with a dead HTTP(S) proxy for anything
but loopback, and LiteLLM reads its bundled cost map.

    python bench/peers.py [--duration 10] [--warmup 3] [--concurrency 1 64] [--skip-litellm]
                          [--litellm-python PATH] [--thrifty-src DIR] [--out bench/results/peers.json]

Needs `wrk` (Debian package `wrk`) and `taskset`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _peers_stack as stack  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MARK = "@@N@@"
BODY = {"model": "gpt-4o-mini", "messages": [
    {"role": "system", "content": "You are a helpful assistant for an online shop."},
    {"role": "user", "content": f"Where is my order {MARK}? It was due yesterday."}],
    "max_tokens": 64, "temperature": 0}

# Each wrk run passes a fresh nonce (digits only: nothing the exact cache's volatile patterns strip).
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
wrk.headers["x-thrifty-feature"] = "bench"
local pre = [==[%(pre)s]==]
local post = [==[%(post)s]==]
local nonce = "0"
local n = 0
init = function(args)
  if args[1] then nonce = args[1] end
end
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, pre .. nonce .. "-" .. n .. post)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"non2xx\\": %%d, " ..
    "\\"socket_errors\\": %%d, \\"timeouts\\": %%d, \\"p50_us\\": %%d, \\"p90_us\\": %%d, \\"p99_us\\": %%d, " ..
    "\\"max_us\\": %%d, \\"mean_us\\": %%f}\\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""

# Measured by the author on one machine, one run: Thrifty / LiteLLM (and production-like
# over pass-through). Lower is better except for the two throughput ratios.
TODAY = {"added_p50_lo": 0.058, "p99_hi": 0.10, "rss_hi": 0.37, "rps_hi": 1190 / 31,
         "production_over_pass": 887 / 1190}
NOISY_PCT = 10  # others' share of the proxy's core above which a run is flagged
TARGETS = {"added_p50_lo": ("<=", 1 / 20), "p99_hi": ("<=", 1 / 20), "rss_hi": ("<=", 1 / 4),
           "production_over_pass": (">=", 0.85)}


class Wrk:
    def __init__(self, script: Path, cpu: int, timeout_s: int = 30) -> None:
        self.script, self.cpu, self.timeout_s = script, cpu, timeout_s
        self.runs = 0

    def __call__(self, url: str, concurrency: int, duration: int) -> dict:
        self.runs += 1
        nonce = f"{int(time.time()) % 1_000_000}{self.runs:04d}"
        cmd = ["taskset", "-c", str(self.cpu), "wrk", "-t1", f"-c{concurrency}", f"-d{duration}s",
               f"--timeout={self.timeout_s}s", "--latency", "-s", str(self.script), url, "--", nonce]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + self.timeout_s + 60)
        line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no result (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")
        r = json.loads(line[7:])
        r["rps"] = (r["requests"] - r["non2xx"]) / (r["duration_us"] / 1e6)
        r["errors"] = r["non2xx"] + r["socket_errors"]
        return r


def one_call(url: str, key: str) -> dict:
    """One request with a body no wrk run sends: status and the headers that tell what happened."""
    body = json.dumps(BODY).replace(MARK, f"probe-{secrets.randbelow(10**9)}").encode()
    req = urllib.request.Request(url + "/v1/chat/completions", data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return {"status": r.status, "headers": {k.lower(): v for k, v in r.headers.items()
                                                    if k.lower().startswith(("x-thrifty", "x-litellm"))}}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "error": e.read()[:500].decode("utf-8", "replace")}


def ledger_stats(path: Path) -> dict:
    """What the gateway recorded (it flushed on SIGINT): rows by status and cache outcome."""
    if not path.exists():
        return {"rows": 0}
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT count(*), count(DISTINCT request_hash) FROM calls").fetchone()
        by_status = dict(con.execute("SELECT status, count(*) FROM calls GROUP BY status").fetchall())
        by_cache = dict(con.execute("SELECT cache, count(*) FROM calls GROUP BY cache").fetchall())
    finally:
        con.close()
    return {"rows": rows[0], "distinct_request_hashes": rows[1],
            "by_status": {str(k): v for k, v in by_status.items()}, "by_cache": by_cache}


def start_target(target: str, args: argparse.Namespace, work: Path, emu_url: str, key: str, cpu: int,
                 litellm_py: Path | None) -> tuple[stack.Proc, Path | None]:
    port = stack.free_port()
    if target == "litellm":
        assert litellm_py is not None
        cfg = stack.write_yaml(work / "litellm.yaml", stack.litellm_config(emu_url, key))
        proc = stack.Proc("litellm", stack.litellm_command(litellm_py, cfg, port), port=port,
                          health="/health/liveliness", log_path=work / "litellm.log", cpu=cpu,
                          env=stack.litellm_env(), cwd=str(work),
                          drop_env=("DATABASE_URL", "PYTHONPATH", "REDIS_HOST", "REDIS_URL", "VIRTUAL_ENV"))
        return proc, None
    production = target == "thrifty-production-like"
    ledger = work / f"ledger-{target}.db"
    cfg = stack.write_yaml(work / f"{target}.yaml",
                           stack.thrifty_config(emu_url, ledger, key, production=production))
    proc = stack.Proc(target, [sys.executable, "-m", "thrifty", "serve", "--config", str(cfg), "--port", str(port)],
                      port=port, health="/health", log_path=work / f"{target}.log", cpu=cpu,
                      env={**thrifty_env(args), **stack.NO_INTERNET}, cwd=str(work))
    return proc, ledger


def thrifty_env(args: argparse.Namespace) -> dict[str, str]:
    if not args.thrifty_src:
        return {}
    src = str(Path(args.thrifty_src).resolve())
    return {"PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}


def measure(target: str, proc: stack.Proc, wrk: Wrk, emu_url: str, args: argparse.Namespace) -> dict:
    path = "/v1/chat/completions"
    out: dict = {"runs": {}}
    hi = max(args.concurrency)
    for c in args.concurrency:
        if args.warmup:
            wrk(emu_url + path, c, args.warmup)
        d = wrk(emu_url + path, c, args.duration)
        if args.warmup:
            wrk(proc.url + path, c, args.warmup)
        with stack.RssSampler(proc.pid) as rss, stack.CoreShare(args.proxy_cpu, proc.pid) as core:
            g = wrk(proc.url + path, c, args.duration)
        g["peak_rss_mb"] = rss.peak / 2**20
        g["proxy_core"] = {"busy_pct": core.busy_pct, "proxy_pct": core.proxy_pct, "others_pct": core.others_pct}
        g["added_p50_ms"] = (g["p50_us"] - d["p50_us"]) / 1000
        g["added_p99_ms"] = (g["p99_us"] - d["p99_us"]) / 1000
        out["runs"][str(c)] = {"direct": d, "proxy": g}
        print(row(f"direct (for {target})", c, d), flush=True)
        print(row(target, c, g), flush=True)
        if c == hi:
            out["peak_rss_mb"] = g["peak_rss_mb"]
    out["vm_hwm_mb"] = stack.tree_hwm(proc.pid) / 2**20  # the kernel's peak over the process's life
    return out


HEADER = (f"{'target':<38} {'c':>3} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} "
          f"{'+p99 ms':>8} {'errors':>6} {'RSS MB':>7} {'others%':>7}")


def row(name: str, c: int, r: dict) -> str:
    added = (f"{r['added_p50_ms']:8.2f} {r['added_p99_ms']:8.2f}" if "added_p50_ms" in r else f"{'':8} {'':8}")
    rss = f"{r['peak_rss_mb']:7.0f}" if "peak_rss_mb" in r else f"{'':7}"
    if "proxy_core" in r:
        rss += f" {r['proxy_core']['others_pct']:7.1f}"
    return (f"{name:<38} {c:>3} {r['rps']:8.0f} {r['p50_us'] / 1000:8.2f} {r['p99_us'] / 1000:8.2f} "
            f"{added} {r['errors']:>6} {rss}")


def ratios(results: dict, lo: int, hi: int) -> dict:
    t = results["targets"]
    out: dict = {}

    def g(target: str, c: int) -> dict:
        return t[target]["runs"][str(c)]["proxy"]

    if "thrifty-pass-through" in t and "thrifty-production-like" in t:
        out["production_over_pass"] = {
            "what": f"req/s at c={hi}, thrifty production-like / thrifty pass-through",
            "value": g("thrifty-production-like", hi)["rps"] / g("thrifty-pass-through", hi)["rps"]}
    if "litellm" in t:
        lit_lo, lit_hi = g("litellm", lo), g("litellm", hi)
        for name in ("thrifty-pass-through", "thrifty-production-like"):
            if name not in t:
                continue
            mine_lo, mine_hi = g(name, lo), g(name, hi)
            label = name.removeprefix("thrifty-")
            out[f"{label}:added_p50_lo"] = {
                "what": f"added p50 at c={lo}, thrifty {label} / litellm",
                "value": mine_lo["added_p50_ms"] / lit_lo["added_p50_ms"] if lit_lo["added_p50_ms"] > 0 else None}
            out[f"{label}:p99_hi"] = {"what": f"p99 at c={hi}, thrifty {label} / litellm",
                                      "value": mine_hi["p99_us"] / lit_hi["p99_us"]}
            out[f"{label}:rss_hi"] = {"what": f"peak RSS at c={hi}, thrifty {label} / litellm",
                                      "value": t[name]["peak_rss_mb"] / t["litellm"]["peak_rss_mb"]}
            out[f"{label}:rps_hi"] = {"what": f"req/s at c={hi}, thrifty {label} / litellm (higher is better)",
                                      "value": mine_hi["rps"] / lit_hi["rps"] if lit_hi["rps"] > 0 else None}
    for k, v in out.items():
        base = k.split(":")[-1]
        v["today"] = TODAY.get(base)
        if base in TARGETS:
            op, bound = TARGETS[base]
            v["target"] = f"{op} {bound:.3g}"
            v["meets_target"] = None if v["value"] is None else (
                v["value"] <= bound if op == "<=" else v["value"] >= bound)
        higher_better = base in ("rps_hi", "production_over_pass")
        if v["today"] is not None and v["value"] is not None:
            v["no_worse_than_today"] = v["value"] >= v["today"] if higher_better else v["value"] <= v["today"]
    return out


def print_ratios(rs: dict) -> None:
    print(f"\n{'ratio':<66} {'value':>8} {'target':>8} {'today':>8}  verdict")
    for v in rs.values():
        val = "n/a" if v["value"] is None else f"{v['value']:8.3f}"
        today = "" if v["today"] is None else f"{v['today']:.3f}"
        verdict = []
        if "meets_target" in v:
            verdict.append("meets target" if v["meets_target"] else "MISSES target")
        if "no_worse_than_today" in v:
            verdict.append("no worse than today" if v["no_worse_than_today"] else "WORSE than today")
        print(f"{v['what']:<66} {val:>8} {v.get('target', ''):>8} {today:>8}  {', '.join(verdict)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of warm-up before each measured run (default 3)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 64],
                    help="wrk connections; ratios use the lowest and the highest (default: 1 64)")
    ap.add_argument("--out", default="bench/results/peers.json", help="JSON results (default %(default)s)")
    ap.add_argument("--skip-litellm", action="store_true", help="measure Thrifty only (no LiteLLM ratios)")
    ap.add_argument("--litellm-python", metavar="PATH",
                    help="python of an existing venv with litellm[proxy] (default: the --litellm-venv one)")
    ap.add_argument("--litellm-venv", default=str(REPO / ".bench-venv-litellm"), metavar="DIR",
                    help="where the LiteLLM venv is (made on first use; default %(default)s)")
    ap.add_argument("--keep-work", action="store_true",
                    help="keep the temporary folder (configs, logs, ledgers) after a successful run")
    ap.add_argument("--thrifty-src", metavar="DIR",
                    help="put DIR first on PYTHONPATH for Thrifty and the emulator (measure another checkout's src/)")
    args = ap.parse_args(argv)
    if args.duration < 1 or args.warmup < 0 or min(args.concurrency) < 1:
        ap.error("--duration must be >= 1, --warmup >= 0, --concurrency >= 1")
    args.concurrency = sorted(set(args.concurrency))
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"peers: `{tool}` not found (apt-get install {tool})", file=sys.stderr)
            return 2
    ncpu = os.cpu_count() or 1
    proxy_cpu, load_cpu = (0, 1) if ncpu >= 2 else (0, 0)
    args.proxy_cpu = proxy_cpu
    if ncpu < 2:
        print("peers: one CPU only: the proxy shares it with wrk and the emulator", file=sys.stderr)
    os.sched_setaffinity(0, {load_cpu})  # this script's own sampling stays off the proxy's core

    litellm_py, litellm_version = None, None
    if not args.skip_litellm:
        try:
            litellm_py, litellm_version = stack.ensure_litellm(args.litellm_python, Path(args.litellm_venv))
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"peers: {exc}\n(--skip-litellm measures Thrifty alone)", file=sys.stderr)
            return 2

    work = Path(tempfile.mkdtemp(prefix="thrifty-peers-"))
    key = "sk-bench-" + secrets.token_hex(24)  # LiteLLM refuses weak master keys; Thrifty takes any
    pre, post = json.dumps(BODY).split(MARK)
    script = work / "body.lua"
    script.write_text(LUA % {"key": key, "pre": pre, "post": post})
    wrk = Wrk(script, load_cpu)
    targets = ["thrifty-pass-through", "thrifty-production-like"] + ([] if args.skip_litellm else ["litellm"])
    lo, hi = args.concurrency[0], args.concurrency[-1]
    results: dict = {
        "set_up": {"proxy_cpu": proxy_cpu, "emulator_wrk_cpu": load_cpu, "cpus": ncpu,
                   "duration_s": args.duration, "warmup_s": args.warmup, "concurrency": args.concurrency,
                   "body": BODY, "body_note": f"{MARK} is '<nonce>-<counter>': unique per request",
                   "litellm_version": litellm_version, "litellm_python": str(litellm_py) if litellm_py else None,
                   "thrifty_src": args.thrifty_src, "work_dir": str(work),
                   "load_avg_at_start": os.getloadavg()},
        "targets": {}}
    print(f"peers: work dir {work}; proxy on core {proxy_cpu}, emulator + wrk on core {load_cpu}"
          + (f"; litellm {litellm_version}" if litellm_version else ""), flush=True)
    emu_port = stack.free_port()
    emulator = stack.Proc("emulator", [sys.executable, "-m", "thrifty", "emulate", "--host", "127.0.0.1",
                                       "--port", str(emu_port), "--latency-scale", "0",
                                       "--key", key],  # the direct runs use the bench key
                          port=emu_port, health="/health", log_path=work / "emulator.log", cpu=load_cpu,
                          env=thrifty_env(args), cwd=str(work))
    try:
        emulator.wait_ready(60)
        print(HEADER, flush=True)
        for target in targets:
            proc, ledger = start_target(target, args, work, emulator.url, key, proxy_cpu, litellm_py)
            try:
                ready_s = proc.wait_ready(180)
                probe = one_call(proc.url, key)
                if probe["status"] != 200:
                    raise RuntimeError(f"{target}: a probe call answered {probe['status']}: {probe.get('error')}"
                                       f"\nlog {proc.log_path}:\n{proc.tail()}")
                res = measure(target, proc, wrk, emulator.url, args)
                res.update(ready_s=ready_s, probe=probe)
            finally:
                proc.stop()
            if ledger is not None:
                res["ledger"] = ledger_stats(ledger)
            results["targets"][target] = res
    finally:
        emulator.stop()

    print()
    for name, res in results["targets"].items():
        if "ledger" in res:
            led, probe = res["ledger"], res["probe"]["headers"].get("x-thrifty-cache")
            print(f"{name}: probe x-thrifty-cache={probe}; ledger {led.get('rows')} rows "
                  f"({led.get('distinct_request_hashes')} distinct requests), cache {led.get('by_cache')}, "
                  f"status {led.get('by_status')}")
    results["ratios"] = ratios(results, lo, hi)
    print_ratios(results["ratios"])
    noisy = [f"{name} c={c} ({r['proxy']['proxy_core']['others_pct']:.0f}%)"
             for name, res in results["targets"].items() for c, r in res["runs"].items()
             if r["proxy"]["proxy_core"]["others_pct"] > NOISY_PCT]
    results["noisy_runs"] = noisy
    if noisy:
        print(f"\nnoisy: other processes took over {NOISY_PCT}% of the proxy's core during: {', '.join(noisy)}; "
              "ratios built on these runs are not to be trusted (run again on a quiet machine)")
    results["load_avg_at_end"] = os.getloadavg()
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nload average {results['set_up']['load_avg_at_start'][0]:.2f} at start, "
          f"{results['load_avg_at_end'][0]:.2f} at end (2 cores: above ~2 others share them; numbers are noisy)")
    print(f"wrote {out}")
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)  # on failure it stays, with the servers' logs
    return 0


if __name__ == "__main__":
    sys.exit(main())
