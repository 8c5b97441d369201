"""The completion webhook of a deferred call: its job, POSTed as JSON, a few tries with backoff."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from thrifty import jsonutil

log = logging.getLogger("thrifty.batch")

TRIES = 3
TIMEOUT_S = 10.0


async def post_webhook(url: str, job: dict[str, Any]) -> bool:
    """POST `job` to `url`; True once it answered 2xx. Failures are logged, never raised."""
    body = jsonutil.dumps(job)
    delay = 1.0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
        for attempt in range(1, TRIES + 1):
            try:
                async with session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
                    if 200 <= resp.status < 300:
                        return True
                    why = f"HTTP {resp.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                why = type(exc).__name__
            log.warning("batch lane: webhook for job %s failed (%s), try %d of %d", job.get("id"), why, attempt, TRIES)
            if attempt < TRIES:
                await asyncio.sleep(delay)
                delay *= 4
    return False
