"""A small, realistic mixed workload driven through the real `openai` SDK.

Prompts come from the public data in THRIFTY_DATA_DIR when it is there (banking support questions,
HumanEval tasks, MT-Bench questions) and from a few built-in ones otherwise.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

SUPPORT_POLICY = (
    "You are the support assistant of Northwind Bank. Answer in at most three sentences, "
    "politely, and never ask for full card numbers or passwords. "
) + " ".join(
    f"Policy {i}: {topic} requests are handled in the app under Settings > {topic.title()}; "
    f"escalate to a human agent only if the customer reports fraud or a failed payment above 500 EUR."
    for i, topic in enumerate(["card", "transfer", "refund", "pin", "limit", "statement", "exchange",
                               "top-up", "account", "verification", "fee", "cash", "direct debit",
                               "beneficiary", "dispute", "travel"] * 4)
)

TRIAGE_SCHEMA = {
    "type": "object",
    "properties": {"category": {"type": "string", "enum": ["billing", "bug", "feature", "other"]},
                   "urgent": {"type": "boolean"}},
    "required": ["category", "urgent"],
    "additionalProperties": False,
}

SEARCH_TOOL = {
    "type": "function",
    "function": {"name": "search_docs", "description": "Search internal documentation",
                 "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                                "required": ["query"]}},
}

SUMMARY_STYLE = ("Summarise for an executive in five bullet points. " + " ".join(
    f"Style rule {i}: {rule}." for i, rule in enumerate([
        "lead with the number that moved most", "name the owner of every action",
        "never exceed twenty words per bullet", "flag risks before opportunities",
        "quote currencies in EUR with no decimals", "write dates as ISO 8601",
        "avoid adjectives that cannot be measured", "end with the single decision needed"] * 12)))

_BUILTIN_QUESTIONS = ["How do I locate my card?", "Why was my transfer declined?",
                      "Can I change my PIN in the app?", "What is the fee for foreign cash withdrawals?",
                      "My top-up did not arrive, what should I do?", "How do I dispute a payment?"]
_BUILTIN_CODE = ["def is_palindrome(s: str) -> bool:\n    \"\"\"Return True if s reads the same backwards.\"\"\"\n",
                 "def fizzbuzz(n: int) -> list[str]:\n    \"\"\"FizzBuzz from 1 to n.\"\"\"\n"]
_BUILTIN_DOCS = ["Quarterly report: revenue grew 12% while infrastructure cost grew 31%, driven by "
                 "inference spend on the support assistant and document summaries. " * 20]


def data_dir() -> Path:
    return Path(os.environ.get("THRIFTY_DATA_DIR", "../shared/data"))


def _banking_questions() -> list[str]:
    path = data_dir() / "prompts/banking77/test.csv"
    if not path.exists():
        return _BUILTIN_QUESTIONS
    with open(path, newline="") as f:
        return [row["text"] for row in csv.DictReader(f)][:400]


def _code_tasks() -> list[str]:
    path = data_dir() / "prompts/humaneval/HumanEval.jsonl.gz"
    if not path.exists():
        return _BUILTIN_CODE
    with gzip.open(path, "rt") as f:
        return [json.loads(line)["prompt"] for line in f][:60]


def _long_questions() -> list[str]:
    path = data_dir() / "prompts/mt_bench/question.jsonl"
    if not path.exists():
        return _BUILTIN_DOCS
    with open(path) as f:
        return [json.loads(line)["turns"][0] for line in f]


@dataclass
class Call:
    feature: str
    kwargs: dict[str, Any]
    stream: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    defer: bool = False  # nobody waits for it: sent with x-thrifty-defer, its job polled until done


_PRODUCTS = ["a blue ceramic mug, 350 ml", "noise-cancelling headphones", "a linen shirt, size M",
             "a stainless steel water bottle", "a set of 12 colouring pencils", "a cast-iron skillet, 26 cm",
             "a wool beanie", "a USB-C charging cable, 2 m", "a paperback novel", "a yoga mat, 6 mm"]


def build_workload(n: int = 60, seed: int = 7, *, deferred: int = 0) -> list[Call]:
    """A mixed day in the life of a SaaS product, in miniature; plus `deferred` catalogue
    enrichment calls that no user waits for (the batch lane's traffic)."""
    rng = random.Random(seed)
    questions, code, long_q = _banking_questions(), _code_tasks(), _long_questions()
    calls: list[Call] = []
    for i in range(n):
        r = rng.random()
        if r < 0.40:  # FAQ support bot: long stable policy prefix, short questions
            calls.append(Call("support-chat", {"model": "gpt-4o-mini", "messages": [
                {"role": "system", "content": SUPPORT_POLICY},
                # FAQ traffic is skewed: a few questions make up much of it, asked word for word.
                {"role": "user", "content": rng.choice(questions[:8] if rng.random() < 0.4 else questions)}],
                "temperature": 0}))
        elif r < 0.55:  # ticket triage into a JSON schema; the router picks the tier
            calls.append(Call("ticket-triage", {"model": "thrifty/auto", "messages": [
                {"role": "user", "content": "Classify this ticket: " + rng.choice(questions)}],
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "triage", "schema": TRIAGE_SCHEMA, "strict": True}}}))
        elif r < 0.72:  # code assistant, streamed
            calls.append(Call("code-assist", {"model": "gpt-4o", "messages": [
                {"role": "user", "content": "Complete this function:\n" + rng.choice(code)}],
                "max_tokens": 300}, stream=True))
        elif r < 0.90:  # document summaries on Claude, through the OpenAI SDK
            calls.append(Call("doc-summary", {"model": "claude-sonnet-4-5", "messages": [
                {"role": "system", "content": SUMMARY_STYLE},
                {"role": "user", "content": rng.choice(long_q)}], "max_tokens": 400}, stream=rng.random() < 0.5))
        else:  # an agent step with tools on the heavy tier
            calls.append(Call("research-agent", {"model": "claude-opus-4-1", "messages": [
                {"role": "user", "content": "Find our refund policy for disputed card payments."}],
                "tools": [SEARCH_TOOL], "max_tokens": 500}, headers={"x-thrifty-task": f"task-{i // 3}"}))
    for i in range(deferred):  # a nightly catalogue enrichment job: one call per product
        calls.append(Call("enrichment", {"model": "gpt-4o-mini", "max_tokens": 60, "messages": [
            {"role": "system", "content": "Write one sentence of product copy and three search keywords."},
            {"role": "user", "content": f"Product {i}: {_PRODUCTS[i % len(_PRODUCTS)]}"}]},
            headers={"x-thrifty-defer": "24h"}, defer=True))
    return calls


