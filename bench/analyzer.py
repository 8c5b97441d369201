"""`thrifty analyze` and `thrifty simulate` on the shared traces and a generated 1,000,000-row ledger.

Each command runs as its own process (as a user runs it); its wall time and peak resident memory
(ru_maxrss from wait4: the largest single process of the command, its simulate workers
included; forked workers share the parent's pages, so their sum overstates the machine's use)
are printed and written to bench/results/analyzer.json,
against the issue's targets of 30 s and 2 GB each. Also: the simulated prompt-cache saving on
Mooncake against the upper bound its hash ids allow (every block seen before in the trace read
from the cache, at the model's cache-read price, whatever its age), at the providers' documented
idle lifetimes of an automatic cache entry (5 min, 10 min, 1 h), so the gap that the provider's
expiry makes is visible rather than hidden in one number.

    .venv/bin/python bench/analyzer.py [--rows 1000000] [--workdir DIR] [--skip-ledger]

Needs the shared data (THRIFTY_DATA_DIR, default ../shared/data); skips what is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("THRIFTY_DATA_DIR", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results" / "analyzer.json"
TARGET_S, TARGET_MB = 30.0, 2048.0
MODEL = "gpt-4o"  # token-only traces are priced as this model (automatic prompt caching, no write price)

POLICY = """\
providers:
  openai: {kind: openai, base_url: "http://127.0.0.1:1/v1"}
  anthropic: {kind: anthropic, base_url: "http://127.0.0.1:1"}
deployments:
  gpt-4o: {provider: openai, model: gpt-4o, tier: standard}
  gpt-4o-mini: {provider: openai, model: gpt-4o-mini, tier: fast}
  claude-sonnet-4-5: {provider: anthropic, model: claude-sonnet-4-5, tier: standard}
keys:
  k: {tenant: t}
routes:
  - {name: nightly, match: {feature: nightly-report}, defer: true}
  - {name: summaries, match: {feature: summarize}, output_cap: 300}
routing:
  tiers: {fast: [gpt-4o-mini], standard: [gpt-4o, claude-sonnet-4-5]}
  default_tier: standard
  allow_downgrade: true
  rules:
    - {when: {request_type: [classification, extraction], input_tokens: {lt: 4000}}, tier: fast}
"""


def run(cmd: list[str]) -> dict:
    """One command as a child process: wall seconds, peak RSS in MB, exit status, its stdout."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        out.seek(0)
        stdout = out.read().decode(errors="replace")
    return {"wall_s": round(wall, 2), "peak_mb": round(usage.ru_maxrss / 1024, 1), "rc": proc.returncode,
            "stdout": stdout, "stderr": err.strip().splitlines()[-1:] if proc.returncode else []}


def thrifty(*args: str) -> list[str]:
    return [sys.executable, "-m", "thrifty", *args]


def generate_ledger(path: Path, rows: int) -> float:
    """A SQLite ledger of `rows` calls written through the real schema and driver (migrations and
    the driver's own batch insert), seven days of mixed traffic; seconds taken."""
    from thrifty.ledger.schema import LedgerRow
    from thrifty.ledger.sqlite import SQLiteDriver
    from thrifty.pricing import PriceBook
    from thrifty.contract import Usage

    start = time.perf_counter()
    path.unlink(missing_ok=True)
    driver = SQLiteDriver(str(path))
    driver.migrate()
    conn = driver.connect()
    book = PriceBook()
    rnd = random.Random(12)
    features = ["chat", "search", "summarize", "nightly-report", "classify", "agent"]
    models = [("gpt-4o", "openai"), ("gpt-4o-mini", "openai"), ("claude-sonnet-4-5", "anthropic")]
    t0 = 1_764_000_000.0
    batch: list[LedgerRow] = []
    for i in range(rows):
        model, provider = models[rnd.randrange(3)]
        prompt = int(rnd.lognormvariate(7, 1.2)) + 10
        cached = prompt // 2 if rnd.random() < 0.3 else 0
        out = int(rnd.lognormvariate(5, 1)) + 1
        status = 200 if rnd.random() < 0.97 else rnd.choice((429, 500))
        usage = Usage(input_tokens=prompt - cached, cache_read_tokens=cached, output_tokens=out)
        cost = book.cost(model, usage, provider=provider)
        started = t0 + i * (7 * 86400 / rows)
        batch.append(LedgerRow(
            request_id=f"req-{i:08d}", started_at=started, finished_at=started + 1.2,
            tenant=f"tenant-{rnd.randrange(20)}", feature=rnd.choice(features), user=f"u{rnd.randrange(5000)}",
            task=None, call_site=f"app/{rnd.randrange(40)}.py", surface="openai", provider=provider,
            requested_model=model, served_model=model, tier=None, status=status,
            error_type=None if status == 200 else "upstream", prompt_tokens=prompt - cached, cached_tokens=cached,
            completion_tokens=out, cost_usd=cost.total if cost and status == 200 else Decimal(0),
            latency_ms=1200.0, request_hash=f"{rnd.randrange(rows // 4):016x}"))
        if len(batch) == 50_000:
            driver.write_batch(conn, batch)
            batch = []
    if batch:
        driver.write_batch(conn, batch)
    conn.close()
    return time.perf_counter() - start


