"""Budget alerts: a log line, and a webhook POST with a JSON body, fire-and-forget.

The request path never waits for a webhook: each POST runs as a background task with a timeout,
and a slow or failing receiver only costs a warning in the log. The enforcer decides *when* an
alert fires (each threshold once per window, claimed through the budget store so that one
replica of many sends it); this module only delivers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Coroutine

import orjson

log = logging.getLogger("thrifty.budgets")


class Alerter:
    def __init__(self, timeout_s: float = 2.0) -> None:
        self.timeout_s = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: Any = None  # aiohttp.ClientSession, made on first use (no I/O at start-up)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` in the background; its exceptions are logged, never raised."""
        task = asyncio.get_running_loop().create_task(self._guarded(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("budget alert failed")

    async def deliver(self, payload: dict[str, Any], webhook: str | None) -> None:
        log.warning("budget alert: %s", payload["text"])
        if webhook is None:
            return
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        try:
            async with self._session.post(webhook, data=orjson.dumps(payload),
                                          headers={"content-type": "application/json"}) as resp:
                if resp.status >= 300:
                    log.warning("budget webhook %s answered HTTP %d", _host(webhook), resp.status)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.warning("budget webhook %s failed: %s", _host(webhook), type(exc).__name__)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for alerts in flight (tests, shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def close(self) -> None:
        await self.drain(self.timeout_s + 1)
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _host(url: str) -> str:
    # Webhook URLs often carry a secret in their path: log only where they point.
    return url.split("://", 1)[-1].split("/", 1)[0]
