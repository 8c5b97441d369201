"""Latency of a routing decision: request features + rules -> tier -> deployment, per request shape.

Times, per request, `features_from_body` on either wire (the features), `Router.decide`
(rules, user-tier modifier, pick), and both together, over a mix of request shapes (short chat,
few-shot multiple choice, code, a long RAG prompt, an agent turn with tools, Anthropic bodies), and
prints p50 / p99 / max in microseconds. Writes JSON (default bench/results/route_decision.json).

Usage: python bench/route_decision.py [--rounds N] [--out FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from pathlib import Path

from thrifty.pricing import PriceBook
from thrifty.routing import Router, RoutingConfig, features_from_body
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT, Wire

CONFIG = {
    "tiers": {"fast": ["gpt-4o-mini", "claude-haiku"], "standard": ["gpt-4o", "claude-sonnet"],
              "heavy": ["claude-opus"]},
    "default_tier": "standard",
    "rules": [
        {"name": "agents", "when": {"tools": True, "tool_results": {"ge": 1}}, "tier": "heavy"},
        {"name": "huge", "when": {"long_context": True}, "tier": "heavy"},
        {"name": "reasoning", "when": {"request_type": "reasoning"}, "tier": "heavy"},
        {"name": "code", "when": {"request_type": "code", "input_tokens": {"ge": 2000}}, "tier": "heavy"},
        {"name": "code-small", "when": {"request_type": "code"}, "tier": "standard"},
        {"name": "rag", "when": {"retrieved_chunks": {"ge": 3}}, "tier": "standard"},
        {"name": "trivial", "when": {"request_type": ["classification", "extraction", "rewrite"],
                                     "input_tokens": {"lt": 4000}}, "tier": "fast"},
        {"name": "json", "when": {"structured_output": True, "turns": {"le": 2}}, "tier": "fast"},
        {"name": "support", "when": {"feature": ["support-chat", "faq"]}, "tier": "fast"},
    ],
    "user_tiers": {"free": {"heavy_per_day": 1000000, "max_tier": "standard"}},
}


class _Dep:
    def __init__(self, model: str) -> None:
        self.model, self.price_provider = model, None


DEPLOYMENTS = {"gpt-4o-mini": _Dep("gpt-4o-mini"), "claude-haiku": _Dep("claude-3-5-haiku-latest"),
               "gpt-4o": _Dep("gpt-4o"), "claude-sonnet": _Dep("claude-sonnet-4-5"),
               "claude-opus": _Dep("claude-opus-4-1")}

MCQ = ("Which of the following statements best explains why magnets usually stick to a refrigerator door?\n"
       "A) The refrigerator door is smooth.\nB) The refrigerator door contains iron.\n"
       "C) The refrigerator door is a good conductor.\nD) The refrigerator door has electric wires in it.\n"
       "Print only a single choice from \"A\" or \"B\" or \"C\" or \"D\" without explanation.\nAnswer:\nB\n\n")
RAG = "".join(f"<document index=\"{i}\">\n" + ("Quarterly revenue grew in every region we track. " * 40)
              + "\n</document>\n" for i in range(12))
TOOLS = [{"type": "function", "function": {"name": f"tool_{i}", "description": "Look things up in the catalog.",
                                           "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}
         for i in range(6)]


def shapes() -> list[tuple[str, Wire, dict, dict]]:
    """(name, the client's wire, body, headers)"""
    user = lambda text: {"role": "user", "content": text}  # noqa: E731
    return [
        ("chat-short", OPENAI_CHAT, {"model": "thrifty/auto", "messages": [user("What are your support hours?")]},
         {"x-thrifty-feature": "support-chat"}),
        ("classify", OPENAI_CHAT, {"model": "thrifty/auto", "messages": [
            {"role": "system", "content": "You label support tickets."},
            user("Classify the sentiment of this review as positive, negative or neutral: the app crashes daily.")]},
         {}),
        ("mcq-5shot", OPENAI_CHAT, {"model": "thrifty/auto", "messages": [user(MCQ * 5)]}, {}),
        ("code", OPENAI_CHAT, {"model": "thrifty/auto", "messages": [
            user("Write a python function to identify non-prime numbers.\n```python\ndef is_prime(n):\n    ...\n```")]},
         {}),
        ("json-extract", OPENAI_CHAT, {"model": "thrifty/auto", "messages": [
            user("Extract the invoice number, date and total from: Invoice 88231, 2024-03-01, total $1,204.50")],
            "response_format": {"type": "json_schema", "json_schema": {"name": "inv", "schema": {"type": "object"}}}},
         {}),
        ("rag-long", OPENAI_CHAT, {"model": "thrifty/auto", "messages": [
            {"role": "system", "content": "Answer from the documents only."},
            user(RAG + "\nSummarise what the documents say about revenue.")]}, {}),
        ("agent-turn", OPENAI_CHAT, {"model": "thrifty/auto", "tools": TOOLS, "messages": [
            user("Find a blue jacket under $100 and add it to my cart."),
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                                  "function": {"name": "tool_0", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "[{\"sku\": 1}]"}]}, {}),
        ("multi-turn", OPENAI_CHAT, {"model": "thrifty/auto", "messages": [
            user("Tell me about Lisbon."), {"role": "assistant", "content": "Lisbon is the capital of Portugal. " * 20},
            user("And what should I see there in two days?")]}, {"x-thrifty-user-tier": "free"}),
        ("anthropic-math", ANTHROPIC_MESSAGES, {"model": "thrifty/auto", "max_tokens": 512, "system": "Be brief.",
                                         "messages": [{"role": "user", "content": [
                                             {"type": "text", "text": "Solve for x: 3x + 7 = 22. Show the steps."}]}]},
         {}),
        ("anthropic-rewrite", ANTHROPIC_MESSAGES, {"model": "thrifty/auto", "max_tokens": 256, "messages": [
            {"role": "user", "content": "Rewrite this more formally: hey, can u send the report by fri?"}]}, {}),
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000, help="timed decisions per request shape")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "route_decision.json")
    args = parser.parse_args()

    router = Router(RoutingConfig.model_validate(CONFIG), deployments=DEPLOYMENTS, prices=PriceBook())
    cases = shapes()
    timings: dict[str, dict[str, list[float]]] = {name: {"features": [], "decide": [], "total": []}
                                                  for name, *_ in cases}
    decisions = {}
    for name, wire, body, headers in cases:  # warm-up
        for _ in range(500):
            router.decide(features_from_body(body, wire, headers=headers, tenant="t1"), body["model"])
    clock = time.perf_counter_ns
    gc.disable()  # time the decision, not a collection that happens to land in it
    try:
        for _ in range(args.rounds):
            for name, wire, body, headers in cases:
                t0 = clock()
                feats = features_from_body(body, wire, headers=headers, tenant="t1")
                t1 = clock()
                decision = router.decide(feats, body["model"])
                t2 = clock()
                row = timings[name]
                row["features"].append((t1 - t0) / 1e3)
                row["decide"].append((t2 - t1) / 1e3)
                row["total"].append((t2 - t0) / 1e3)
                decisions[name] = (feats.request_type, decision.tier, decision.deployment, decision.reason)
    finally:
        gc.enable()

    results: dict = {"python": platform.python_version(), "machine": platform.machine(),
                     "rounds": args.rounds, "shapes": {}}
    every: dict[str, list[float]] = {"features": [], "decide": [], "total": []}
    print(f"{'shape':<18}{'type':<15}{'tier':<9}{'features p50/p99':>18}{'decide p50/p99':>17}{'total p50/p99 us':>19}")
    for name, parts in timings.items():
        stats = {k: {"p50": percentile(v, 0.5), "p99": percentile(v, 0.99), "max": max(v)} for k, v in parts.items()}
        for k, v in parts.items():
            every[k].extend(v)
        rtype, tier, deployment, reason = decisions[name]
        results["shapes"][name] = {"request_type": rtype, "tier": tier, "deployment": deployment,
                                   "reason": reason, **stats}
        print(f"{name:<18}{rtype:<15}{tier:<9}{stats['features']['p50']:>8.1f} /{stats['features']['p99']:>7.1f}"
              f"{stats['decide']['p50']:>8.1f} /{stats['decide']['p99']:>6.1f}"
              f"{stats['total']['p50']:>9.1f} /{stats['total']['p99']:>7.1f}")
    results["all"] = {k: {"p50": percentile(v, 0.5), "p99": percentile(v, 0.99)} for k, v in every.items()}
    a = results["all"]
    print(f"{'all shapes':<42}{a['features']['p50']:>8.1f} /{a['features']['p99']:>7.1f}"
          f"{a['decide']['p50']:>8.1f} /{a['decide']['p99']:>6.1f}{a['total']['p50']:>9.1f} /{a['total']['p99']:>7.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