def mooncake_upper_bound(path: Path) -> Decimal:
    """USD saved if every block seen before anywhere in the trace were read at the cache price."""
    from thrifty.pricing import PriceBook

    card = PriceBook().card(MODEL)
    seen: set[int] = set()
    tokens = 0
    with open(path) as f:
        records = sorted((json.loads(line) for line in f if line.strip()), key=lambda r: r["timestamp"])
    for r in records:
        repeated = sum(1 for h in r["hash_ids"] if h in seen)
        tokens += min(repeated * 512, r["input_length"])
        seen.update(r["hash_ids"])
    return tokens * (card.input - card.cache_read) / Decimal(1_000_000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the generated ledger")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "thrifty-bench-analyzer"))
    ap.add_argument("--skip-ledger", action="store_true", help="only the shared traces")
    ap.add_argument("--regenerate", action="store_true", help="write the generated ledger again")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    policy = work / "policy.yaml"
    policy.write_text(POLICY)
    inputs: dict[str, Path] = {
        "azure_conv": DATA / "traces" / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv",
        "azure_code": DATA / "traces" / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv",
        "mooncake": DATA / "traces" / "mooncake" / "conversation_trace.jsonl",
    }
    results: dict = {"targets": {"wall_s": TARGET_S, "peak_mb": TARGET_MB}, "cpus": os.cpu_count(),
                     "load_average": os.getloadavg(), "runs": {}, "notes": []}
    for name, path in list(inputs.items()):
        if not path.is_file():
            print(f"skip {name}: {path} not found (set THRIFTY_DATA_DIR)")
            results["notes"].append(f"{name} skipped: data not found")
            del inputs[name]
    if not args.skip_ledger:
        ledger = work / f"ledger-{args.rows}.db"
        if ledger.is_file() and not args.regenerate:
            print(f"reusing the {args.rows:,}-row ledger at {ledger} (--regenerate to write it again)")
        else:
            print(f"generating a {args.rows:,}-row ledger at {ledger} ...", flush=True)
            results["ledger_generate_s"] = round(generate_ledger(ledger, args.rows), 1)
        inputs[f"ledger_{args.rows}"] = ledger
    analyze_ok = subprocess.run(thrifty("analyze", "--help"), capture_output=True, cwd=ROOT).returncode == 0
    if not analyze_ok:
        results["notes"].append("thrifty analyze is not available: only simulate was timed")
    print(f"{'input':<18}{'command':<10}{'wall s':>8}{'peak MB':>9}  ok")
    for name, path in inputs.items():
        model = [] if name.startswith("ledger") else ["--model", MODEL]
        commands = {"simulate": thrifty("simulate", str(path), "--config", str(policy), *model, "--json")}
        if analyze_ok:
            commands = {"analyze": thrifty("analyze", str(path), *model, "--json"), **commands}
        for command, cmd in commands.items():
            r = run(cmd)
            ok = r["rc"] == 0 and r["wall_s"] <= TARGET_S and r["peak_mb"] <= TARGET_MB
            entry = {k: r[k] for k in ("wall_s", "peak_mb", "rc")} | {"within_targets": ok}
            if r["rc"]:
                entry["error"] = r["stderr"]
            elif command == "simulate":
                out = json.loads(r["stdout"])
                entry["calls"], entry["baseline_usd"], entry["simulated_usd"] = (
                    out["calls"], out["baseline_usd"], out["simulated_usd"])
            results["runs"].setdefault(name, {})[command] = entry
            print(f"{name:<18}{command:<10}{r['wall_s']:>8.2f}{r['peak_mb']:>9.1f}  {'yes' if ok else 'NO'}"
                  + (f"  ({r['stderr']})" if r["rc"] else ""), flush=True)
    if "mooncake" in inputs:
        bound = mooncake_upper_bound(inputs["mooncake"])
        cache = {"upper_bound_usd": float(bound), "model": MODEL, "by_ttl": {}}
        print(f"\nMooncake prompt-cache saving vs the upper bound (${bound:.4f}, every repeated block read):")
        for ttl in (300, 600, 3600):
            r = run(thrifty("simulate", str(inputs["mooncake"]), "--config", str(policy), "--model", MODEL,
                            "--auto-cache-ttl", str(ttl), "--json"))
            saved = json.loads(r["stdout"])["levers"].get("prompt_cache", {"saved_usd": 0.0})["saved_usd"]
            share = saved / float(bound) if bound else 0.0
            cache["by_ttl"][str(ttl)] = {"saved_usd": saved, "share_of_bound": round(share, 4),
                                         "within_5pct": share >= 0.95}
            print(f"  entry lifetime {ttl:>5} s: ${saved:.4f} = {share:.1%} of the bound")
        results["mooncake_prompt_cache"] = cache
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
