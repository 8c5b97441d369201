"""The HTML report opened in headless Chromium: it loads, draws its charts, logs no error and sends
no request anywhere (every non-file:// request fails the test)."""

from __future__ import annotations

import re


from thrifty.analysis.report_html import render
from thrifty.cli.analyze import analyze, as_json

from tests.analysis.traffic_rows import traffic

HOSTILE = '<img src="http://203.0.113.9/x.png" onerror="console.error(1)">'


def sample_report() -> dict:
    rows = []
    for i in range(12):
        rows.append({"ts": 1_700_000_000.0 + i, "model": ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"][i % 3],
                     "feature": ["search", "chat", HOSTILE, None][i % 4], "tenant": "acme",
                     "call_site": f"app.py:{i % 2}", "system_text": "be brief", "task": f"t{i % 5}",
                     "input_tokens": 2 ** (i % 7) * 100, "output_tokens": 40, "max_tokens": 4096,
                     "request_hash": f"h{i % 6}", "status": 200, "cost_usd": f"0.0{i + 1}"})
    report = analyze(traffic(rows), near_sample=0)
    report["source"] = {"path": "calls.jsonl", "format": "wire", "rows": 12, "bad_total": 1,
                        "bad": [{"line": 7, "field": "usage", "problem": "not an object"}]}
    return report


def test_render_escapes_text_from_the_source_and_takes_the_json_form_too():
    report = sample_report()
    page = render(report)
    assert HOSTILE not in page and "&lt;img src=" in page
    assert render(as_json(report)).count('data-finding="') == 7  # money as strings renders as well
    assert not re.search(r"""\b(src|href)\s*=\s*["']""", page)  # no attribute that could fetch anything


def test_report_opens_offline_in_chromium_with_its_charts_drawn(browser, tmp_path):
    report = sample_report()
    path = tmp_path / "report.html"
    path.write_text(render(report), encoding="utf-8")

    page = browser.new_page()
    errors, outside = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def guard(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")

    assert page.title() == "Thrifty traffic report"
    assert page.locator("#headline").inner_text().startswith("12")
    # One bar per key of each breakdown, one column per histogram bucket.
    assert page.locator('svg[data-chart="by-model"] rect.bar').count() == 3
    assert page.locator('svg[data-chart="by-feature"] rect.bar').count() == 4
    assert page.locator('svg[data-chart="by-tenant"] rect.bar').count() == 1
    assert page.locator('svg[data-chart="by-call_site"] rect.bar').count() == 2
    assert page.locator('svg[data-chart="by-request_type"]').count() == 0  # never tagged: no chart
    buckets = report["input_tokens_histogram"]
    assert page.locator('svg[data-chart="input-histogram"] rect.col').count() == len(buckets)
    heights = page.locator('svg[data-chart="input-histogram"] rect.col').evaluate_all(
        "els => els.map(e => e.getBBox().height)")
    assert [h > 0 for h in heights] == [b["calls"] > 0 for b in buckets]
    bar = page.locator('svg[data-chart="by-model"] rect.bar').first.bounding_box()
    assert bar is not None and bar["width"] > 10  # drawn, not just present in the DOM
    assert page.locator('svg[data-chart="input-output-share"] rect').count() == 2
    # Each finding explains itself; the escaped hostile label is shown as text.
    assert page.locator("[data-finding]").count() == 7
    assert "Identical requests answered again" in page.locator('[data-finding="exact_duplicates"]').inner_text()
    assert "Not measured on this source" in page.locator('[data-finding="near_duplicates"]').inner_text()
    assert HOSTILE[:20] in page.locator('svg[data-chart="by-feature"]').inner_html().replace("&lt;", "<")
    assert page.locator("#shapes tr").count() == 1 + len(report["top_shapes"])
    assert page.locator("#tasks tr").count() == 1 + 5

    assert errors == []
    assert outside == []
    page.close()


def test_estimated_findings_say_how_they_were_measured():
    report = sample_report()
    report["waste"]["near_duplicates"] = {"available": True, "calls": 600, "usd": "1.5", "estimated": True,
                                          "sampled": True, "sample_size": 200, "population": 60000,
                                          "found_in_sample": 2, "lookback_calls": 4, "threshold": 0.9528}
    page = render(report)
    start = page.index('data-finding="near_duplicates"')
    block = page[start:page.index("</div>", start)]
    assert "600 calls, $1.50 (estimated)" in block
    assert "200 randomly drawn calls of 60,000" in block and "4 calls before it" in block
