"""OpenAI-compatible chat completions: OpenAI, vLLM, SGLang, TGI, Groq, Together, Ollama."""

from __future__ import annotations

from typing import Any

from thrifty import jsonutil
from thrifty.errors import UpstreamError
from thrifty.providers.base import Provider, register
from thrifty.wire import OPENAI_CHAT


@register("openai")
class OpenAIProvider(Provider):
    wire = OPENAI_CHAT
    path = "/chat/completions"

    def auth_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}

    def error_message(self, body: Any) -> str | None:
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return body["error"].get("message")
        return None

    def parse_stream_event(self, event: str | None, data: bytes) -> dict[str, Any] | None:
        if data == b"[DONE]":
            return None
        try:
            chunk = jsonutil.loads(data)
        except ValueError:
            raise UpstreamError(f"{self.name}: invalid JSON in stream") from None
        if "error" in chunk and "choices" not in chunk:
            raise UpstreamError(self.upstream_message(self.error_message(chunk) or "stream error"))
        return chunk