async def run_workload(base_url: str, api_key: str, calls: list[Call], *, concurrency: int = 8,
                       on_done: Callable[[], None] | None = None) -> list[str | None]:
    """Send every call through the gateway; returns each call's error (None when it succeeded)."""
    import openai

    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=60)
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Call) -> str | None:
        headers = {"x-thrifty-feature": call.feature, **call.headers}
        async with gate:
            try:
                if call.defer:
                    await _deferred(client, call, headers)
                elif call.stream:
                    stream = await client.chat.completions.create(
                        **call.kwargs, stream=True, stream_options={"include_usage": True},
                        extra_headers=headers)
                    async for _ in stream:
                        pass
                else:
                    await client.chat.completions.create(**call.kwargs, extra_headers=headers)
                return None
            except openai.APIError as exc:
                return f"{type(exc).__name__}: {exc}"
            finally:
                if on_done:
                    on_done()

    try:
        return await asyncio.gather(*(one(c) for c in calls))
    finally:
        await client.close()


async def _deferred(client: Any, call: Call, headers: dict[str, str], timeout_s: float = 120.0) -> None:
    """A deferred call: 202 and a job at once, the answer once the provider batch is done."""
    import openai

    raw = await client.chat.completions.with_raw_response.create(**call.kwargs, extra_headers=headers)
    if raw.http_response.status_code != 202:
        raise openai.APIError(f"expected 202 for a deferred call, got {raw.http_response.status_code}",
                              raw.http_response.request, body=None)
    job = raw.http_response.json()
    deadline = asyncio.get_running_loop().time() + timeout_s
    while job["status"] not in ("completed", "errored", "expired", "cancelled"):
        if asyncio.get_running_loop().time() > deadline:
            raise openai.APIError(f"deferred job {job['id']} not done after {timeout_s:g} s",
                                  raw.http_response.request, body=None)
        await asyncio.sleep(0.25)
        job = await client.get(f"/thrifty/jobs/{job['id']}", cast_to=object)
    if job["status"] != "completed":
        raise openai.APIError(f"deferred job {job['id']} ended {job['status']}: {job.get('error')}",
                              raw.http_response.request, body=None)
