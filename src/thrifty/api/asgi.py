"""Small pure-ASGI helpers: read a bounded body, send a whole response, stream one."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Mapping

from thrifty import jsonutil
from thrifty.errors import InvalidRequest, RequestTimeout, RequestTooLarge

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"
SSE = b"text/event-stream"


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers as a dict of lower-case names (ASGI servers already lower-case them)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


# Defaults of `server.body_timeout_s` and `server.max_json_depth`, for callers without the config.
BODY_TIMEOUT_S = 30.0
MAX_JSON_DEPTH = 128


async def read_body(receive: Receive, headers: dict[str, str], limit: int,
                    timeout_s: float = BODY_TIMEOUT_S) -> bytes:
    """The whole request body: 413 above `limit` bytes, 408 when it has not all arrived within
    `timeout_s` of the first read."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    try:
        async with asyncio.timeout(timeout_s):
            return await _read(receive, limit)
    except TimeoutError:
        raise RequestTimeout(f"the request body was not received within {timeout_s:g} s",
                             code="request_timeout") from None


def parse_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A request body as JSON: 400 when it is not JSON or nests deeper than `max_depth`."""
    try:
        body = jsonutil.loads(raw)
    except ValueError:
        raise InvalidRequest("the request body is not valid JSON") from None
    if jsonutil.nesting_exceeds(raw, body, max_depth):
        raise InvalidRequest(f"the request body nests objects and arrays deeper than {max_depth} levels",
                             code="json_too_deep")
    return body


async def _read(receive: Receive, limit: int) -> bytes:
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
