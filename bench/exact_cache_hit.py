"""Exact-cache hit against a pass-through call, through the same gateway, zero upstream latency.

Both runs send one fixed request with wrk; only the temperature differs: 0 (after the first call,
every request is an exact-cache hit) and 0.7 (not cacheable: each request goes to the emulator).
The gateway is pinned alone to core 0; emulator and wrk share core 1.

    python bench/exact_cache_hit.py [--duration 10] [--concurrency 1 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import BODY, LUA, run_wrk  # noqa: E402  (the same wrk harness as the overhead bench)

from thrifty.cli import localstack, processes  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--out", default="bench/results/exact_cache_hit.json")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="thrifty-cachebench-"))
    results: dict = {"runs": []}
    with processes.start_emulator(latency_scale=0.0, cpu=1, log_path=str(work / "emu.log")) as emu:
        cfg = localstack.write_config(str(work / "thrifty.yaml"),
                                      localstack.local_config(emu.url, f"sqlite:///{work}/ledger.db"))
        with processes.start_gateway(cfg, cpu=0, log_path=str(work / "gw.log")) as gw:
            scripts = {}
            for name, temperature in (("hit", 0), ("pass_through", 0.7)):
                script = work / f"{name}.lua"
                script.write_text(LUA % {"body": json.dumps({**BODY, "temperature": temperature}),
                                         "key": localstack.DEMO_KEY})
                scripts[name] = str(script)
            url = f"{gw.url}/v1/chat/completions"
            for c in args.concurrency:
                row = {"concurrency": c}
                for name, script in scripts.items():
                    run_wrk(url, script, c, 2, 1)  # warm-up (and, for hits, fill the cache)
                    row[name] = run_wrk(url, script, c, args.duration, 1)
                h, p = row["hit"], row["pass_through"]
                row["p50_speedup"] = p["p50_us"] / h["p50_us"]
                row["rps_ratio"] = h["rps"] / p["rps"]
                results["runs"].append(row)
                print(f"c={c:<3} hit p50 {h['p50_us']/1000:.3f} ms {h['rps']:.0f} req/s | pass-through p50 "
                      f"{p['p50_us']/1000:.3f} ms {p['rps']:.0f} req/s | hit is {row['p50_speedup']:.2f}x faster (p50), "
                      f"{row['rps_ratio']:.2f}x the throughput", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
