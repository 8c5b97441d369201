"""`thrifty analyze SOURCE`: profile existing traffic and find the calls that should not have been made.

The source (a Thrifty ledger, LiteLLM logs, wire-format request logs, token-only traces, a
Parquet export) is loaded into DuckDB's `traffic` table by `thrifty.analysis.sources`; the
aggregates (`analysis.profile`) and the waste findings (`analysis.waste`) are SQL over it, and
the result is printed for people, as JSON (`--json`, money as exact decimal strings) or written
as one offline HTML file (`--html`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from thrifty.errors import ThriftyError

BAD_LISTED = 20  # malformed records shown in the report; all are counted


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze", help="profile a traffic log: where the money goes and what is wasted",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Profile existing LLM traffic before changing anything: spend by model, feature, "
                    "tenant, call site, request type and user cohort; the input-token histogram; the "
                    "input vs output share of spend; the top request shapes; cost per agent task; and "
                    "waste, each with calls and USD: exact and near duplicates, retry storms, oversized "
                    "max_tokens, long prefixes not read from a provider cache, streams into a buffer, "
                    "generations never read. A finding the source lacks the columns for is reported as "
                    "not available, never as zero.",
        epilog="SOURCE is a Thrifty ledger (sqlite:///path, a SQLite file, postgresql://...), a folder "
               "of Parquet (thrifty export parquet), LiteLLM StandardLoggingPayload JSON Lines, "
               "OpenAI/Anthropic request-response JSON Lines, a token CSV (timestamp, input_tokens, "
               "output_tokens[, model]) or a Mooncake JSONL trace; the format is detected unless "
               "--format forces it.")
    p.add_argument("source", metavar="SOURCE", help="the traffic to analyse (see below)")
    p.add_argument("--format", metavar="F", help="force the source format (ledger, parquet, litellm, wire, "
                                                  "token-csv, mooncake)")
    p.add_argument("--since", metavar="WHEN", help="only calls at or after WHEN (ISO date/time, UTC unless "
                                                    "it says otherwise, or unix seconds)")
    p.add_argument("--until", metavar="WHEN", help="only calls before WHEN")
    p.add_argument("--model", help="price a token-only trace (no model column) as this model")
    p.add_argument("--html", metavar="FILE", help="also write the report as one offline HTML file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--top", type=int, default=20, metavar="N", help="rows per breakdown (default 20)")
    p.add_argument("--near-sample", type=int, default=1000, metavar="N",
                   help="prompts embedded for near-duplicates (default 1000, a few seconds on one core; "
                        "0 turns the finding off)")
    p.add_argument("--near-threshold", type=float, metavar="COS",
                   help="cosine above which two prompts are near-duplicates (default: the semantic "
                        "cache's general operating point, a conservative 0.95)")
    p.add_argument("--retry-window", type=float, default=30.0, metavar="SECONDS",
                   help="a re-send this soon after a failure is a retry (default 30)")
    p.set_defaults(run=run)


def parse_when(text: str, option: str) -> float:
    """Unix seconds from an ISO date/time (UTC when it names no zone) or a number of seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ThriftyError(f"{option} {text!r}: expected an ISO date/time (2026-05-01, "
                           f"2026-05-01T12:00) or unix seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def analyze(con: Any, *, rel: str = "traffic", book: Any = None, top: int = 20, embedder: Any = None,
            near_sample: int = 1000, near_threshold: float | None = None,
            retry_window_s: float = 30.0) -> dict[str, Any]:
    """The whole report over `rel` in `con`, money as Decimal (see `as_json` for the wire form)."""
    from thrifty.analysis import profile, waste
    from thrifty.pricing import PriceBook

    book = book or PriceBook()
    report = profile.profile(con, rel, book, top=top)
    report["waste"] = waste.find_waste(con, rel, profile.price_cards(con, rel, book), embedder=embedder,
                                       near_sample=near_sample, near_threshold=near_threshold,
                                       retry_window_s=retry_window_s)
    return report


