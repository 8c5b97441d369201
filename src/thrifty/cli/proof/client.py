"""The proof's client: each call of the mix through the real openai SDK, to the emulator or the gateway."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable

from thrifty.cli.proof.mix import FRONTIER, Item


def request_of(item: Item) -> dict[str, Any]:
    body: dict[str, Any] = {"model": FRONTIER, "messages": item.messages, "temperature": 0}
    if item.max_tokens:
        body["max_tokens"] = item.max_tokens
    return body


async def send_all(base_url: str, api_key: str, items: list[Item], *, through_gateway: bool,
                   concurrency: int, on_done: Callable[[], None]) -> list[dict[str, Any]]:
    """Each item's answer text, usage, served model and cache outcome (or its error)."""
    import openai

    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=2, timeout=120)
    gate = asyncio.Semaphore(concurrency)

    async def one(item: Item) -> dict[str, Any]:
        headers = {"x-thrifty-feature": item.cohort} if through_gateway else {}
        if through_gateway and item.defer:
            headers["x-thrifty-defer"] = "24h"
        async with gate:
            try:
                raw = await client.chat.completions.with_raw_response.create(**request_of(item), extra_headers=headers)
                if raw.http_response.status_code == 202:
                    resp = await _job_answer(client, raw.http_response.json())
                    h = {"x-thrifty-model": resp.get("model"), "x-thrifty-cache": "deferred"}
                else:
                    resp, h = raw.http_response.json(), raw.http_response.headers
                text = resp["choices"][0]["message"].get("content") or ""
                return {"answer": text, "usage": resp.get("usage"), "model": h.get("x-thrifty-model") or resp.get("model"),
                        "cache": h.get("x-thrifty-cache"), "tier": h.get("x-thrifty-tier"), "error": None}
            except (openai.APIError, KeyError, IndexError, TypeError) as exc:
                return {"answer": None, "usage": None, "model": None, "cache": None, "tier": None,
                        "error": f"{type(exc).__name__}: {exc}"}
            finally:
                on_done()

    try:
        return await asyncio.gather(*(one(i) for i in items))
    finally:
        await client.close()


async def _job_answer(client: Any, job: dict[str, Any], timeout_s: float = 180.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while job["status"] not in ("completed", "errored", "expired", "cancelled"):
        if loop.time() > deadline:
            raise TimeoutError(f"deferred job {job['id']} not done after {timeout_s:g} s")
        await asyncio.sleep(0.25)
        job = await client.get(f"/thrifty/jobs/{job['id']}", cast_to=object)
    if job["status"] != "completed" or not job.get("response"):
        raise KeyError(f"deferred job {job['id']} ended {job['status']}")
    return job["response"]


def progress(label: str, total: int, live: bool) -> Callable[[], None]:
    done = [0]

    def tick() -> None:
        done[0] += 1
        if live:
            end = "\n" if done[0] == total else ""
            print(f"\r  {label}: {done[0]}/{total} calls", end=end, flush=True, file=sys.stderr)

    return tick

