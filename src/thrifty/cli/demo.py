"""`thrifty demo`: emulator + gateway on loopback, a mixed workload, and where the money went;
then the end-to-end proof's short form (`thrifty.cli.proof`, what `bench/e2e.py` runs in full)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import urllib.request
from decimal import Decimal
from pathlib import Path

PROOF_CALLS = 80  # the short form's mix: bench/e2e.py --n 80 --seed 14
PROOF_SEED = 14
PROOF_CONCURRENCY = 8  # bench/e2e.py's default, so the figures are the ones it prints for the same mix


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run a local demo: emulator, gateway and a mixed workload",
                       description="Start the provider emulator and the gateway on loopback with "
                                   "embedded defaults (SQLite ledger), drive a small mixed workload "
                                   "through the real openai SDK, and print cost by feature and model "
                                   "and the saving of each lever against the calls sent directly. "
                                   "Then the end-to-end proof in short form: a labelled mix (FAQ "
                                   "paraphrases, headline classification, GSM8K, RouterBench's "
                                   "ARC/MBPP/Winogrande with recorded per-model answers, a deferred "
                                   "slice; fixed seed) sent all-frontier and direct to an emulator "
                                   "replaying the recorded answers, then through a gateway with every "
                                   "lever on: cost both ways, quality in points per cohort against the "
                                   "labels, each lever's share of the saving from the ledger, and the "
                                   "ledger against the emulator's invoice (`python bench/e2e.py` is "
                                   "the full run). The proof needs the shared data (THRIFTY_DATA_DIR, "
                                   "default ../shared/data); without it, that section is skipped with "
                                   "the reason.")
    p.add_argument("--calls", type=int, default=60, help="number of calls in the workload (default 60)")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--latency-scale", type=float, default=0.05,
                   help="scale of the emulator's model latencies (1 = realistic; default 0.05)")
    p.add_argument("--workdir", help="where the ledger and logs go (default: a new temporary folder)")
    p.add_argument("--no-semantic", dest="semantic", action="store_false",
                   help="leave the semantic cache off in the workload (it loads a small local embedding "
                        "model); the proof always runs with every lever on")
    p.add_argument("--no-proof", dest="proof", action="store_false",
                   help="skip the end-to-end proof's short form (about 15 s: two more servers and "
                        "twice its mix of calls)")
    p.add_argument("--proof-calls", type=int, default=PROOF_CALLS, metavar="N",
                   help=f"calls in the proof's mix (default {PROOF_CALLS}, seed {PROOF_SEED}; at least 20)")
    p.add_argument("--json", action="store_true",
                   help='print one JSON object: {"calls", "baseline_usd", "actual_usd", "levers": '
                        '{lever: saved}, "ledger_usd", "invoice_usd", ..., "proof"}; "proof" is '
                        'what `bench/e2e.py --json` prints ({"baseline": {"usd", "quality"}, '
                        '"thrifty": {"usd", "quality"}, "levers", "cohorts", ...}), or null with '
                        '"proof_skipped" saying why')
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from thrifty.cli import localstack, processes, workload
    from thrifty.core.savings_report import group_json, lever_totals, usd
    from thrifty.ledger import SQLiteLedger
    from thrifty.pricing import PriceBook

    if args.calls < 1:
        print("thrifty demo: --calls must be at least 1", file=sys.stderr)
        return 2
    if args.proof and args.proof_calls < 20:
        print("thrifty demo: --proof-calls must be at least 20 (each cohort needs a few)", file=sys.stderr)
        return 2
    work = Path(args.workdir or tempfile.mkdtemp(prefix="thrifty-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    ledger_path = work / "ledger.db"
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))

    say(f"thrifty demo: work folder {work}")
    with processes.start_emulator(latency_scale=args.latency_scale, log_path=str(work / "emulator.log")) as emu:
        config = localstack.local_config(emu.url, f"sqlite:///{ledger_path}")
        if args.semantic:
            # FAQ traffic: the same policy prompt, questions that vary in wording.
            config["levers"] = {"semantic_cache": {"enabled": True}}
            config["routes"] = [{"name": "faq", "match": {"feature": "support-chat"}, "semantic_cache": True}]
        # Deferred calls (the enrichment slice) are coalesced for a second, not a minute, so the
        # demo ends soon after the emulator's batches do (its batch_seconds, 2 s).
        config["batch"] = {"tick_s": 0.2, "max_wait_s": 1.0, "poll_min_s": 0.5, "poll_max_s": 1.0}
        config_path = localstack.write_config(str(work / "thrifty.yaml"), config)
        say(f"  emulator (upstream)  {emu.url}")
        gw = processes.start_gateway(config_path, log_path=str(work / "gateway.log"))
        say(f"  gateway              {gw.url}")
        calls = workload.build_workload(args.calls, deferred=max(1, args.calls // 8))
        done = [0]

        live = sys.stderr.isatty() and not args.json

        def progress() -> None:
            done[0] += 1
            if live:
                print(f"\r  workload: {done[0]}/{len(calls)} calls", end="", flush=True, file=sys.stderr)

        try:
            errors = asyncio.run(workload.run_workload(gw.url, localstack.DEMO_KEY, calls,
                                                       concurrency=args.concurrency, on_done=progress))
        finally:
            gw.stop()  # a graceful stop flushes the ledger
        if live:
            print(file=sys.stderr)
        say(f"  workload: {len(calls)} calls through the openai SDK")
        with urllib.request.urlopen(f"{emu.url}/_emulator/billing") as r:
            billing = json.load(r)

    ledger = SQLiteLedger(str(ledger_path))
    invoice = localstack.invoice_from_billing(billing, PriceBook())
    total = ledger.savings()[0]
    everything = ledger.totals("tenant")
    report = {
        # The contract of `thrifty demo --json` (docs/savings.md): money as exact decimal strings.
        "calls": len(calls),
        "baseline_usd": usd(total["baseline_usd"]),
        "actual_usd": usd(total["actual_usd"]),
        "levers": lever_totals(total),
        "ledger_usd": usd(sum((r["cost_usd"] for r in everything), Decimal(0))),
        "invoice_usd": usd(sum((v for v in invoice.values() if v is not None), Decimal(0))),
        # Beside it: what the sums leave apart, and how to reconcile them.
        "saved_estimated_usd": group_json(total)["saved_estimated_usd"],
        "provider_discount_usd": usd(total["provider_discount_usd"]),
        "failed": sum(e is not None for e in errors),
        "ledger_rows": ledger.count(),
        "emulator_requests": sum(m["requests"] for m in billing.get("models", {}).values())
        + sum(m["requests"] for m in billing.get("batch", {}).get("models", {}).values()),
        "workdir": str(work),
    }
    if not args.json:
        _print_report(report, total, ledger)
    proof, skipped = _proof(args, work, live=sys.stderr.isatty() and not args.json)
    report["proof"] = proof
    if skipped:
        report["proof_skipped"] = skipped
    if args.json:
        print(json.dumps(report))
    else:
        _print_proof(proof, skipped)
        _print_epilogue(report, gw.url)
    proof_failed = bool(proof and (proof["failed"]["baseline"] or proof["failed"]["thrifty"]))
    return 0 if report["failed"] == 0 and not proof_failed else 1


def _proof(args: argparse.Namespace, work: Path, *, live: bool) -> tuple[dict | None, str | None]:
    """The proof's short form in `work`/proof: (its report, None), or (None, why it was skipped)."""
    from thrifty.cli.proof import mix, run

    if not args.proof:
        return None, "--no-proof"
    reason = mix.missing_data()
    if reason:
        return None, reason
    if not args.json:
        print(f"\nthe end-to-end proof, short form: {args.proof_calls} labelled calls (seed {PROOF_SEED}), "
              "all-frontier and direct, then through a gateway with every lever on", flush=True)
    folder = work / "proof"
    folder.mkdir(exist_ok=True)
    return run.run(args.proof_calls, seed=PROOF_SEED, concurrency=PROOF_CONCURRENCY, workdir=folder,
                   live=live), None


