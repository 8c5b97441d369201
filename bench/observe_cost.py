"""What the observers cost per ledger row on the request path: metrics, alerts, spans.

Feeds the same constructed rows to each observer alone (and to all three) in process, and prints
microseconds per row; the FOCUS export's rows per second over a generated SQLite ledger too.

    python bench/observe_cost.py [--rows 50000] [--out bench/results/observe_cost.json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.ledger_util import make_row  # noqa: E402

from thrifty.contract import LeverSaving  # noqa: E402
from thrifty.observe.build import Observability  # noqa: E402
from thrifty.observe.settings import ObserveConfig  # noqa: E402


def rows(n: int):
    levers = (LeverSaving("routing", Decimal("0.0002")), LeverSaving("prompt_cache", Decimal("0.00001")))
    return [make_row(f"thr_{i:08d}", feature=f"f{i % 20}", tenant=f"t{i % 5}", tier=("fast", "standard")[i % 2],
                     baseline_cost_usd=Decimal("0.000333"), levers=levers, started_at=1.7e9 + i,
                     finished_at=1.7e9 + i + 0.4) for i in range(n)]


def per_row_us(observers, data) -> float:
    t = time.perf_counter()
    for r in data:
        for o in observers:
            o(r)
    return (time.perf_counter() - t) / len(data) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--out", default="bench/results/observe_cost.json")
    args = ap.parse_args(argv)
    data = rows(args.rows)
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    alerts = [{"name": "c", "kind": "cost_per_request", "above_usd": 1, "window_s": 3600},
              {"name": "e", "kind": "escalation_rate", "above": 0.3, "window_s": 3600}]
    results: dict = {"rows": args.rows}
    for name, cfg in (("metrics", {}), ("alerts", {"metrics": {"enabled": False}, "alerts": alerts}),
                      ("otel", {"metrics": {"enabled": False}, "otel": {"enabled": True}}),
                      ("all", {"otel": {"enabled": True}, "alerts": alerts})):
        exporter = InMemorySpanExporter()
        obs = Observability(ObserveConfig(**cfg), span_processor=SimpleSpanProcessor(exporter))
        results[f"{name}_us_per_row"] = round(per_row_us(obs.observers, data), 2)
        print(f"{name:8s} {results[f'{name}_us_per_row']:8.2f} us per row")

    from thrifty.cli.export_focus import ledger_pages, write_focus
    from thrifty.ledger import SQLiteLedger
    from thrifty.pricing import PriceBook

    with tempfile.TemporaryDirectory() as tmp:
        ledger = SQLiteLedger(f"{tmp}/ledger.db", journal=False)
        ledger.start()
        for r in rows(args.rows):
            ledger.record(r)
        ledger.flush(60)
        ledger.close()
        t = time.perf_counter()
        summary = write_focus(ledger_pages(SQLiteLedger(f"{tmp}/ledger.db", journal=False)), io.StringIO(),
                              PriceBook())
        seconds = time.perf_counter() - t
    results["focus_calls_per_s"] = round(summary["calls"] / seconds)
    results["focus_rows"] = summary["rows"]
    print(f"focus    {results['focus_calls_per_s']:8d} calls/s ({summary['rows']} FOCUS rows)")
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
