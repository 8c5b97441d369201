"""Anthropic messages API."""

from __future__ import annotations

from typing import Any

from thrifty import jsonutil
from thrifty.errors import UpstreamError, error_for_status
from thrifty.providers.base import Provider, register
from thrifty.wire import ANTHROPIC_MESSAGES

ANTHROPIC_VERSION = "2023-06-01"
_ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
                 "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429,
                 "api_error": 500, "overloaded_error": 529}


@register("anthropic")
class AnthropicProvider(Provider):
    wire = ANTHROPIC_MESSAGES
    path = "/v1/messages"

    def auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        return headers

    def error_message(self, body: Any) -> str | None:
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return body["error"].get("message")
        return None

    def parse_stream_event(self, event: str | None, data: bytes) -> dict[str, Any] | None:
        try:
            payload = jsonutil.loads(data)
        except ValueError:
            raise UpstreamError(f"{self.name}: invalid JSON in stream") from None
        if payload.get("type") == "error":
            err = payload.get("error") or {}
            status = _ERROR_STATUS.get(err.get("type", ""), 502)
            raise error_for_status(status, self.upstream_message(str(err.get("message") or "stream error")))
        return payload
