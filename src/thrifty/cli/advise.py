"""`thrifty advise SOURCE`: whether a self-hosted tier would beat the API at this traffic's volume."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "advise", help="self-host or not: tokens per month per tier, GPU hours, break-even",
        description="From recorded traffic: tokens per month per tier (extrapolated from the source's time span), "
                    "the GPU hours a self-hosted open model would need at stated continuous-batching "
                    "throughputs (vLLM/SGLang, FP8 where the GPU supports it), its monthly cost against the "
                    "API bill, and the break-even volume. Every assumption is printed with its value and can "
                    "be overridden by a flag or an --assumptions YAML file (same key names).")
    p.add_argument("source", help="ledger URL or file, log file, token-only trace, or a Parquet folder")
    p.add_argument("--format", help="force the input format instead of detecting it")
    p.add_argument("--model", help="model of calls whose source names none (token-only traces)")
    p.add_argument("--config", metavar="FILE", help="a Thrifty config: its deployments' tiers group the models")
    p.add_argument("--assumptions", metavar="FILE", help="YAML of assumptions to override (keys as printed)")
    p.add_argument("--gpu-usd-per-hour", type=float, help="price of one GPU hour (default 2.50)")
    p.add_argument("--utilisation", type=float, help="busy share of paid GPU time, 0-1 (default 0.6)")
    p.add_argument("--ops-usd-per-month", type=float, help="engineering and operations per month (default 8000)")
    p.add_argument("--no-fp8", action="store_true", help="the GPU has no FP8: throughputs times bf16_factor")
    p.add_argument("--size", action="append", default=[], metavar="TIER=B",
                   help="open model size (billions of parameters) replacing a tier, e.g. fast=8 (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from thrifty import jsonutil
    from thrifty.analysis.advise import Assumptions, advise, format_advice
    from thrifty.cli.simulate import load_source

    try:
        assumptions = Assumptions().with_overrides(_overrides(args))
    except (OSError, ValueError) as exc:
        print(f"thrifty: {exc}", file=sys.stderr)
        return 1
    tier_of = None
    if args.config:
        from thrifty.config import load_config

        config = load_config(args.config)
        tier_of = {d.model: d.tier for d in config.deployments.values()}
        if config.routing is not None:
            for tier in reversed(config.routing.order()):
                for name in config.routing.tiers[tier]:
                    dep = config.deployments.get(name)
                    tier_of[dep.model if dep else name] = tier
    con, _ = load_source(args)
    if con is None:
        return 1
    try:
        advice = advise(con, assumptions, tier_of=tier_of)
    except ValueError as exc:
        print(f"thrifty: {exc}", file=sys.stderr)
        return 1
    print(jsonutil.dumps(advice.as_json()).decode() if args.json else format_advice(advice))
    return 0


def _overrides(args: argparse.Namespace) -> dict:
    data: dict = {}
    if args.assumptions:
        import yaml

        with open(args.assumptions, encoding="utf-8") as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.assumptions}: the top level must be a mapping of assumption names")
        data.update(loaded)
    for flag, key in (("gpu_usd_per_hour", "gpu_usd_per_hour"), ("utilisation", "utilisation"),
                      ("ops_usd_per_month", "ops_usd_per_month")):
        value = getattr(args, flag)
        if value is not None:
            data[key] = value
    if args.no_fp8:
        data["fp8"] = False
    sizes = dict(data.get("tier_sizes") or {})
    for item in args.size:
        tier, _, size = item.partition("=")
        if not tier or not size.isdigit():
            raise ValueError(f"--size {item!r}: expected TIER=B, e.g. fast=8")
        sizes[tier] = int(size)
    if sizes:
        data["tier_sizes"] = sizes
    return data
