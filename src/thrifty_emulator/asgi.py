"""The few pure-ASGI pieces the emulator needs: read a body, answer, and notice a client leaving."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Mapping

from thrifty_emulator.errors import BodyTooLarge

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"
SSE = b"text/event-stream"


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (ASGI servers lower-case them already)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def raw_headers(content_type: bytes, extra: Mapping[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    out = [(b"content-type", content_type)]
    if extra:
        out.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
    return out


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
