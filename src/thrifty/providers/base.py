"""The provider interface: one adapter per wire format, found through the registry.

An adapter sends a request body already in its own wire format and returns the provider's
answer as parsed JSON (or, for streams, parsed events). It translates every transport and HTTP
error into `thrifty.errors` at this boundary; nothing above it sees aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from typing import Any, AsyncIterator, ClassVar, Mapping

import aiohttp

from thrifty import jsonutil
from thrifty.config import ProviderConfig
from thrifty.errors import UPSTREAM_INTERRUPTED, GatewayError, UpstreamError, UpstreamTimeout, error_for_status
from thrifty.redact import Redactor
from thrifty.wire import Wire

log = logging.getLogger("thrifty.providers")

# The code of an error after the request reached the provider and its answer was cut (a timeout,
# a dropped connection): unlike a refusal, the provider may have billed it.
INTERRUPTED = UPSTREAM_INTERRUPTED  # reached the provider: it may have billed the attempt


class Provider(ABC):
    wire: ClassVar[Wire]  # the wire format this adapter speaks
    path: ClassVar[str]  # the endpoint under base_url

    def __init__(self, name: str, config: ProviderConfig, *, redactor: Redactor | None = None) -> None:
        self.name = name
        self.config = config
        # What the provider says goes to clients through this: no key, no internal address.
        self.redactor = redactor if redactor is not None else Redactor(
            [config.api_key or ""], [config.base_url])
        self.url = config.base_url.rstrip("/") + self.path
        self._forward = tuple(h.lower() for h in config.forward_headers)
        self._auth = self.auth_headers()  # fixed for the process: built once, not per call
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.config.max_connections, ttl_dns_cache=300,
                                         enable_cleanup_closed=True)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s,
                                        sock_connect=self.config.connect_timeout_s)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                              json_serialize=lambda o: jsonutil.dumps(o).decode(),
                                              auto_decompress=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @abstractmethod
    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate Thrifty (not the client) to the provider."""

    @abstractmethod
    def error_message(self, body: Any) -> str | None:
        """The human message inside this provider's error body, if any."""

    @abstractmethod
    def parse_stream_event(self, event: str | None, data: bytes) -> dict[str, Any] | None:
        """One SSE event as a dict, or None at the end-of-stream marker. Raises on error events."""

    def _headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", **self._auth}
        for h in self._forward:
            v = client_headers.get(h)
            if v is not None:
                headers[h] = v
        return headers

    async def _raise_for(self, resp: aiohttp.ClientResponse) -> None:
        raw = await resp.read()
        try:
            message = self.error_message(jsonutil.loads(raw))
        except ValueError:
            message = None
        message = message or raw.decode("utf-8", "replace")[:300] or resp.reason or "error"
        raise error_for_status(resp.status, self.upstream_message(message),
                               retry_after=resp.headers.get("retry-after"))

    def upstream_message(self, message: str) -> str:
        """A message from the provider as the client may see it (secrets, addresses removed)."""
        return f"{self.name}: {self.redactor.for_client(str(message))}"

    def connection_failed(self, exc: BaseException) -> UpstreamError:
        """The client hears that the provider could not be reached (or the connection broke),
        never where it is: the address and the cause go to the log."""
        code = _sent(exc)
        what = "unreachable" if code is None else f"connection broke off ({type(exc).__name__})"
        log.warning("upstream %s at %s %s: %s: %s", self.name, self.url, what, type(exc).__name__, exc)
        return UpstreamError(f"upstream {self.name} {what}", code=code)

    async def complete(self, body: dict[str, Any], client_headers: Mapping[str, str]) -> dict[str, Any]:
        return await self.post_json(self.url_for(body), body, client_headers)

    def url_for(self, body: dict[str, Any]) -> str:
        """Where a chat request goes: `url`, unless the provider's URL names the model (Azure)."""
        return self.url

    def endpoint(self, path: str, *, model: str | None = None) -> str:
        """Another endpoint of this provider (embeddings, token counting): `path` under base_url.
        `model`: the model the request is for, for providers whose URLs name it (Azure)."""
        return self.config.base_url.rstrip("/") + path

    async def post_json(self, url: str, body: dict[str, Any], client_headers: Mapping[str, str]) -> dict[str, Any]:
        """POST `body` to `url` (one of this provider's endpoints); its JSON answer, errors translated."""
        return await self.post_bytes(url, jsonutil.dumps(body), self._headers(client_headers))

    async def post_bytes(self, url: str, data: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """POST `data` exactly as given (a signed body must not be serialised again) with exactly
        `headers`; the JSON answer, every transport and HTTP error translated."""
        assert self._session is not None, "provider not started"
        try:
            async with self._session.post(url, data=data, headers=headers) as resp:
                if resp.status >= 400:
                    await self._raise_for(resp)
                raw = await resp.read()
        except GatewayError:
            raise
        except asyncio.TimeoutError as exc:
            raise UpstreamTimeout(f"{self.name}: the provider did not answer within "
                                  f"{self.config.timeout_s:g}s", code=_sent(exc)) from None
        except aiohttp.ClientError as exc:
            raise self.connection_failed(exc) from None
        try:
            return jsonutil.loads(raw)
        except ValueError:
            raise UpstreamError(f"{self.name}: the provider answered with invalid JSON") from None

    async def stream(self, body: dict[str, Any],
                     client_headers: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Yield the provider's stream events. Raises UpstreamError if the stream breaks off."""
        assert self._session is not None, "provider not started"
        ended = False
        try:
            async with self._session.post(self.url_for(body), data=jsonutil.dumps(body),
                                          headers=self._headers(client_headers)) as resp:
                if resp.status >= 400:
                    await self._raise_for(resp)
                event: str | None = None
                data: list[bytes] = []
                async for line in resp.content:
                    line = line.rstrip(b"\r\n")
                    if line:
                        if line.startswith(b"data:"):
                            data.append(line[5:].lstrip(b" "))
                        elif line.startswith(b"event:"):
                            event = line[6:].strip().decode()
                        continue
                    if not data:
                        event = None
                        continue
                    parsed = self.parse_stream_event(event, b"\n".join(data))
                    event, data = None, []
                    if parsed is None:
                        ended = True
                        break
                    yield parsed
                    if parsed.get("type") == "message_stop":
                        ended = True
        except GatewayError:
            raise
        except asyncio.TimeoutError as exc:
            raise UpstreamTimeout(f"{self.name}: the stream stalled past "
                                  f"{self.config.timeout_s:g}s", code=_sent(exc)) from None
        except aiohttp.ClientError as exc:
            raise self.connection_failed(exc) from None
        if not ended:
            raise UpstreamError(f"{self.name}: the stream ended before its final event", code=INTERRUPTED)


def _sent(exc: BaseException) -> str | None:
    """INTERRUPTED unless the connection itself failed (the request never reached the provider)."""
    return None if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError) else INTERRUPTED


REGISTRY: dict[str, type[Provider]] = {}  # kind -> adapter; read through providers.registry


def register(kind: str):
    """Class decorator: make an adapter available under `kind` in provider configs."""

    def deco(cls: type[Provider]) -> type[Provider]:
        REGISTRY[kind] = cls
        return cls

    return deco
