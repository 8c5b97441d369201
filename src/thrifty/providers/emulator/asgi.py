"""The few pure-ASGI pieces the emulator needs: read a body, answer, and notice a client leaving."""

from __future__ import annotations

import asyncio
from typing import Mapping

# The ASGI basics are shared with the gateway; the emulator adds half-sent bodies and disconnects.
from thrifty.api.asgi import JSON, SSE, Receive, Scope, Send, header_map, raw_headers, read_body  # noqa: F401


async def send_body(send: Send, status: int, body: bytes, headers: Mapping[str, str] | None = None,
                    content_type: bytes = JSON, *, complete: bool = True) -> None:
    """A whole response; with `complete=False` only its first half goes out (a dropped connection)."""
    raw = raw_headers(content_type, headers)
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    if complete:
        await send({"type": "http.response.body", "body": body})
    else:
        await send({"type": "http.response.body", "body": body[:len(body) // 2], "more_body": True})


class DisconnectWatch:
    """Sleeps that end early when the client hangs up (a gateway timing out, a user cancelling).

    The watcher task is started only on the first sleep, so unpaced answers (latency 0) cost nothing.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task: asyncio.Task[None] | None = None

    async def _wait(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass

    @property
    def disconnected(self) -> bool:
        return self._task is not None and self._task.done()

    async def sleep(self, seconds: float) -> bool:
        """Sleep; True when the client went away meanwhile."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._wait())
        if seconds > 0:
            await asyncio.wait((self._task,), timeout=seconds)
        return self._task.done()

    def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
