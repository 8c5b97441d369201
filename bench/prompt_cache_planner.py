"""Microseconds per plan() on typical upstream bodies; prints a table, writes JSON if given a path.

    .venv/bin/python bench/prompt_cache_planner.py [OUT.json]    (from the repository root)
"""

from __future__ import annotations

import json
import sys
import time
import timeit
from pathlib import Path
from typing import Any, Callable

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the request shapes live in tests/

from thrifty.shaping import PrefixStats, PromptCachePlanner
from thrifty.tokens import count_text_tokens, get_encoding
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT
from tests.shaping.helpers import agent_messages, anthropic_body, long_text, tool


def per_call_us(fn: Callable[[], Any], number: int = 1000, repeat: int = 25) -> float:
    """The best of `repeat` runs: the least disturbed by whatever else the machine is doing."""
    fn()
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    get_encoding()  # load the vocabulary outside the timings, as a gateway would at start-up
    system = long_text(3000)
    tools = [tool("lookup", long_text(150)), tool("refund", long_text(150))]
    chat = anthropic_body(system=system, tools=tools)
    agent = anthropic_body(system=system, tools=tools, messages=agent_messages(10))
    openai = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": system},
                                                   {"role": "user", "content": "What is the refund window?"}]}
    planner = PromptCachePlanner(stats=PrefixStats())

    def anthropic_plan(body: dict[str, Any]) -> Callable[[], Any]:
        return lambda: planner.plan(body, wire=ANTHROPIC_MESSAGES, model="claude-sonnet-4-5", tenant="acme")

    results = {
        "system_tokens": count_text_tokens(system),
        "anthropic_system_3k_2_tools_us": per_call_us(anthropic_plan(chat)),
        "anthropic_agent_loop_10_turns_us": per_call_us(anthropic_plan(agent)),
        "openai_system_3k_us": per_call_us(
            lambda: planner.plan(openai, wire=OPENAI_CHAT, model="gpt-4o-mini", tenant="acme")),
        "reference_orjson_loads_same_body_us": per_call_us(lambda: orjson.loads(orjson.dumps(chat))),
        "first_sight_tiktoken_3k_us": per_call_us(lambda: count_text_tokens(system), number=20),
        "cold_plan_new_system_us": _cold(planner),
    }
    for k, v in results.items():
        print(f"{k:<40} {v:10.1f}" if isinstance(v, float) else f"{k:<40} {v:>10}")
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump(results, f, indent=2)


def _cold(planner: PromptCachePlanner, n: int = 50) -> float:
    """A system prompt never seen before: hashed and tokenised once."""
    bodies = [anthropic_body(system=long_text(3000, f"variant {i}: ")) for i in range(n)]
    start = time.perf_counter()
    for b in bodies:
        planner.plan(b, wire=ANTHROPIC_MESSAGES, model="claude-sonnet-4-5", tenant="acme")
    return (time.perf_counter() - start) / n * 1e6


if __name__ == "__main__":
    main()
