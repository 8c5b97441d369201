"""The HTML report of `thrifty analyze --html FILE`: one offline file for someone who never saw Thrifty.

Everything is inline: the CSS, and charts drawn here as plain SVG (a horizontal bar per key, a
column per histogram bucket), so the file opens from a laptop, an e-mail or an air-gapped box and
makes no request at all; a Content-Security-Policy that allows nothing external makes sure of it.
`render` takes the report as `analyze` builds it (money as Decimal) or as its JSON (money as
strings): numbers only become floats here, for drawing.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any, Sequence

from thrifty.analysis.waste import FINDINGS

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0;background:#f6f7f9}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
p.lead,.muted{color:#5b6474}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 16px;min-width:180px}
.card .v{font-size:24px;font-weight:600}.card .k{color:#5b6474;font-size:13px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:16px}
figure{background:#fff;border:1px solid #dde1e7;border-radius:8px;margin:0;padding:12px}
figcaption{font-weight:600;margin-bottom:6px}
svg text{font:12px system-ui,sans-serif;fill:#1d2330}
svg text.on{fill:#fff;font-weight:600}
.bar{fill:#3b6fd8}.bar.out{fill:#e0873a}.col{fill:#3b6fd8}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eceff3;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.finding{background:#fff;border:1px solid #dde1e7;border-left:4px solid #d8453b;border-radius:6px;padding:10px 14px;margin:10px 0}
.finding.none{border-left-color:#9aa3b2}.finding.zero{border-left-color:#3a9a5b}
.finding h3{margin:0 0 4px;font-size:16px}.finding .num{font-weight:600}
code{background:#eef1f5;padding:1px 4px;border-radius:3px}
"""

_DIMENSION_TITLES = (
    ("model", "Spend by model"), ("feature", "Spend by feature"), ("tenant", "Spend by tenant"),
    ("call_site", "Spend by call site"), ("request_type", "Spend by request type"),
    ("user_cohort", "Spend by user cohort"),
)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> float:
    return 0.0 if value is None else float(value)


def money(value: Any) -> str:
    """Dollars for people: cents from 10 cents up, four significant figures below."""
    v = _num(value)
    if v == 0:
        return "$0"
    return f"${v:,.2f}" if abs(v) >= 0.1 else f"${v:.4g}"


def _count(n: Any) -> str:
    return f"{int(n or 0):,}"


def _tokens(n: int) -> str:
    if n < 100_000:
        return f"{n:,}"
    return f"{n / 1e6:.3g}M" if n >= 1_000_000 else f"{n / 1e3:.3g}k"


def _percent(share: float | None) -> str:
    return "" if share is None else f"{100 * share:.1f}%"


def _label(key: Any) -> str:
    return "(not tagged)" if key is None else str(key)


def bar_chart(chart: str, items: Sequence[tuple[str, float, str]], *, width: int = 440) -> str:
    """Horizontal bars, one `rect.bar` per item: (label, value, value as text)."""
    row, label_w, text_w = 22, 150, 130
    span = width - label_w - text_w
    top = max((v for _, v, _ in items), default=0.0) or 1.0
    parts = [f'<svg class="chart" data-chart="{_e(chart)}" role="img" width="{width}" '
             f'height="{row * len(items) + 4}" viewBox="0 0 {width} {row * len(items) + 4}">']
    for i, (label, value, text) in enumerate(items):
        y = i * row + 2
        w = max(span * value / top, 1.0 if value > 0 else 0.0)
        short = label if len(label) <= 22 else label[:21] + "\u2026"
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{_e(short)}</text>'
                     f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}">'
                     f'<title>{_e(label)}: {_e(text)}</title></rect>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 15}">{_e(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def column_chart(chart: str, buckets: Sequence[dict[str, Any]], *, width: int = 900, height: int = 220) -> str:
    """The input-token histogram: one `rect.col` per bucket, tokens on a log2 axis."""
    base, left = 40, 46
    n = max(len(buckets), 1)
    step = (width - left - 10) / n
    top = max((b["calls"] for b in buckets), default=0) or 1
    parts = [f'<svg class="chart" data-chart="{_e(chart)}" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">',
             f'<text x="4" y="14">calls</text><text x="4" y="30">{_count(top)}</text>']
    for i, b in enumerate(buckets):
        h = (height - base - 24) * b["calls"] / top
        x = left + i * step
        parts.append(f'<rect class="col" x="{x + 1:.1f}" y="{height - base - h:.1f}" width="{step - 2:.1f}" '
                     f'height="{h:.1f}"><title>{_count(b["calls"])} calls with {_count(b["lo"])} to '
                     f'{_count(b["hi"] - 1)} input tokens</title></rect>')
        if len(buckets) <= 24 or i % 2 == 0:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{height - base + 14}" text-anchor="middle">'
                         f'{_tokens(b["lo"])}</text>')
    parts.append(f'<text x="{left}" y="{height - 6}">input tokens per call (each column: from this '
                 f'count to twice it)</text></svg>')
    return "".join(parts)


