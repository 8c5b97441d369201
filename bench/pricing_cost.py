"""Micro-benchmark of `PriceBook.cost` after warm-up, against genai-prices' `calc_price`.

Prints microseconds per call and writes them as JSON (default bench/results/pricing_cost.json).
Usage: python bench/pricing_cost.py [--calls N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import genai_prices

from thrifty.contract.usage import Usage
from thrifty.pricing import PriceBook, to_genai_usage

CASES = [("gpt-4o-mini", None), ("gpt-5-mini", None), ("claude-sonnet-4-5", None),
         ("llama-3.1-8b-instant", "groq"), ("self-hosted", None)]
USAGE = Usage(input_tokens=1777, cache_read_tokens=31337, cache_write_5m_tokens=2049,
              cache_write_1h_tokens=1025, output_tokens=999, reasoning_tokens=333)


def per_call_us(fn, calls: int) -> float:
    for _ in range(min(calls, 1000)):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pricing_cost.json")
    args = parser.parse_args()

    book = PriceBook({"self-hosted": {"input": "0.1", "output": "0.3", "batch_discount": "0.5"}})
    gp_usage = to_genai_usage(USAGE)
    results = []
    for model, provider in CASES:
        for batch in (False, True):
            row = {"model": model, "provider": provider, "batch": batch,
                   "thrifty_us": per_call_us(lambda: book.cost(model, USAGE, provider=provider, batch=batch),
                                             args.calls)}
            if model != "self-hosted":
                context = {"processing": "batch"} if batch else None
                row["calc_price_us"] = per_call_us(
                    lambda: genai_prices.calc_price(gp_usage, model, provider_id=provider, price_context=context),
                    max(args.calls // 10, 1))
            results.append(row)
            extra = f"   calc_price {row['calc_price_us']:7.2f} us" if "calc_price_us" in row else ""
            print(f"{model:<22}{'batch' if batch else '':<7}cost() {row['thrifty_us']:6.2f} us{extra}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
