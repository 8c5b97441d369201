"""Vertex AI: Gemini (`kind: vertex`) and Claude (`kind: vertex_anthropic`) on Google Cloud.

Vertex changes the URL and the authentication, not the body: Gemini speaks the `gemini` wire,
Claude the Anthropic Messages wire. Both live under one model URL (Vertex AI REST reference,
`projects.locations.publishers.models`; Claude on Vertex AI, "Make a request"):

    {base_url}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}

with publisher `google` and method `generateContent` / `streamGenerateContent?alt=sse`, or
publisher `anthropic` and `rawPredict` / `streamRawPredict`. Claude's body names no `model`
(the URL does) and carries `anthropic_version: vertex-2023-10-16` instead of the header.

Authentication is an OAuth2 access token as `Authorization: Bearer`: the static `api_key` when
one is configured (what `gcloud auth print-access-token` prints: it expires within the hour),
else one google-auth mints from `vertex.credentials` (a service account key or authorized-user
file) or from Application Default Credentials, refreshed before it expires. Tokens are never
logged. A token Google refuses is its 401 `UNAUTHENTICATED` (or a 403 `PERMISSION_DENIED` for a
project the credentials may not use): the credentials refusal every provider reports.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Mapping
from urllib.parse import quote

from thrifty.config import ProviderConfig, VertexOptions
from thrifty.errors import NotFound, UpstreamError, error_for_status
from thrifty.providers.anthropic import AnthropicProvider
from thrifty.providers.base import Provider, register
from thrifty.providers.gemini import GeminiProvider
from thrifty.redact import Redactor
from thrifty.wire.gemini_translate import MODEL_KEY

SCOPE = "https://www.googleapis.com/auth/cloud-platform"  # what Vertex AI requires of a token
ANTHROPIC_VERSION = "vertex-2023-10-16"  # Claude on Vertex AI: the body's anthropic_version
COUNT_TOKENS = "/v1/messages/count_tokens"  # the Anthropic path Vertex serves as count-tokens:rawPredict


class AccessToken:
    """The bearer token of every Vertex call: static, or minted and refreshed by google-auth.

    google-auth is synchronous (it POSTs to the token endpoint with `requests`), so a refresh runs
    in a thread, one at a time; calls in between reuse the token until google-auth considers it
    about to expire (`Credentials.valid` leaves a few minutes' margin).
    """

    def __init__(self, static: str | None, options: VertexOptions, provider: str) -> None:
        self._static = static
        self._file = options.credentials
        self._provider = provider
        self._credentials: Any = None
        self._lock = asyncio.Lock()

    @property
    def headers(self) -> dict[str, str]:
        """The headers for the token at hand (`ensure` first)."""
        if self._static:
            return {"authorization": f"Bearer {self._static}"}
        creds = self._credentials
        if creds is None or not creds.token:
            return {}
        out = {"authorization": f"Bearer {creds.token}"}
        quota = getattr(creds, "quota_project_id", None)
        if quota:  # user credentials bill the API to a quota project (google-auth's `apply`)
            out["x-goog-user-project"] = quota
        return out

    async def ensure(self) -> None:
        """A valid token from here on, refreshed if needed; Thrifty's errors if Google refuses one."""
        if self._static or (self._credentials is not None and self._credentials.valid):
            return
        async with self._lock:
            if self._credentials is None or not self._credentials.valid:
                await asyncio.to_thread(self._refresh)

    def _load(self) -> Any:
        import google.auth

        if self._file:
            credentials, _ = google.auth.load_credentials_from_file(self._file, scopes=[SCOPE])
        else:
            credentials, _ = google.auth.default(scopes=[SCOPE])
        return credentials

    def _refresh(self) -> None:
        from google.auth import exceptions
        from google.auth.transport.requests import Request

        try:
            if self._credentials is None:
                self._credentials = self._load()
            self._credentials.refresh(Request())
        except exceptions.DefaultCredentialsError as exc:
            raise error_for_status(401, f"{self._provider}: no usable Google credentials "
                                        f"({_first_line(exc)})") from None
        except exceptions.RefreshError as exc:
            raise error_for_status(401, f"{self._provider}: Google refused to issue an access token "
                                        f"({_first_line(exc)})") from None
        except exceptions.TransportError:
            raise UpstreamError(f"upstream {self._provider} unreachable (its token endpoint)") from None


def _first_line(exc: BaseException) -> str:
    """google-auth's own message (its errors carry the token endpoint's answer as a second arg)."""
    text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    return (text.splitlines() or [type(exc).__name__])[0][:300]


class ModelURLs:
    """The URLs of one publisher's models in the configured project and location."""

    def __init__(self, config: ProviderConfig, publisher: str) -> None:
        options = config.vertex
        assert options is not None, "config validation requires vertex: for Vertex kinds"
        root = config.base_url.rstrip("/").removesuffix("/v1")
        self.prefix = (f"{root}/v1/projects/{quote(options.project, safe='')}/locations/"
                       f"{quote(options.location, safe='')}/publishers/{publisher}/models/")

    def url(self, model: Any, method: str) -> str:
        return f"{self.prefix}{quote(str(model or ''), safe='@')}:{method}"


class _GoogleAuth(Provider):
    """Bearer tokens on every request this adapter sends (chat, stream, count_tokens)."""

    def __init__(self, name: str, config: ProviderConfig, *, redactor: Redactor | None = None) -> None:
        assert config.vertex is not None, "config validation requires vertex: for Vertex kinds"
        self.token = AccessToken(config.api_key, config.vertex, name)
        super().__init__(name, config, redactor=redactor)

    def auth_headers(self) -> dict[str, str]:
        return {}  # per request: the token changes (see `_headers`)

    def _headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        return {**super()._headers(client_headers), **self.token.headers}

    async def post_json(self, url: str, body: dict[str, Any], client_headers: Mapping[str, str]) -> dict[str, Any]:
        await self.token.ensure()
        return await super().post_json(url, body, client_headers)

    async def stream(self, body: dict[str, Any],
                     client_headers: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        await self.token.ensure()
        async for event in super().stream(body, client_headers):
            yield event


@register("vertex")
class VertexGeminiProvider(_GoogleAuth, GeminiProvider):
    """Gemini on Vertex AI: the `gemini` wire at the publisher `google` model URLs."""

    def __init__(self, name: str, config: ProviderConfig, *, redactor: Redactor | None = None) -> None:
        self.models = ModelURLs(config, "google")
        super().__init__(name, config, redactor=redactor)
        self.url = self.models.prefix  # where connection failures are logged as having gone

    def url_for(self, body: dict[str, Any], *, stream: bool = False) -> str:
        return self.models.url(body.get(MODEL_KEY), "streamGenerateContent?alt=sse" if stream else "generateContent")


class _VertexBody(dict):
    """A Messages body as Vertex takes it (no `model`, `anthropic_version` added), holding the URL
    that names its model: the base adapter's stream asks `url_for` of the body it sends."""

    __slots__ = ("url",)


@register("vertex_anthropic")
class VertexAnthropicProvider(_GoogleAuth, AnthropicProvider):
    """Claude on Vertex AI: the Anthropic Messages wire at the publisher `anthropic` model URLs."""

    def __init__(self, name: str, config: ProviderConfig, *, redactor: Redactor | None = None) -> None:
        self.models = ModelURLs(config, "anthropic")
        super().__init__(name, config, redactor=redactor)
        self.url = self.models.prefix

    def url_for(self, body: dict[str, Any]) -> str:
        if isinstance(body, _VertexBody):
            return body.url
        return self.models.url(body.get("model"), "streamRawPredict" if body.get("stream") else "rawPredict")

    def for_vertex(self, body: dict[str, Any]) -> _VertexBody:
        out = _VertexBody((k, v) for k, v in body.items() if k != "model")
        out.setdefault("anthropic_version", ANTHROPIC_VERSION)
        out.url = self.url_for(body)
        return out

    def endpoint(self, path: str) -> str:
        if path == COUNT_TOKENS:  # Claude on Vertex AI, "Count tokens": the model stays in the body
            return self.models.url("count-tokens", "rawPredict")
        raise NotFound(f"{self.name}: Claude on Vertex AI has no {path} endpoint")

    async def post_json(self, url: str, body: dict[str, Any], client_headers: Mapping[str, str]) -> dict[str, Any]:
        if "anthropic_version" not in body:
            body = {**body, "anthropic_version": ANTHROPIC_VERSION}
        return await super().post_json(url, body, client_headers)

    async def complete(self, body: dict[str, Any], client_headers: Mapping[str, str]) -> dict[str, Any]:
        vertex = self.for_vertex(body)
        return await self.post_json(vertex.url, vertex, client_headers)

    async def stream(self, body: dict[str, Any],
                     client_headers: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        async for event in super().stream(self.for_vertex(body), client_headers):
            yield event