def _share_chart(share: dict[str, Any], width: int = 900) -> str:
    i, o = _num(share.get("input_usd")), _num(share.get("output_usd"))
    total = (i + o) or 1.0
    wi = (width - 2) * i / total
    return (f'<svg class="chart" data-chart="input-output-share" role="img" width="{width}" height="34" '
            f'viewBox="0 0 {width} 34"><rect class="bar" x="1" y="2" width="{wi:.1f}" height="30">'
            f'<title>input {money(i)}</title></rect><rect class="bar out" x="{1 + wi:.1f}" y="2" '
            f'width="{width - 2 - wi:.1f}" height="30"><title>output {money(o)}</title></rect>'
            f'<text class="on" x="8" y="22">input {100 * i / total:.0f}%</text>'
            f'<text class="on" x="{width - 8}" y="22" text-anchor="end">output {100 * o / total:.0f}%</text></svg>')


def _cards(report: dict[str, Any], waste_usd: float) -> str:
    period = ""
    if report.get("first_ts") is not None and report.get("last_ts") is not None:
        fmt = "%Y-%m-%d %H:%M"
        period = (f"{datetime.fromtimestamp(report['first_ts'], timezone.utc):{fmt}} to "
                  f"{datetime.fromtimestamp(report['last_ts'], timezone.utc):{fmt}} UTC")
    cards = [("calls", _count(report.get("calls"))), ("spend", money(report.get("spend_usd"))),
             ("avoidable spend found", money(waste_usd)),
             ("input tokens", _tokens(int(report.get("input_tokens") or 0))),
             ("output tokens", _tokens(int(report.get("output_tokens") or 0)))]
    body = "".join(f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>'
                   for k, v in cards)
    return f'<div class="cards" id="headline">{body}</div>' + (f'<p class="muted">Period: {_e(period)}</p>'
                                                                if period else "")


def _finding(name: str, result: dict[str, Any]) -> str:
    f = FINDINGS[name]
    if not result.get("available"):
        return (f'<div class="finding none" data-finding="{name}"><h3>{_e(f.title)}</h3>'
                f'<p>Not measured on this source: {_e(result.get("reason", "the columns it needs are missing"))}.'
                f'</p><p class="muted">{_e(f.meaning)}</p></div>')
    calls, usd = int(result.get("calls") or 0), _num(result.get("usd"))
    extra = []
    if name == "oversized_max_tokens" and calls:
        extra.append(f'{_count(result.get("headroom_tokens"))} output tokens reserved and never used, '
                     f'{money(result.get("reserved_headroom_usd"))} of budget held back for them')
    if name == "near_duplicates":
        if result.get("sampled"):
            extra.append(f'estimated from {_count(result.get("sample_size"))} randomly drawn calls of '
                         f'{_count(result.get("population"))} with a prompt, each compared with the '
                         f'{result.get("lookback_calls")} calls before it; cosine threshold {result.get("threshold")}')
        else:
            extra.append(f'all {_count(result.get("population"))} prompts compared; cosine threshold '
                         f'{result.get("threshold")}')
    if name == "exact_duplicates":
        extra.extend(f'{_count(t["repeats"])} repeats, {money(t["usd"])}: call site {_label(t.get("call_site"))}, '
                     f'feature {_label(t.get("feature"))}' + (f', "{t["prompt_preview"]}"' if t.get("prompt_preview") else "")
                     for t in result.get("top", []))
    if name == "retry_storms":
        extra.append(f"re-sends within {result.get('window_s')} s of a failure")
    if name == "uncached_prefixes" and result.get("calls_cache_unknown"):
        extra.append(f'{_count(result["calls_cache_unknown"])} of these calls have no cache information in '
                     f'the source and are assumed uncached')
    if name == "streams_to_buffer" and calls:
        extra.append(f'these calls cost {money(result.get("spend_usd"))} in all')
    estimated = " (estimated)" if result.get("estimated") else ""
    kind = "zero" if calls == 0 else ""
    extra_html = "".join(f'<p class="muted">{_e(x)}</p>' for x in extra)
    return (f'<div class="finding {kind}" data-finding="{name}"><h3>{_e(f.title)}</h3>'
            f'<p><span class="num">{_count(calls)} calls, {money(usd)}{estimated}</span></p>'
            f'<p>{_e(f.meaning)}</p>{extra_html}<p><b>What to do:</b> {_e(f.action)}</p></div>')


def _shapes_table(shapes: Sequence[dict[str, Any]]) -> str:
    if not shapes:
        return '<p class="muted">No calls.</p>'
    rows = "".join(
        f'<tr><td>{_e(_label(s["call_site"]))}</td><td>{_e(_label(s["model"]))}</td>'
        f'<td><code>{_e(s["system_hash"] or "none")}</code> {_e((s.get("system_preview") or "")[:80])}</td>'
        f'<td class="n">{_count(s["calls"])}</td><td class="n">{money(s["usd"])}</td>'
        f'<td class="n">{_percent(s.get("share"))}</td></tr>'
        for s in shapes)
    return ('<table id="shapes"><tr><th>call site</th><th>model</th><th>system prompt</th><th class="n">calls</th>'
            f'<th class="n">spend</th><th class="n">share</th></tr>{rows}</table>')


