"""Limits on slow and oversized clients, in uvicorn's httptools protocol.

uvicorn bounds neither the time a client may take to send its headers nor their size when it
parses with httptools; this subclass adds both, from the `server:` config:

- `header_timeout_s`: a connection whose request line and headers are not complete within N s
  of connecting (or of the first byte of a later request on the same connection) is closed, with
  408 when it had sent anything (slowloris);
- `max_header_bytes` (request line + every header) and `max_header_value_bytes` (one header's
  name + value): 431 and the connection closed. Bytes are counted as they arrive, so an endless
  header is cut off at the limit, not buffered;
- a request whose body has not all arrived when its answer is sent (the 408 of
  `body_timeout_s`, enforced by `asgi.read_body`) has its connection closed, so the rest of a slow
  body is not waited for;
- idle keep-alive connections: uvicorn's own `timeout_keep_alive`, set from `keep_alive_timeout_s`.

The error bodies use the protocol's shape of the route asked for (Anthropic for /v1/messages,
OpenAI elsewhere). The class is named by import path (`PROTOCOL`), so worker processes of
`--workers N` load it too; it reads the limits from the gateway app it serves.
"""

from __future__ import annotations

import logging
from asyncio import TimerHandle
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from thrifty.errors import GatewayError, RequestTimeout, RequestTooLarge

log = logging.getLogger("thrifty.server")

PROTOCOL = "thrifty.api.server:LimitedHttpToolsProtocol"
LINGER_S = 2.0  # how long a refused connection is still read from before it is closed


def _limits(config: Any) -> Any:  # -> thrifty.config.ServerConfig
    """The `server:` config of the gateway app uvicorn serves (under any middleware it added)."""
    limits = getattr(config, "_thrifty_limits", None)
    if limits is None:
        from thrifty.api.app import GatewayApp
        from thrifty.config import ServerConfig

        app = config.loaded_app
        while not isinstance(app, GatewayApp) and hasattr(app, "app"):
            app = app.app
        limits = app.gateway.config.server if isinstance(app, GatewayApp) else ServerConfig()
        config._thrifty_limits = limits
    return limits


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = _limits(config)
        self._head_timer: TimerHandle | None = None
        self._in_head = False  # reading a request line and headers
        self._head_bytes = 0  # bytes received since that began
        self._head_exact = 0  # request line + headers as parsed
        self._refused: GatewayError | None = None
        self._lingering = False
        self._body_since = 0.0  # when the current request's headers were complete

    # --- the connection -----------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._begin_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's, plus the header limits; a limit hit inside a parser callback aborts parsing.
        if self._lingering:
            return  # refused: what the client still sends is read and dropped
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refused is not None:
                self._refuse(self._refused)
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(self._too_large(f"request headers exceed {self.limits.max_header_bytes} bytes "
                                         "(server.max_header_bytes)"))

    # --- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # a later request on this connection: its first byte is here
            self._begin_head()
        self._head_exact = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_exact += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        self._head_exact += size + 4
        if size > self.limits.max_header_value_bytes:
            shown = name.decode("latin-1")[:64]
            self._refused = self._too_large(f"header {shown} is {size} bytes; the limit is "
                                            f"{self.limits.max_header_value_bytes} (server.max_header_value_bytes)",
                                            param=shown)
        elif self._head_exact > self.limits.max_header_bytes:
            self._refused = self._too_large(f"request headers exceed {self.limits.max_header_bytes} bytes "
                                            "(server.max_header_bytes)")
        if self._refused is not None:
            raise self._refused  # httptools stops parsing; data_received answers
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        self._body_since = self.loop.time()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if (cycle is not None and cycle.more_body and not self.transport.is_closing()
                and self.loop.time() - self._body_since >= self.limits.body_timeout_s):
            # Answered (408) before the body was all there: do not wait for the rest of it.
            self.server_state.total_requests += 1
            self.flow.resume_reading()  # drop what still arrives rather than leave it unread
            self._linger_close()
            return
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._in_head = True  # what arrives next is the next request's head
            self._head_bytes = 0

    # --- limits ---------------------------------------------------------------------------

    def _begin_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes == 0:  # connected and sent nothing: nothing to answer
            self.transport.close()
            return
        self._refuse(RequestTimeout(f"request headers not received within {self.limits.header_timeout_s:g} s "
                                    "(server.header_timeout_s)", code="request_timeout"))

    @staticmethod
    def _too_large(message: str, param: str | None = None) -> GatewayError:
        return RequestTooLarge(message, status=431, param=param, code="request_header_fields_too_large")

    def _refuse(self, err: GatewayError) -> None:
        """Answer `err` and close the connection (unless an answer is being written already)."""
        self._cancel_head_timer()
        self._in_head = False
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT

            wire = ANTHROPIC_MESSAGES if getattr(self, "url", b"").startswith(b"/v1/messages") else OPENAI_CHAT
            body = wire.error_body(err, "")
            reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}.get(err.status, b"Error")
            self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                                 b"connection: close\r\n\r\n%s" % (err.status, reason, len(body), body))
        log.info("closing a connection from %s: %s", self.client, err.message)
        if self._head_bytes:
            self._linger_close()
        else:
            self.transport.close()

    def _linger_close(self) -> None:
        """Close a connection whose client may still be sending. Closing at once would answer its
        next bytes with a reset, which can make it lose the answer: half-close instead, drop what
        still arrives, and close a moment later (a lingering close)."""
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._lingering = True
        self.loop.call_later(LINGER_S, self.transport.close)