def as_json(value: Any) -> Any:
    """Money (every Decimal) as an exact decimal string without trailing zeros; the rest as is."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    return value


def source_summary(load_report: Any, path: str) -> dict[str, Any]:
    bad_total = getattr(load_report, "bad_total", None)
    if bad_total is None:
        bad_total = getattr(load_report, "bad_count", len(load_report.bad))
    return {"path": path, "format": load_report.format, "rows": load_report.rows, "bad_total": bad_total,
            "bad": [{"line": line, "field": field, "problem": problem}
                    for line, field, problem in load_report.bad[:BAD_LISTED]]}


class _Progress:
    """A one-line progress indicator on stderr, drawn only on a terminal, at most ~10 times a second."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self._last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if not self.live or (now - self._last < 0.1 and done != total):
            return
        self._last = now
        if total:
            filled = int(30 * min(done / total, 1.0))
            text = f"loading [{'#' * filled}{'.' * (30 - filled)}] {100 * min(done / total, 1.0):3.0f}%"
        else:
            text = f"loading {done:,}"
        print(f"\r{text}", end="", file=sys.stderr, flush=True)

    def stage(self, text: str) -> None:
        if self.live:
            print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.live:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import duckdb

    from thrifty.analysis import profile
    from thrifty.analysis.sources import load

    if args.top < 1:
        raise ThriftyError(f"--top must be at least 1, got {args.top}")
    if args.near_sample < 0:
        raise ThriftyError(f"--near-sample must be 0 or more, got {args.near_sample}")
    if args.near_threshold is not None and not -1.0 <= args.near_threshold <= 1.0:
        raise ThriftyError(f"--near-threshold is a cosine, between -1 and 1; got {args.near_threshold}")
    if args.retry_window <= 0:
        raise ThriftyError(f"--retry-window must be positive, got {args.retry_window}")
    since = parse_when(args.since, "--since") if args.since else None
    until = parse_when(args.until, "--until") if args.until else None
    if since is not None and until is not None and until <= since:
        raise ThriftyError("--until must be after --since")

    progress = _Progress(sys.stderr.isatty())
    con = duckdb.connect()
    loaded = load(args.source, format=args.format, con=con, progress=progress, model=args.model,
                  since=since, until=until)
    progress.stage("analysing (near-duplicates embed a sample of prompts)")
    rel = profile.window(con, since, until)
    report = analyze(con, rel=rel, top=args.top, near_sample=args.near_sample,
                     near_threshold=args.near_threshold, retry_window_s=args.retry_window)
    report["window"] = {"since": since, "until": until}
    report["source"] = source_summary(loaded, args.source)
    progress.done()
    if args.html:
        from thrifty.analysis.report_html import render

        try:
            with open(args.html, "w", encoding="utf-8") as f:
                f.write(render(report))
        except OSError as exc:
            raise ThriftyError(f"cannot write {args.html}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps(as_json(report), indent=2))
    else:
        print(format_report(report))
        if args.html:
            print(f"\nHTML report: {args.html}")
    return 0


def format_report(r: dict[str, Any]) -> str:
    """The report for a terminal: the headline, the top of each breakdown, every finding."""
    from thrifty.analysis.report_html import money
    from thrifty.analysis.waste import FINDINGS

    src = r.get("source") or {}
    lines = [f"{src.get('path', '')} ({src.get('format', '?')}): {r['calls']:,} calls, "
             f"{money(r['spend_usd'])}" + (f", {src['bad_total']:,} malformed records skipped"
                                           if src.get("bad_total") else "")]
    if r.get("calls_without_cost"):
        lines.append(f"  {r['calls_without_cost']:,} calls have no known cost and add nothing to the sums")
    share = r["input_output_share"]
    if share.get("input_share") is not None:
        lines.append(f"  input {money(share['input_usd'])} ({100 * share['input_share']:.0f}%), "
                     f"output {money(share['output_usd'])} ({100 * share['output_share']:.0f}%)  (estimated)")
    for key, items in r["by"].items():
        if not items or all(i["key"] is None for i in items):
            continue
        lines.append(f"\nby {key}")
        for i in items[:5]:
            label = "(not tagged)" if i["key"] is None else str(i["key"])
            lines.append(f"  {label[:40]:<40} {i['calls']:>10,} calls  {money(i['usd']):>12}")
    lines.append("\nwaste")
    for name, finding in FINDINGS.items():
        w = r["waste"][name]
        if not w.get("available"):
            lines.append(f"  {finding.title:<56} n/a: {w.get('reason')}")
            continue
        note = " (estimated)" if w.get("estimated") else ""
        lines.append(f"  {finding.title:<56} {w['calls']:>8,} calls  {money(w['usd']):>12}{note}")
    return "\n".join(lines)
