"""The proof's run: the mix sent all-frontier and direct to `thrifty emulate --config` replaying
the recorded answers, then the same calls through `thrifty serve` with every lever on.

Both runs are real processes over loopback HTTP, the same commands `thrifty demo` starts:

- Baseline: every call of the mix sent straight to the emulator as the product sends it today,
  on the frontier model (`gpt-4o`, the strongest model of the mix), interactive. Its cost is the
  emulator's billing counter priced with genai-prices (per cohort: each answer's usage priced).
- Thrifty: the same calls, same model asked for, through the gateway (provider prompt caching,
  the exact cache, the semantic cache on the FAQ route, tier routing with rules and escalation
  checks, output caps, the batch lane for the deferred slice, which carries `x-thrifty-defer:
  24h`). Its cost is the ledger's; the emulator's invoice must match it.
- Quality: points 0-100 per cohort against the labels (`mix.py` says what each cohort's quality
  means); each lever's saving from the ledger's lever accounting (`Ledger.savings`, what
  `GET /admin/savings` serves).

`run()` returns {"baseline": {"usd", "quality"}, "thrifty": {"usd", "quality"}, "levers":
{lever: saved_usd}, "cohorts": {name: {"baseline_quality", "thrifty_quality", "baseline_usd",
"thrifty_usd"}}} plus the reconciliation and the target's verdict under other keys: what
`bench/e2e.py --json` prints and `thrifty demo --json` carries under "proof".
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from thrifty.cli import localstack, processes
from thrifty.cli.proof import mix
from thrifty.cli.proof.client import progress, send_all
from thrifty.cli.proof.mix import FRONTIER, MODELS, Item, served_recorded

TARGET_SAVING = Decimal("0.70")
TARGET_QUALITY_LOSS = 1.0  # points, overall and in every cohort
TRIVIAL_TYPES = ("classification", "extraction", "rewrite")  # the `trivial` rule's request types
POLICY_RULE = "learned"  # the rule a learned policy serves on
# The features (cohorts) whose recorded outcomes a learned policy is trained on: RouterBench's data
# sets. MBPP is code, which the `code` rule keeps on the heavy tier before any policy is asked.
POLICY_FEATURES = tuple(mix.ROUTERBENCH_TRAIN_FILES)
CAPS = {"faq": 200, "headlines": 16, "enrichment": 100}  # shaping: each feature's realistic ceiling


def emulator_config(outcomes_path: Path) -> dict[str, Any]:
    return {"latency_scale": 0, "batch_seconds": 1.0,
            "recorded": {"path": str(outcomes_path), "models": dict(MODELS)}}


def gateway_config(emulator_url: str, ledger_url: str, policy: Path | None = None) -> dict[str, Any]:
    """Every lever on: what an operator would write for this product.

    With a learned `policy`, a `learned` rule before `trivial` serves it to the features whose
    outcomes trained it (`POLICY_FEATURES`: a route's policy is learned from that route's traffic;
    headlines, FAQ and enrichment keep the rules). Its tier is the heavy one and the policy sends
    the requests it trusts the fast tier with there (the router downgrades to a policy's cheap
    tier, which must sit below the rule's own); a policy with an answer stage (a cascade) takes the
    peer's consistency sample and escalates what it scores below its threshold, and the rule's
    checks still guard what the fast tier answers."""
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
            {"name": "trivial", "when": {"request_type": list(TRIVIAL_TYPES)},
             "tier": "fast", "checks": ["empty", "refusal", "truncated", "consistency"], "escalate_to": "heavy"},
        ],
        "escalation": {"checks": ["empty", "refusal", "truncated"], "max_steps": 1},
    }
    if policy is not None:
        rules = config["routing"]["rules"]
        rules.insert(next(i for i, r in enumerate(rules) if r["name"] == "trivial"), {
            "name": POLICY_RULE, "when": {"feature": list(POLICY_FEATURES), "request_type": list(TRIVIAL_TYPES)},
            "tier": "heavy", "policy": str(policy), "checks": ["empty", "refusal", "truncated", "consistency"],
            "escalate_to": "heavy"})
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


def train_learned_policy(workdir: Path, *, target: float, seed: int = 0,
                         root: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """A policy for the `learned` rule, from the train side of the split only: the RouterBench train
    rows (none of the mix's prompts) that the gateway types as the rule's request types, the cheap
    model being the one the fast tier serves first and the strong one the frontier's recording.
    The same code as `thrifty train router --data DATA --config CONFIG --out POLICY --target T`;
    the threshold is the one it saves (out-of-fold on these rows), never fitted on the mix."""
    from thrifty.routing.eval import load_setup, read_rows
    from thrifty.routing.learned_train import train_policy

    data_path, config_path, out = workdir / "policy_train.jsonl", workdir / "policy_setup.yaml", workdir / "policy.json"
    mix.write_outcomes(data_path, mix.policy_training_rows(root, request_types=TRIVIAL_TYPES))
    # A routing section alone: deployment names are the outcome rows' model names, tiers as the e2e's.
    tiers = {"fast": [MODELS[FAST_SERVES_FIRST], *(MODELS[d] for d in MODELS if d not in (FAST_SERVES_FIRST, FRONTIER))],
             "heavy": [MODELS[FRONTIER]]}
    localstack.write_config(str(config_path), {"tiers": tiers, "default_tier": "fast"})
    policy = train_policy(read_rows(str(data_path)), load_setup(str(config_path)), target=target, seed=seed,
                          strong=MODELS[FRONTIER], weak=MODELS[FAST_SERVES_FIRST],
                          trained_on={"data": str(data_path), "config": str(config_path), "holdout": 0.0,
                                      "seed": seed, "held_out_rows": 0})
    policy.save(str(out))
    return out, {"trained": True, "rows": policy.trained_on["rows"], "target": target, **_summary(policy),
                 "positive_share": round(policy.trained_on["positive_share"], 4)}


def describe_policy(path: Path) -> dict[str, Any]:
    from thrifty.routing.learned import load_policy

    policy = load_policy(path)
    return {"trained": False, "file": str(path), "rows": policy.trained_on.get("rows"), **_summary(policy)}


def _summary(policy: Any) -> dict[str, Any]:
    """What the report says of a policy: its models, whether it is a cascade (an answer stage over
    the cheap answer and the peer's) and the threshold that decides, with what it expects there
    (out of fold on its training rows)."""
    stage = policy.answer
    grid, threshold = (stage.grid, stage.threshold) if stage is not None else (policy.grid, policy.threshold)
    return {"cheap_model": policy.cheap_model, "strong_model": policy.strong_model, "cascade": stage is not None,
            "peer_model": stage.peer_model if stage is not None else None, "threshold": threshold,
            "expected_on_train": next((g for g in grid if g["threshold"] == threshold), None)}

def call_cost(prices: Any, usage: dict[str, Any] | None) -> Decimal:
    """One direct answer's cost on the frontier model, priced from its usage."""
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

def run(n: int, *, seed: int = 14, concurrency: int = 8, workdir: Path, live: bool = False,
        log: Callable[[str], None] = lambda s: None, policy: Path | None = None, learned: bool = False,
        policy_target: float = 0.95, root: Path | None = None) -> dict[str, Any]:
    """The whole proof on an `n`-call mix drawn with `seed` from the shared data under `root`
    (default THRIFTY_DATA_DIR); configs, ledger, logs and calls.jsonl go to `workdir`."""
    started = time.monotonic()
    items, outcomes = mix.build_mix(n, seed, root)
    outcomes_path = workdir / "outcomes.jsonl"
    mix.write_outcomes(outcomes_path, outcomes)
    emu_cfg = localstack.write_config(str(workdir / "emulator.yaml"), emulator_config(outcomes_path))
    ledger_path = workdir / "ledger.db"
    policy_info: dict[str, Any] | None = None
    if learned:
        policy, policy_info = train_learned_policy(workdir, target=policy_target, root=root)
        log(f"e2e: learned policy on {policy_info['rows']} train-side rows, threshold {policy_info['threshold']:.4f}")
    elif policy is not None:
        policy_info = describe_policy(policy)
    log(f"e2e: {len(items)} calls in {len({i.cohort for i in items})} cohorts; work folder {workdir}")
    with processes.start_emulator(log_path=str(workdir / "emulator.log"), extra=["--config", emu_cfg]) as emu:
        base = asyncio.run(send_all(emu.url, "emulator-key", items, through_gateway=False, concurrency=concurrency,
                                    on_done=progress("baseline (direct, all-frontier)", len(items), live)))
        base_billing = _billing(emu.url)
        urllib.request.urlopen(urllib.request.Request(f"{emu.url}/_emulator/reset", method="POST")).close()
        config_path = localstack.write_config(str(workdir / "thrifty.yaml"),
                                              gateway_config(emu.url, f"sqlite:///{ledger_path}", policy))
        gw = processes.start_gateway(config_path, log_path=str(workdir / "gateway.log"), env={"PYTHONUNBUFFERED": "1"})
        try:
            thr = asyncio.run(send_all(gw.url, localstack.DEMO_KEY, items, through_gateway=True, concurrency=concurrency,
                                       on_done=progress("thrifty (every lever on)", len(items), live)))
        finally:
            gw.stop()  # a graceful stop flushes the ledger
        thr_billing = _billing(emu.url)

    _write_calls(workdir / "calls.jsonl", items, base, thr)
    report = assemble(items, base, thr, base_billing, thr_billing, ledger_path)
    report.update({
        "config": {"frontier": FRONTIER, "models": dict(MODELS), "shares": dict(mix.SHARES), "seed": seed,
                   "n": n, "concurrency": concurrency},
        "policy": policy_info,  # None: rules only
        "seconds": round(time.monotonic() - started, 1),
        "workdir": str(workdir),
    })
    return report


def assemble(items: list[Item], base: list[dict[str, Any]], thr: list[dict[str, Any]], base_billing: dict[str, Any],
             thr_billing: dict[str, Any], ledger_path: Path) -> dict[str, Any]:
    """The report's figures: both runs' cost and quality, per cohort, per lever, and how they reconcile."""
    from thrifty.core.savings_report import lever_totals, usd
    from thrifty.ledger import SQLiteLedger
    from thrifty.pricing import PriceBook

    prices = PriceBook()
    ledger = SQLiteLedger(str(ledger_path))
    total = ledger.savings()[0]
    per_feature = {g["key"]: g for g in ledger.savings(group_by="feature")}
    base_q, base_all = mix.quality(items, base)
    thr_q, thr_all = mix.quality(items, thr)
    base_by: dict[str, Decimal] = {}
    for item, res in zip(items, base):
        base_by[item.cohort] = base_by.get(item.cohort, Decimal(0)) + call_cost(prices, res["usage"])
    baseline_usd = _invoice(base_billing, prices)
    thrifty_usd = total["actual_usd"]
    cohorts = {}
    for c in mix.SHARES:
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
                      "served": _count(served_recorded(r["model"]) for i, r in zip(items, thr) if i.cohort == c)}
    saving = (baseline_usd - thrifty_usd) / baseline_usd if baseline_usd else Decimal(0)
    worst = max(cohorts, key=lambda c: cohorts[c]["baseline_quality"] - cohorts[c]["thrifty_quality"])
    return {
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
    }


def _write_calls(path: Path, items: list[Item], base: list[dict], thr: list[dict]) -> None:
    """One line per call, both runs side by side: where a cohort's points went."""
    with path.open("w", encoding="utf-8") as f:
        for item, b, t in zip(items, base, thr):
            f.write(json.dumps({
                "cohort": item.cohort, "prompt": item.prompt[:200],
                "baseline_score": mix.score(item, b["answer"], served_recorded(b["model"])),
                "thrifty_score": mix.score(item, t["answer"], served_recorded(t["model"])),
                "served": served_recorded(t["model"]), "tier": t["tier"], "cache": t["cache"],
                "answer": (t["answer"] or "")[:200], "error": t["error"] or b["error"]}) + "\n")


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out

