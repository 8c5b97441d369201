"""Small pure-ASGI helpers: read a bounded body, send a whole response, stream one."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping

from thrifty.errors import RequestTooLarge

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"
SSE = b"text/event-stream"


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers as a dict of lower-case names (ASGI servers already lower-case them)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
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
                raise RequestTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def raw_headers(content_type: bytes, extra: Mapping[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    out = [(b"content-type", content_type)]
    if extra:
        out.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
    return out


async def send_response(send: Send, status: int, body: bytes, headers: dict[str, str] | None = None,
                        content_type: bytes = JSON) -> None:
    raw = raw_headers(content_type, headers)
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def start_stream(send: Send, headers: dict[str, str]) -> None:
    raw = raw_headers(SSE, headers)
    raw.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": 200, "headers": raw})


async def stream_chunk(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def end_stream(send: Send, body: bytes = b"") -> None:
    await send({"type": "http.response.body", "body": body, "more_body": False})
