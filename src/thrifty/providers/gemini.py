"""Google Gemini API (`generativelanguage.googleapis.com`): the `gemini` wire, `x-goog-api-key` auth.

`POST {base_url}/v1beta/models/{model}:generateContent`, and for streams
`:streamGenerateContent?alt=sse` (server-sent events, one `GenerateContentResponse` each, no
end marker: the stream is complete once a candidate carries its `finishReason`). The model is in
the URL, so the gateway's upstream body carries it under `MODEL_KEY`, taken off here. Errors come
as `{"error": {"code", "message", "status"}}`; a key Google refuses is a 400 `API_KEY_INVALID`,
which the gateway treats as the credentials refusal it is.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Mapping
from urllib.parse import quote

import aiohttp

from thrifty import jsonutil
from thrifty.errors import (
    GatewayError,
    UpstreamError,
    UpstreamTimeout,
    error_for_status,
)
from thrifty.providers.base import INTERRUPTED, Provider, _sent, register
from thrifty.wire import GEMINI
from thrifty.wire.gemini_translate import MODEL_KEY

API_VERSION = "v1beta"


@register("gemini")
class GeminiProvider(Provider):
    wire = GEMINI
    path = ""  # the URL names the model: see url_for

    def auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.config.api_key} if self.config.api_key else {}

    def url_for(self, body: dict[str, Any], *, stream: bool = False) -> str:
        model = quote(str(body.get(MODEL_KEY) or ""), safe="")
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self.config.base_url.rstrip('/')}/{API_VERSION}/models/{model}:{method}"

    def error_message(self, body: Any) -> str | None:
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return body["error"].get("message")
        return None

    async def _raise_for(self, resp: aiohttp.ClientResponse) -> None:
        raw = await resp.read()
        try:
            body = jsonutil.loads(raw)
        except ValueError:
            body = None
        message = self.error_message(body) or raw.decode("utf-8", "replace")[:300] or resp.reason or "error"
        status = 401 if resp.status == 400 and b"API_KEY_INVALID" in raw else resp.status
        raise error_for_status(status, self.upstream_message(message), retry_after=resp.headers.get("retry-after"))

    def parse_stream_event(self, event: str | None, data: bytes) -> dict[str, Any] | None:
        try:
            chunk = jsonutil.loads(data)
        except ValueError:
            raise UpstreamError(f"{self.name}: invalid JSON in stream") from None
        if isinstance(chunk, dict) and "error" in chunk and "candidates" not in chunk:
            raise UpstreamError(self.upstream_message(self.error_message(chunk) or "stream error"))
        return chunk

    @staticmethod
    def _outgoing(body: dict[str, Any]) -> bytes:
        return jsonutil.dumps({k: v for k, v in body.items() if k != MODEL_KEY})

    async def complete(self, body: dict[str, Any], client_headers: Mapping[str, str]) -> dict[str, Any]:
        return await self.post_json(self.url_for(body), {k: v for k, v in body.items() if k != MODEL_KEY},
                                    client_headers)

    async def stream(self, body: dict[str, Any],
                     client_headers: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        assert self._session is not None, "provider not started"
        finished = False
        try:
            async with self._session.post(self.url_for(body, stream=True), data=self._outgoing(body),
                                          headers=self._headers(client_headers)) as resp:
                if resp.status >= 400:
                    await self._raise_for(resp)
                data: list[bytes] = []
                async for line in resp.content:
                    line = line.rstrip(b"\r\n")
                    if line.startswith(b"data:"):
                        data.append(line[5:].lstrip(b" "))
                        continue
                    if line or not data:
                        continue
                    chunk = self.parse_stream_event(None, b"\n".join(data))
                    data = []
                    if chunk is None:
                        continue
                    finished = finished or any(c.get("finishReason") for c in chunk.get("candidates") or ())
                    yield chunk
        except GatewayError:
            raise
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{self.name}: the stream stalled past "
                                  f"{self.config.timeout_s:g}s", code=_sent(exc)) from None
        except aiohttp.ClientError as exc:
            raise self.connection_failed(exc) from None
        if not finished:
            raise UpstreamError(f"{self.name}: the stream ended before its final event", code=INTERRUPTED)