def _tasks_table(tasks: dict[str, Any]) -> str:
    if not tasks.get("available"):
        return f'<p class="muted">Not available: {_e(tasks.get("reason", ""))}.</p>'
    rows = "".join(f'<tr><td>{_e(t["key"])}</td><td class="n">{_count(t["calls"])}</td>'
                   f'<td class="n">{_count(t["input_tokens"])}</td><td class="n">{_count(t["output_tokens"])}</td>'
                   f'<td class="n">{money(t["usd"])}</td></tr>' for t in tasks.get("top", []))
    return (f'<p>{_count(tasks["count"])} tasks, {money(tasks["usd"])} in all, '
            f'{money(tasks.get("usd_per_task"))} per task on average. The costliest:</p>'
            '<table id="tasks"><tr><th>task</th><th class="n">calls</th><th class="n">input tokens</th>'
            f'<th class="n">output tokens</th><th class="n">spend</th></tr>{rows}</table>')


def _source(source: dict[str, Any] | None) -> str:
    if not source:
        return ""
    out = (f'<p class="muted">Source: {_e(source.get("path", ""))} read as <code>{_e(source.get("format"))}</code>, '
           f'{_count(source.get("rows"))} calls loaded, {_count(source.get("bad_total"))} malformed records skipped.</p>')
    bad = source.get("bad") or []
    if bad:
        items = "".join(f'<li>line {_e(b["line"])}, {_e(b["field"])}: {_e(b["problem"])}</li>' for b in bad[:20])
        out += f'<details><summary>Malformed records (first {min(len(bad), 20)})</summary><ul>{items}</ul></details>'
    return out


def render(report: dict[str, Any], *, title: str = "Thrifty traffic report") -> str:
    """The whole report as one HTML document (a str)."""
    waste = report.get("waste", {})
    waste_usd = sum(_num(w.get("usd")) for w in waste.values() if w.get("available"))
    share = report.get("input_output_share") or {}
    charts = []
    for key, caption in _DIMENSION_TITLES:
        items = report.get("by", {}).get(key) or []
        if all(item["key"] is None for item in items):
            continue  # a dimension the source never tags says nothing as a chart
        bars = [(_label(i["key"]), _num(i["usd"]), f'{money(i["usd"])} \u00b7 {_count(i["calls"])} calls')
                for i in items]
        charts.append(f'<figure><figcaption>{_e(caption)}</figcaption>{bar_chart("by-" + key, bars)}</figure>')
    share_text = ""
    if share.get("input_share") is not None:
        share_text = (f'<p>Input (prompt) tokens: <b>{money(share["input_usd"])}</b> '
                      f'({100 * share["input_share"]:.0f}%), output tokens: <b>{money(share["output_usd"])}</b> '
                      f'({100 * share["output_share"]:.0f}%). '
                      + ("Input dominates: prompt caching, shorter context and response caches pay most."
                         if share["input_share"] >= 0.5 else
                         "Output dominates: output caps, stop sequences, cheaper tiers and the batch lane pay most.")
                      + '</p>' + _share_chart(share)
                      + f'<p class="muted">Estimated: {_e(share.get("method", ""))}.</p>')
    findings = "".join(_finding(name, waste[name]) for name in FINDINGS if name in waste)
    hist = report.get("input_tokens_histogram") or []
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>{_e(title)}</h1>
<p class="lead">What your LLM calls cost, where the money goes, and which calls should not have been made.
Made by <code>thrifty analyze</code> from your logs; nothing here was sent anywhere.</p>
{_source(report.get("source"))}
{_cards(report, waste_usd)}
<p class="muted">Avoidable spend is the sum of the findings below; a call can appear in more than one, so
read it as an upper bound of what fixing all of them saves.</p>
<h2>Waste: calls to fix first</h2>
{findings}
<h2>Which half of the bill dominates</h2>
{share_text or '<p class="muted">Not available: no priced model in the source.</p>'}
<h2>Where the money goes</h2>
<div class="grid">{"".join(charts)}</div>
<h2>How big the prompts are</h2>
<p>Calls by input tokens. Long prompts are where prompt caching and context trimming pay; many short
ones are where response caches and cheaper tiers do.</p>
<figure>{column_chart("input-histogram", hist)}</figure>
<h2>Top request shapes</h2>
<p>A shape is one call site sending one system prompt to one model; the top shapes are where one change
(a cache breakpoint, a cap, a cheaper model) moves the bill most.</p>
{_shapes_table(report.get("top_shapes") or [])}
<h2>Agent tasks</h2>
{_tasks_table(report.get("tasks") or {})}
</main></body></html>
"""
