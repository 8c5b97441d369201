"""What each lever costs the gateway per call, in-process: the flow and the recorder, no HTTP.

The same small chat completion (a counter in the user message, so every exact-cache lookup is a
miss that is then stored) goes through `build_flow` against a provider that answers at once
from memory, under configurations that add one lever at a time to the pass-through one of
bench/peers.py. Each configuration is timed in its own process, several rounds, and the median
round is reported: the CPU a lever adds per call, which bench/peers.py sees as lost throughput.

    python bench/lever_costs.py [--calls 5000] [--rounds 3] [--out bench/results/lever_costs.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = ("pass-through", "exact-cache", "prompt-cache", "usd-budget", "rpm-limit", "production-like")

RESPONSE = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "It ships today."},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 6, "total_tokens": 36}}


def config(variant: str, ledger: Path) -> dict:
    sys.path.insert(0, str(HERE))
    import _peers_stack as stack

    base = stack.thrifty_config("http://127.0.0.1:9", ledger, "bench-key", production=False)
    prod = stack.thrifty_config("http://127.0.0.1:9", ledger, "bench-key", production=True)
    if variant == "production-like":
        return prod
    if variant == "exact-cache":
        base["levers"]["exact_cache"] = {"enabled": True, "backend": "memory"}
    elif variant == "prompt-cache":
        base["levers"]["prompt_cache"] = {"enabled": True}
    elif variant == "usd-budget":
        base["budgets"] = {"budgets": prod["budgets"]["budgets"]}
    elif variant == "rpm-limit":
        base["budgets"] = {"rate_limits": prod["budgets"]["rate_limits"]}
    return base


async def _time_calls(variant: str, calls: int) -> float:
    """Microseconds per call through the flow and the recorder (run inside a fresh process)."""
    from thrifty.config import parse_config
    from thrifty.contract import Call
    from thrifty.core.flow import build_flow
    from thrifty.core.gateway import Gateway
    from thrifty.core.recorder import Exchange
    from thrifty.wire import OPENAI_CHAT

    work = Path(tempfile.mkdtemp(prefix="thrifty-lever-costs-"))
    gw = Gateway(parse_config(config(variant, work / "ledger.db")))

    async def answer(body, headers):  # the provider, answering at once
        return dict(RESPONSE)

    for provider in gw.providers.values():
        provider.complete = answer  # type: ignore[method-assign]
    flow, _ = build_flow(gw)
    await gw.start()

    async def one(i: int) -> None:
        body = {"model": "gpt-4o-mini", "max_tokens": 64, "temperature": 0, "messages": [
            {"role": "system", "content": "You are a helpful assistant for an online shop."},
            {"role": "user", "content": f"Where is my order {i}? It was due yesterday."}]}
        call = Call(request_id=f"r{i}", tenant="bench", wire=OPENAI_CHAT, headers={}, body=body,
                    model="gpt-4o-mini", stream=False, feature="bench",
                    policy=gw.policies.for_call("bench", "bench", "gpt-4o-mini"))
        done = await flow(call)
        ex = Exchange(request_id=call.request_id, started_at=time.time(), tenant="bench", surface="openai",
                      status=200)
        gw.recorder.record(ex, call, done)

    for i in range(300):  # warm caches, plans and the tokenizer
        await one(i)
    started = time.perf_counter()
    for i in range(calls):
        await one(1000 + i)
    elapsed = time.perf_counter() - started
    gw.ledger.close()
    for provider in gw.providers.values():
        await provider.close()
    return elapsed / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=5000, help="calls per round (default 5000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per configuration; the median is kept (default 3)")
    p.add_argument("--out", default=str(HERE / "results" / "lever_costs.json"), help="where the JSON goes")
    p.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)  # a single round, in this process
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps({"us_per_call": asyncio.run(_time_calls(args.one, args.calls))}))
        return 0
    results: dict[str, dict] = {}
    for variant in VARIANTS:
        rounds = []
        for _ in range(args.rounds):
            out = subprocess.run([sys.executable, __file__, "--one", variant, "--calls", str(args.calls)],
                                 capture_output=True, text=True, check=True)
            rounds.append(json.loads(out.stdout.strip().splitlines()[-1])["us_per_call"])
        results[variant] = {"median_us": statistics.median(rounds), "rounds_us": rounds}
        print(f"{variant:<16} {results[variant]['median_us']:7.1f} us/call  (rounds: "
              + ", ".join(f"{r:.1f}" for r in rounds) + ")", flush=True)
    base = results["pass-through"]["median_us"]
    for variant in VARIANTS[1:]:
        results[variant]["added_us"] = results[variant]["median_us"] - base
    print("added over pass-through: " + ", ".join(f"{v} +{results[v]['added_us']:.1f}" for v in VARIANTS[1:]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"calls": args.calls, "rounds": args.rounds, "results": results}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