def _print_proof(proof: dict | None, skipped: str | None) -> None:
    from thrifty.cli.proof.report import print_report

    if proof is None:
        print(f"\nthe end-to-end proof (short form): skipped, {skipped}")
        return
    print_report(proof)
    print(f"(the short form of `python bench/e2e.py --n {proof['config']['n']} --seed {proof['config']['seed']}`, "
          f"{proof['seconds']:g} s; every call's score both ways: {proof['workdir']}/calls.jsonl)")


def _print_report(report: dict, total: dict, ledger) -> None:  # type: ignore[no-untyped-def]
    from thrifty.core.savings_report import waterfall
    from thrifty.ledger import RowFilter

    def table(title: str, rows: list[dict]) -> None:
        print(f"\n{title:<24}{'calls':>7}{'uncached':>10}{'cached':>9}{'output':>9}{'cost USD':>13}")
        for r in sorted(rows, key=lambda r: r["cost_usd"] or 0, reverse=True):
            print(f"{str(r['key']):<24}{r['calls']:>7}{r['prompt_tokens']:>10}{r['cached_tokens']:>9}"
                  f"{r['completion_tokens']:>9}{r['cost_usd']:>13.6f}")

    table("feature", ledger.totals("feature"))
    table("model", ledger.totals("served_model"))
    table("tier", ledger.totals("tier"))
    hits = {kind: ledger.count(RowFilter(cache=kind)) for kind in ("exact", "semantic")}
    escalated = ledger.count(RowFilter(error_type_prefix="escalated:"))
    print(f"\nresponse caches: {hits['exact']} exact and {hits['semantic']} semantic hits; escalations: "
          f"{escalated} fast-tier answers failed a check and were re-run one tier up")
    print("\nwhere the money went (against the same calls sent directly; docs/savings.md)")
    for line in waterfall(total):
        print(line)
    print(f"\nledger total      ${Decimal(report['ledger_usd']):.6f} over {report['ledger_rows']} rows")
    print(f"emulator invoice  ${Decimal(report['invoice_usd']):.6f} over {report['emulator_requests']} "
          f"requests (the provider's own count, priced from the catalog)")
    if report["failed"]:
        print(f"{report['failed']} calls failed; see {report['workdir']}/gateway.log")


def _print_epilogue(report: dict, gateway_url: str) -> None:
    print(f"""
Point your own client at a gateway the same way (after `thrifty serve --config thrifty.yaml`):
  from openai import OpenAI
  client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="<your Thrifty virtual key>")
  client.chat.completions.create(model="gpt-4o-mini", messages=[...],
                                 extra_headers={{"x-thrifty-feature": "support-chat"}})
  # Anthropic SDK: Anthropic(base_url="http://127.0.0.1:8080", api_key="<virtual key>")
The demo's config and ledger are in {report['workdir']} (this run's gateway was {gateway_url}).""")
    if report.get("proof"):
        print(f"The proof's configs, ledger and logs are in {report['proof']['workdir']}.")
