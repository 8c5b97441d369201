"""`thrifty simulate SOURCE --config FILE`: what a candidate policy would have saved on recorded traffic."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate", help="replay recorded traffic through a candidate config: the savings waterfall",
        description="Replay recorded traffic (a Thrifty ledger, LiteLLM logs, OpenAI/Anthropic request logs, "
                    "or a token-only trace) through the levers of a Thrifty config file, with the gateway's own "
                    "lever code in the gateway's order (exact cache, routing, output caps, prompt cache, "
                    "batch), and print what each lever would have saved against the traffic as observed: "
                    "exact and estimated savings apart. Prompt caching is replayed from prefix hashes and "
                    "batch pricing from `defer: true` routes, so both work on token-only traces.")
    p.add_argument("source", help="ledger URL or file, log file (JSON Lines, .gz ok), trace CSV/JSONL, "
                                  "or a Parquet folder")
    p.add_argument("--config", metavar="FILE", required=True, help="the candidate Thrifty config (YAML)")
    p.add_argument("--format", help="force the input format instead of detecting it")
    p.add_argument("--model", help="model of calls whose source names none (token-only traces), e.g. gpt-4o")
    p.add_argument("--outcomes", metavar="FILE",
                   help="routing outcomes JSON Lines ({prompt, outcomes: {model: {score, cost_usd}}}): "
                        "report the expected quality change of routing")
    p.add_argument("--auto-cache-ttl", type=float, default=300.0, metavar="SECONDS",
                   help="idle lifetime of an automatic (OpenAI-style) prompt-cache entry; OpenAI documents "
                        "5-10 minutes, up to 1 hour off-peak (default 300)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from thrifty import jsonutil
    from thrifty.analysis.simulate import Simulator, format_waterfall, load_outcomes
    from thrifty.config import load_config
    from thrifty.core.policy import Policies

    config = load_config(args.config)
    if args.auto_cache_ttl <= 0:
        return _fail(f"--auto-cache-ttl must be a positive number of seconds, not {args.auto_cache_ttl}")
    try:
        outcomes = load_outcomes(args.outcomes) if args.outcomes else None
    except OSError as exc:
        return _fail(f"cannot read {args.outcomes}: {exc.strerror or exc}")
    except ValueError as exc:
        return _fail(str(exc))
    con, report = load_source(args)
    if con is None:
        return 1
    try:
        total = con.execute("SELECT count(*) FROM traffic").fetchone()[0]
        bar = _progress_bar("simulating") if sys.stderr.isatty() and total > 50_000 else None
        sim = Simulator(config, Policies(config, args.config), default_model=args.model, outcomes=outcomes,
                        auto_cache_ttl_s=args.auto_cache_ttl).run(
            con, progress=None if bar is None else (lambda done: bar(done, total)))
        if bar is not None:
            print(file=sys.stderr)
    except ValueError as exc:
        return _fail(f"{exc} (--model)" if "no model" in str(exc) else str(exc))
    if args.json:
        out = sim.as_json()
        out["source"] = report
        print(jsonutil.dumps(out).decode())
    else:
        print(format_waterfall(sim))
    return 0


def load_source(args: argparse.Namespace) -> tuple[Any, dict[str, Any] | None]:
    """The source loaded into an in-memory DuckDB `traffic` table (None and a printed reason on failure).

    Shared by `simulate`, `advise` and `export finetune`."""
    import duckdb

    from thrifty.analysis import sources

    con = duckdb.connect()
    progress = _progress_bar() if sys.stderr.isatty() else None
    try:
        report = sources.load(args.source, format=args.format, con=con, progress=progress,
                              model=getattr(args, "model", None))
    except (OSError, ValueError) as exc:
        print(f"thrifty: {exc}", file=sys.stderr)
        return None, None
    finally:
        if progress is not None:
            print(file=sys.stderr)
    return con, report.as_dict() if hasattr(report, "as_dict") else None


def _progress_bar(what: str = "loading") -> Any:
    def show(done: int, total: int | None) -> None:
        if total:
            filled = min(30, int(30 * done / total))
            sys.stderr.write(f"\r{what} [{'#' * filled}{'.' * (30 - filled)}] {min(100, done * 100 // total):3d}%")
        else:
            sys.stderr.write(f"\r{what} {done:,}")
        sys.stderr.flush()

    return show


def _fail(reason: str) -> int:
    print(f"thrifty: {reason}", file=sys.stderr)
    return 1
