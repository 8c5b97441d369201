"""The end-to-end proof: a labelled SaaS-like mix, all-frontier and direct vs through Thrifty.

    python bench/e2e.py [--n 400] [--json] [--out bench/results/e2e.json] [--learned | --policy FILE]

Both runs are real processes over loopback HTTP: `thrifty emulate --config` replays the
recorded per-model answers of the mix (bench/e2e_mix.py says what each cohort's quality means),
and `thrifty serve` runs a config with every lever on (provider prompt caching, the exact cache,
the semantic cache on the FAQ route, tier routing with rules and escalation checks, output caps,
the batch lane for the deferred slice).

- Baseline: every call of the mix sent straight to the emulator as the product sends it today,
  on the frontier model (`gpt-4o`, the strongest model of the mix), interactive. Its cost is the
  emulator's billing counter priced with genai-prices (per cohort: each answer's usage priced).
- Thrifty: the same calls, same model asked for, through the gateway; the deferred slice carries
  `x-thrifty-defer: 24h`. Its cost is the ledger's; the emulator's invoice must match it.
- Quality: points 0-100 per cohort against the labels; each lever's saving from the ledger's
  lever accounting (`Ledger.savings`, what `GET /admin/savings` serves).

`--json` prints {"baseline": {"usd", "quality"}, "thrifty": {"usd", "quality"}, "levers":
{lever: saved_usd}, "cohorts": {name: {"baseline_quality", "thrifty_quality", "baseline_usd",
"thrifty_usd"}}} plus the reconciliation and the target's verdict under other keys; the same
object is written to --out.

`--learned` trains a routing policy first (`thrifty train router`'s code, on
`e2e_mix.policy_training_rows`: RouterBench's train files, none of the mix's prompts) and serves
it on the `trivial` rule; `--policy FILE` serves a policy trained elsewhere; either writes to
bench/results/e2e_learned.json unless --out says otherwise. Progress goes to stderr when it is a
terminal. Needs the shared data (THRIFTY_DATA_DIR, default ../shared/data); without it, exits 2 with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import e2e_mix  # noqa: E402
from e2e_mix import FRONTIER, MODELS, Item  # noqa: E402

from thrifty.cli import localstack, processes  # noqa: E402

TARGET_SAVING = Decimal("0.70")
TARGET_QUALITY_LOSS = 1.0  # points, overall and in every cohort
TRIVIAL_TYPES = ("classification", "extraction", "rewrite")  # the `trivial` rule's request types
POLICY_RULE = "trivial"  # the rule a learned policy serves on
CAPS = {"faq": 200, "headlines": 16, "enrichment": 100}  # shaping: each feature's realistic ceiling


def emulator_config(outcomes_path: Path) -> dict[str, Any]:
    return {"latency_scale": 0, "batch_seconds": 1.0,
            "recorded": {"path": str(outcomes_path), "models": dict(MODELS)}}


def gateway_config(emulator_url: str, ledger_url: str, policy: Path | None = None) -> dict[str, Any]:
    """Every lever on: what an operator would write for this product.

    With a learned `policy`, the `trivial` rule's tier is the heavy one and the policy sends the
    requests it trusts the fast tier with there (the router downgrades to a policy's cheap tier,
    which must sit below the rule's own); the rule's checks still guard what the fast tier answers."""
    config = localstack.local_config(emulator_url, ledger_url)
    config["deployments"] = {
        "gpt-4o": {"provider": "openai", "model": "gpt-4o", "tier": "heavy"},
        "gpt-4o-mini": {"provider": "openai", "model": "gpt-4o-mini", "tier": "fast"},
        "llama-3.1-8b-instant": {"provider": "groq", "model": "llama-3.1-8b-instant", "tier": "fast",
                                 "price_provider": "groq"},
    }
    config["aliases"] = {}
    config["routing"] = {
        "tiers": {"fast": ["llama-3.1-8b-instant", "gpt-4o-mini"], "heavy": ["gpt-4o"]},
        "default_tier": "fast",
        "allow_downgrade": [FRONTIER],  # the product asks for gpt-4o; rules may serve it cheaper
        "rules": [
            {"name": "reasoning", "when": {"request_type": "reasoning"}, "tier": "heavy"},
            {"name": "code", "when": {"request_type": "code"}, "tier": "heavy"},
            {"name": "agents", "when": {"tools": True}, "tier": "heavy"},
            {"name": POLICY_RULE, "when": {"request_type": list(TRIVIAL_TYPES)},
             "tier": "fast", "checks": ["empty", "refusal", "truncated", "consistency"], "escalate_to": "heavy"},
        ],
        "escalation": {"checks": ["empty", "refusal", "truncated"], "max_steps": 1},
    }
    if policy is not None:
        rule = next(r for r in config["routing"]["rules"] if r["name"] == POLICY_RULE)
        rule.update({"tier": "heavy", "policy": str(policy)})
    config["levers"] = {"prompt_cache": {"enabled": True}, "exact_cache": {"enabled": True},
                        "semantic_cache": {"enabled": True}}
    config["routes"] = [
        {"name": "faq", "match": {"feature": "faq"}, "semantic_cache": True, "output_cap": CAPS["faq"]},
        {"name": "headlines", "match": {"feature": "headlines"}, "output_cap": CAPS["headlines"]},
        {"name": "enrichment", "match": {"feature": "enrichment"}, "output_cap": CAPS["enrichment"]},
    ]
    # Deferred calls are coalesced for a second, not a minute, so the run ends soon after the
    # emulator's batches do.
    config["batch"] = {"tick_s": 0.2, "max_wait_s": 1.0, "poll_min_s": 0.5, "poll_max_s": 1.0}
    return config


FAST_SERVES_FIRST = "llama-3.1-8b-instant"  # the fast tier's cheapest deployment: what the policy's cheap model is


def train_learned_policy(workdir: Path, *, target: float, seed: int = 0) -> tuple[Path, dict[str, Any]]:
    """A policy for the `trivial` rule, from the train side of the split only: the RouterBench train
    rows (none of the mix's prompts) that the gateway types as the rule's request types, the cheap
    model being the one the fast tier serves first and the strong one the frontier's recording.
    The same code as `thrifty train router --data DATA --config CONFIG --out POLICY --target T`;
    the threshold is the one it saves (out-of-fold on these rows), never fitted on the mix."""
    from thrifty.routing.eval import load_setup, read_rows
    from thrifty.routing.learned_train import train_policy

    data_path, config_path, out = workdir / "policy_train.jsonl", workdir / "policy_setup.yaml", workdir / "policy.json"
    e2e_mix.write_outcomes(data_path, e2e_mix.policy_training_rows(request_types=TRIVIAL_TYPES))
    # A routing section alone: deployment names are the outcome rows' model names, tiers as the e2e's.
    tiers = {"fast": [MODELS[FAST_SERVES_FIRST], *(MODELS[d] for d in MODELS if d not in (FAST_SERVES_FIRST, FRONTIER))],
             "heavy": [MODELS[FRONTIER]]}
    localstack.write_config(str(config_path), {"tiers": tiers, "default_tier": "fast"})
    policy = train_policy(read_rows(str(data_path)), load_setup(str(config_path)), target=target, seed=seed,
                          strong=MODELS[FRONTIER], weak=MODELS[FAST_SERVES_FIRST],
                          trained_on={"data": str(data_path), "config": str(config_path), "holdout": 0.0,
                                      "seed": seed, "held_out_rows": 0})
    policy.save(str(out))
    chosen = next((g for g in policy.grid if g["threshold"] == policy.threshold), None)
    return out, {"trained": True, "rows": policy.trained_on["rows"], "target": target,
                 "cheap_model": policy.cheap_model, "strong_model": policy.strong_model,
                 "positive_share": round(policy.trained_on["positive_share"], 4), "threshold": policy.threshold,
                 "expected_on_train": chosen}


def describe_policy(path: Path) -> dict[str, Any]:
    from thrifty.routing.learned import load_policy

    policy = load_policy(path)
    return {"trained": False, "file": str(path), "threshold": policy.threshold, "cheap_model": policy.cheap_model,
            "strong_model": policy.strong_model, "rows": policy.trained_on.get("rows")}


def request_of(item: Item) -> dict[str, Any]:
    body: dict[str, Any] = {"model": FRONTIER, "messages": item.messages, "temperature": 0}
    if item.max_tokens:
        body["max_tokens"] = item.max_tokens
    return body


async def send_all(base_url: str, api_key: str, items: list[Item], *, through_gateway: bool,
                   concurrency: int, on_done: Callable[[], None]) -> list[dict[str, Any]]:
    """Each item's answer text, usage, served model and cache outcome (or its error)."""
    import openai

    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=2, timeout=120)
    gate = asyncio.Semaphore(concurrency)

    async def one(item: Item) -> dict[str, Any]:
        headers = {"x-thrifty-feature": item.cohort} if through_gateway else {}
        if through_gateway and item.defer:
            headers["x-thrifty-defer"] = "24h"
        async with gate:
            try:
                raw = await client.chat.completions.with_raw_response.create(**request_of(item), extra_headers=headers)
                if raw.http_response.status_code == 202:
                    resp = await _job_answer(client, raw.http_response.json())
                    h = {"x-thrifty-model": resp.get("model"), "x-thrifty-cache": "deferred"}
                else:
                    resp, h = raw.http_response.json(), raw.http_response.headers
                text = resp["choices"][0]["message"].get("content") or ""
                return {"answer": text, "usage": resp.get("usage"), "model": h.get("x-thrifty-model") or resp.get("model"),
                        "cache": h.get("x-thrifty-cache"), "tier": h.get("x-thrifty-tier"), "error": None}
            except (openai.APIError, KeyError, IndexError, TypeError) as exc:
                return {"answer": None, "usage": None, "model": None, "cache": None, "tier": None,
                        "error": f"{type(exc).__name__}: {exc}"}
            finally:
                on_done()

    try:
        return await asyncio.gather(*(one(i) for i in items))
    finally:
        await client.close()


async def _job_answer(client: Any, job: dict[str, Any], timeout_s: float = 180.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while job["status"] not in ("completed", "errored", "expired", "cancelled"):
        if loop.time() > deadline:
            raise TimeoutError(f"deferred job {job['id']} not done after {timeout_s:g} s")
        await asyncio.sleep(0.25)
        job = await client.get(f"/thrifty/jobs/{job['id']}", cast_to=object)
    if job["status"] != "completed" or not job.get("response"):
        raise KeyError(f"deferred job {job['id']} ended {job['status']}")
    return job["response"]


def _served_recorded(model: str | None) -> str | None:
    """Response models are dated snapshots (gpt-4o-2024-08-06); map them back to the catalog name."""
    if not model:
        return None
    return next((m for m in sorted(MODELS, key=len, reverse=True) if model == m or model.startswith(m + "-")), model)


def quality(items: list[Item], results: list[dict[str, Any]]) -> tuple[dict[str, float], float]:
    by: dict[str, list[float]] = {}
    for item, res in zip(items, results):
        by.setdefault(item.cohort, []).append(e2e_mix.score(item, res["answer"], _served_recorded(res["model"])))
    every = [s for v in by.values() for s in v]
    return ({c: 100 * sum(v) / len(v) for c, v in by.items()}, 100 * sum(every) / len(every) if every else 0.0)


def call_cost(prices: Any, usage: dict[str, Any] | None) -> Decimal:
    from thrifty.wire import OPENAI_CHAT

    if not usage:
        return Decimal(0)
    cost = prices.cost(FRONTIER, OPENAI_CHAT.usage_of(usage))
    return Decimal(0) if cost is None else cost.total


def _billing(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_emulator/billing") as r:
        return json.load(r)


def _invoice(billing: dict[str, Any], prices: Any) -> Decimal:
    return sum((v for v in localstack.invoice_from_billing(billing, prices).values() if v is not None), Decimal(0))


def _progress(label: str, total: int, live: bool) -> Callable[[], None]:
    done = [0]

    def tick() -> None:
        done[0] += 1
        if live:
            end = "\n" if done[0] == total else ""
            print(f"\r  {label}: {done[0]}/{total} calls", end=end, flush=True, file=sys.stderr)

    return tick


def run(n: int, *, seed: int = 14, concurrency: int = 8, workdir: Path, live: bool = False,
        log: Callable[[str], None] = lambda s: None, policy: Path | None = None, learned: bool = False,
        policy_target: float = 0.95) -> dict[str, Any]:
    from thrifty.core.savings_report import lever_totals, usd
    from thrifty.ledger import SQLiteLedger
    from thrifty.pricing import PriceBook

    started = time.monotonic()
    items, outcomes = e2e_mix.build_mix(n, seed)
    outcomes_path = workdir / "outcomes.jsonl"
    e2e_mix.write_outcomes(outcomes_path, outcomes)
    emu_cfg = localstack.write_config(str(workdir / "emulator.yaml"), emulator_config(outcomes_path))
    prices = PriceBook()
    ledger_path = workdir / "ledger.db"
    policy_info: dict[str, Any] | None = None
    if learned:
        policy, policy_info = train_learned_policy(workdir, target=policy_target)
        log(f"e2e: learned policy on {policy_info['rows']} train-side rows, threshold {policy_info['threshold']:.4f}")
    elif policy is not None:
        policy_info = describe_policy(policy)
    log(f"e2e: {len(items)} calls in {len({i.cohort for i in items})} cohorts; work folder {workdir}")
    with processes.start_emulator(log_path=str(workdir / "emulator.log"), extra=["--config", emu_cfg]) as emu:
        base = asyncio.run(send_all(emu.url, "emulator-key", items, through_gateway=False, concurrency=concurrency,
                                    on_done=_progress("baseline (direct, all-frontier)", len(items), live)))
        base_billing = _billing(emu.url)
        urllib.request.urlopen(urllib.request.Request(f"{emu.url}/_emulator/reset", method="POST")).close()
        config_path = localstack.write_config(str(workdir / "thrifty.yaml"),
                                              gateway_config(emu.url, f"sqlite:///{ledger_path}", policy))
        gw = processes.start_gateway(config_path, log_path=str(workdir / "gateway.log"), env={"PYTHONUNBUFFERED": "1"})
        try:
            thr = asyncio.run(send_all(gw.url, localstack.DEMO_KEY, items, through_gateway=True, concurrency=concurrency,
                                       on_done=_progress("thrifty (every lever on)", len(items), live)))
        finally:
            gw.stop()  # a graceful stop flushes the ledger
        thr_billing = _billing(emu.url)

    _write_calls(workdir / "calls.jsonl", items, base, thr)
    ledger = SQLiteLedger(str(ledger_path))
    total = ledger.savings()[0]
    per_feature = {g["key"]: g for g in ledger.savings(group_by="feature")}
    base_q, base_all = quality(items, base)
    thr_q, thr_all = quality(items, thr)
    base_by: dict[str, Decimal] = {}
    for item, res in zip(items, base):
        base_by[item.cohort] = base_by.get(item.cohort, Decimal(0)) + call_cost(prices, res["usage"])
    baseline_usd = _invoice(base_billing, prices)
    thrifty_usd = total["actual_usd"]
    cohorts = {}
    for c in e2e_mix.SHARES:
        if c not in base_q:
            continue
        g = per_feature.get(c)
        cohorts[c] = {"baseline_quality": round(base_q[c], 2), "thrifty_quality": round(thr_q[c], 2),
                      "baseline_usd": float(base_by.get(c, Decimal(0))),
                      "thrifty_usd": float(g["actual_usd"]) if g else 0.0,
                      "calls": sum(i.cohort == c for i in items),
                      "ledger_baseline_usd": float(g["baseline_usd"]) if g else 0.0,
                      "levers": {k: float(v) for k, v in lever_totals(g).items()} if g else {},
                      "cache": _count(r["cache"] for i, r in zip(items, thr) if i.cohort == c),
                      "served": _count(_served_recorded(r["model"]) for i, r in zip(items, thr) if i.cohort == c)}
    saving = (baseline_usd - thrifty_usd) / baseline_usd if baseline_usd else Decimal(0)
    worst = max(cohorts, key=lambda c: cohorts[c]["baseline_quality"] - cohorts[c]["thrifty_quality"])
    report = {
        "baseline": {"usd": float(baseline_usd), "quality": round(base_all, 2)},
        "thrifty": {"usd": float(thrifty_usd), "quality": round(thr_all, 2)},
        "levers": {k: float(v) for k, v in lever_totals(total).items()},
        "cohorts": cohorts,
        # Beside the contract: each lever's share of the ledger's saving (escalation's is negative),
        # how the figures reconcile, and what they say about the target.
        "lever_shares": {k: round(float(v) / float(total["saved_usd"]), 4) if total["saved_usd"] else 0.0
                         for k, v in lever_totals(total).items()},
        "calls": len(items),
        "saving": round(float(saving), 4),
        "quality_loss_points": round(base_all - thr_all, 2),
        "worst_cohort": {"name": worst, "loss_points": round(cohorts[worst]["baseline_quality"]
                                                           - cohorts[worst]["thrifty_quality"], 2)},
        "target": {"saving": float(TARGET_SAVING), "max_loss_points": TARGET_QUALITY_LOSS,
                   "met": bool(saving >= TARGET_SAVING and base_all - thr_all <= TARGET_QUALITY_LOSS
                               and all(v["baseline_quality"] - v["thrifty_quality"] <= TARGET_QUALITY_LOSS
                                       for v in cohorts.values()))},
        "reconcile": {
            "baseline_priced_calls_usd": usd(sum(base_by.values(), Decimal(0))),
            "baseline_invoice_usd": usd(baseline_usd),
            "ledger_baseline_usd": usd(total["baseline_usd"]),
            "ledger_usd": usd(thrifty_usd),
            "thrifty_invoice_usd": usd(_invoice(thr_billing, prices)),
            "levers_sum_usd": usd(sum((p["saved_usd"] + p["estimated_usd"] for p in total["levers"].values()),
                                      Decimal(0))),
            "ledger_saved_usd": usd(total["saved_usd"]),
            "provider_discount_usd": usd(total["provider_discount_usd"]),
            "ledger_rows": ledger.count(),
        },
        "failed": {"baseline": sum(r["error"] is not None for r in base),
                   "thrifty": sum(r["error"] is not None for r in thr)},
        "errors": sorted({r["error"] for r in (*base, *thr) if r["error"]})[:5],
        "config": {"frontier": FRONTIER, "models": dict(MODELS), "shares": dict(e2e_mix.SHARES), "seed": seed,
                   "n": n, "concurrency": concurrency},
        "policy": policy_info,  # None: rules only
        "seconds": round(time.monotonic() - started, 1),
        "workdir": str(workdir),
    }
    return report


def _write_calls(path: Path, items: list[Item], base: list[dict], thr: list[dict]) -> None:
    """One line per call, both runs side by side: where a cohort's points went."""
    with path.open("w", encoding="utf-8") as f:
        for item, b, t in zip(items, base, thr):
            f.write(json.dumps({
                "cohort": item.cohort, "prompt": item.prompt[:200],
                "baseline_score": e2e_mix.score(item, b["answer"], _served_recorded(b["model"])),
                "thrifty_score": e2e_mix.score(item, t["answer"], _served_recorded(t["model"])),
                "served": _served_recorded(t["model"]), "tier": t["tier"], "cache": t["cache"],
                "answer": (t["answer"] or "")[:200], "error": t["error"] or b["error"]}) + "\n")


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def print_report(r: dict[str, Any]) -> None:
    b, t = r["baseline"], r["thrifty"]
    print(f"\n{'cohort':<14}{'calls':>6}{'base q':>8}{'thrifty q':>10}{'base USD':>12}{'thrifty USD':>13}{'saved':>8}")
    for name, c in r["cohorts"].items():
        saved = 1 - c["thrifty_usd"] / c["baseline_usd"] if c["baseline_usd"] else 0
        print(f"{name:<14}{c['calls']:>6}{c['baseline_quality']:>8.1f}{c['thrifty_quality']:>10.1f}"
              f"{c['baseline_usd']:>12.5f}{c['thrifty_usd']:>13.5f}{saved:>8.1%}")
    print(f"{'all':<14}{r['calls']:>6}{b['quality']:>8.1f}{t['quality']:>10.1f}{b['usd']:>12.5f}{t['usd']:>13.5f}"
          f"{r['saving']:>8.1%}")
    print("\nsaving by lever (the ledger's lever accounting; share of the ledger's saving):")
    for lever, saved in r["levers"].items():
        print(f"  {lever:<22} ${saved:>10.5f}  {r['lever_shares'].get(lever, 0):>7.1%}")
    rec = r["reconcile"]
    print(f"\nledger ${rec['ledger_usd']} vs emulator invoice ${rec['thrifty_invoice_usd']}; baseline invoice "
          f"${rec['baseline_invoice_usd']} vs the ledger's counterfactual ${rec['ledger_baseline_usd']}")
    pol = r.get("policy")
    if pol:
        origin = f"trained on {pol['rows']} train-side rows (target {pol['target']:g})" if pol["trained"] \
            else f"from {pol['file']}"
        print(f"learned policy on the `{POLICY_RULE}` rule: {pol['cheap_model']} vs {pol['strong_model']}, "
              f"threshold {pol['threshold']:.4f}, {origin}")
    verdict = "met" if r["target"]["met"] else "NOT met"
    print(f"target (-70% cost, <= 1 point lost overall and per cohort): {verdict}; saving {r['saving']:.1%}, "
          f"{r['quality_loss_points']:+.2f} points lost overall, worst cohort {r['worst_cohort']['name']} "
          f"({r['worst_cohort']['loss_points']:+.2f})")
    if r["failed"]["baseline"] or r["failed"]["thrifty"]:
        print(f"failed calls: {r['failed']}; e.g. {r['errors'][:2]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The end-to-end proof: a labelled SaaS-like mix sent all-frontier "
                                             "and direct, then through Thrifty with every lever on; cost, quality "
                                             "per cohort and each lever's saving.")
    ap.add_argument("--n", type=int, default=400, help="calls in the mix (default 400)")
    ap.add_argument("--seed", type=int, default=14, help="seed of the mix's draw (default 14)")
    ap.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    ap.add_argument("--json", action="store_true", help="print the report as one JSON object")
    ap.add_argument("--out", help="where the JSON report is written (default bench/results/e2e.json; "
                                  "with --learned or --policy, bench/results/e2e_learned.json)")
    ap.add_argument("--workdir", help="ledger, configs and logs (default: a new temporary folder)")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--learned", action="store_true",
                     help="train a learned routing policy on RouterBench's train files (none of the mix's prompts) "
                          "and serve it on the `trivial` rule")
    how.add_argument("--policy", metavar="FILE", help="serve this learned routing policy on the `trivial` rule")
    ap.add_argument("--policy-target", type=float, default=0.95, metavar="SHARE",
                    help="with --learned: the saved threshold reaches this share of the strong model's quality, "
                         "out of fold on the training rows (default 0.95, as `thrifty train router --target`)")
    args = ap.parse_args(argv)
    if args.n < 20:
        print("e2e: --n must be at least 20 (one call per cohort needs a few)", file=sys.stderr)
        return 2
    if args.concurrency < 1:
        print("e2e: --concurrency must be at least 1", file=sys.stderr)
        return 2
    if not 0.0 < args.policy_target <= 1.5:
        print(f"e2e: --policy-target must be in (0, 1.5], got {args.policy_target}", file=sys.stderr)
        return 2
    if args.policy and not Path(args.policy).is_file():
        print(f"e2e: --policy {args.policy}: no such file", file=sys.stderr)
        return 2
    reason = e2e_mix.missing_data(train_side=args.learned)
    if reason:
        print(f"e2e: {reason}", file=sys.stderr)
        return 2
    work = Path(args.workdir or tempfile.mkdtemp(prefix="thrifty-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    log = (lambda s: None) if args.json else (lambda s: print(s, file=sys.stderr, flush=True))
    report = run(args.n, seed=args.seed, concurrency=args.concurrency, workdir=work,
                 live=sys.stderr.isatty(), log=log, policy=Path(args.policy).resolve() if args.policy else None,
                 learned=args.learned, policy_target=args.policy_target)
    out = Path(args.out or ROOT / "bench/results" / ("e2e_learned.json" if args.learned or args.policy
                                                     else "e2e.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)
        print(f"\nwritten to {out}")
    return 0 if not (report["failed"]["baseline"] or report["failed"]["thrifty"]) else 1


if __name__ == "__main__":
    sys.exit(main())
