"""Azure OpenAI: OpenAI's chat wire behind Azure's URLs, `api-key` auth and `api-version`.

What differs from OpenAI, as Azure OpenAI's REST reference and its answers show it:

- the URL names the deployment, `POST /openai/deployments/{deployment}/chat/completions?api-version=...`
  (and `.../{deployment}/embeddings?api-version=...`), and the body's `model` is ignored; the v1
  API, `POST /openai/v1/chat/completions` (`/openai/v1/embeddings`), takes the deployment from the
  body's `model` and needs no api-version ("API version lifecycle");
- without `api-version` the deployment URL is 404 `Resource not found` (Azure answers 404, not
  400: MicrosoftDocs/azure-docs#114602);
- the key comes in an `api-key` header; the v1 API also takes it as `Authorization: Bearer` (as
  the plain OpenAI client sends it). Entra ID tokens are not emulated, so a bearer key on a
  deployment URL is refused. A missing or wrong key is 401 `{"error": {"code": "401", "message"}}`;
- an unknown deployment is 404 `DeploymentNotFound`; a deployment here is named after an
  emulator model or its dated snapshot (`gpt-4o`, `gpt-4o-2024-08-06`);
- answers carry content-filter annotations (`prompt_filter_results`, each choice's
  `content_filter_results`; a stream starts with a chunk of prompt results and no choices); a
  last user message containing `FILTER_MARKER` is filtered: `finish_reason: content_filter`.

Everything else (validation, usage, prompt caching, streaming, billing) is the OpenAI wire's.
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import parse_qs

import orjson

from thrifty_emulator.asgi import Receive, Send, read_body
from thrifty_emulator.errors import BodyTooLarge
from thrifty_emulator.generate import Completion
from thrifty_emulator.openai_wire import OpenAIWire
from thrifty_emulator.wire import Wire, WireError

FILTER_MARKER = "[emulator:content_filter]"
_DEPLOYMENTS = "/openai/deployments/"
_CHAT = "/chat/completions"
_EMBEDDINGS = "/embeddings"
V1_CHAT = "/openai/v1/chat/completions"
V1_EMBEDDINGS = "/openai/v1/embeddings"
_MAX_EMBEDDINGS_BODY = 64 * 1024 * 1024  # read once here to set the deployment; the handler bounds it too
_ACCESS_DENIED = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
                  "valid key for an active subscription and use a correct regional API endpoint for your resource.")
_BARE_CODES = frozenset({"401", "404", "DeploymentNotFound"})  # errors Azure itself answers: code + message only
_SAFE = {k: {"filtered": False, "severity": "safe"} for k in ("hate", "self_harm", "sexual", "violence")}
_FILTERED = {**_SAFE, "violence": {"filtered": True, "severity": "high"}}

Chat = Callable[[Wire, Receive, Send, dict[str, str]], Awaitable[None]]
Handler = Callable[[Receive, Send, dict[str, str]], Awaitable[None]]


class AzureWire(OpenAIWire):
    deployment: str | None = None  # set on the per-request copy of a deployment URL (`for_deployment`)

    def for_deployment(self, deployment: str) -> "AzureWire":
        """This wire for one request to a deployment URL; the prompt cache stays shared."""
        view = copy.copy(self)
        view.deployment = deployment
        return view

    def credential(self, headers: Mapping[str, str]) -> str | None:
        key = headers.get("api-key", "").strip()
        if key or self.deployment is not None:  # deployment URLs: api-key only (no Entra ID here)
            return key or None
        return super().credential(headers)

    def missing_key(self) -> WireError:
        return WireError(401, "authentication", _ACCESS_DENIED, code="401")

    def bad_key(self, key: str) -> WireError:
        return WireError(401, "authentication", _ACCESS_DENIED, code="401")

    def parse(self, body: Any):  # type: ignore[no-untyped-def]
        if self.deployment is not None and isinstance(body, dict):
            body = {**body, "model": self.deployment}  # the URL's deployment decides, not the body
        return super().parse(body)

    def unknown_model(self, model: str) -> WireError:
        return WireError(404, "not_found", "The API deployment for this resource does not exist. If you created the "
                         "deployment within the last 5 minutes, please wait a moment and try again.",
                         code="DeploymentNotFound")

    def error_body(self, err: WireError, request_id: str) -> dict[str, Any]:
        if err.code in _BARE_CODES:
            return {"error": {"code": err.code, "message": err.message}}
        return super().error_body(err, request_id)

    # --- content filtering ------------------------------------------------------------------

    @staticmethod
    def _filtered(c: Completion) -> bool:
        return FILTER_MARKER in (c.request.user_text or "")

    def render(self, c: Completion) -> dict[str, Any]:
        body = super().render(c)
        filtered = self._filtered(c)
        body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _SAFE}]
        for choice in body["choices"]:
            choice["content_filter_results"] = _FILTERED if filtered else _SAFE
            if filtered:
                choice["finish_reason"] = "content_filter"
        return body

    def stream(self, c: Completion, per_piece: int) -> list[tuple[bytes, int]]:
        events = super().stream(c, per_piece)
        head = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _SAFE}]}
        out = [(b"data: " + orjson.dumps(head) + b"\n\n", 0)]
        if not self._filtered(c):
            return out + events
        for event, tokens in events:
            out.append((_filter_finish(event), tokens))
        return out


def _filter_finish(event: bytes) -> bytes:
    """A stream event whose finishing choices finish as content_filter instead."""
    if not event.startswith(b"data: {"):
        return event
    chunk = orjson.loads(event[len(b"data: "):])
    for choice in chunk.get("choices") or ():
        if choice.get("finish_reason") is not None:
            choice["finish_reason"] = "content_filter"
            choice["content_filter_results"] = _FILTERED
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


class AzureRoutes:
    """The Azure URL forms, mapped onto the emulator's chat and embeddings handlers with an `AzureWire`."""

    def __init__(self, wire: AzureWire, chat: Chat, embeddings: Chat | None = None) -> None:
        self.wire = wire
        self._chat = chat
        self._embeddings = embeddings

    def match(self, method: str, path: str, query_string: bytes) -> tuple[Wire, Handler] | None:
        if method != "POST":
            return None
        if path == V1_CHAT:
            return self.wire, partial(self._chat, self.wire)
        if path == V1_EMBEDDINGS and self._embeddings is not None:
            return self.wire, partial(self._embeddings, self.wire)
        operation = next((op for op in (_CHAT, _EMBEDDINGS) if path.endswith(op)), None)
        if operation is None or not path.startswith(_DEPLOYMENTS) or (
                operation == _EMBEDDINGS and self._embeddings is None):
            return None
        deployment = path[len(_DEPLOYMENTS):-len(operation)]
        if not deployment or "/" in deployment:
            return None
        wire = self.wire.for_deployment(deployment)
        if not parse_qs(query_string.decode("latin-1")).get("api-version"):
            return wire, _resource_not_found
        if operation == _EMBEDDINGS:
            assert self._embeddings is not None
            return wire, partial(_deployed_embeddings, self._embeddings, wire, deployment)
        return wire, partial(self._chat, wire)


async def _deployed_embeddings(embeddings: Chat, wire: AzureWire, deployment: str, receive: Receive, send: Send,
                               headers: dict[str, str]) -> None:
    """An embeddings request to a deployment URL: the URL's deployment is the model, whatever the body says."""
    try:
        raw = await read_body(receive, {}, _MAX_EMBEDDINGS_BODY)
    except BodyTooLarge as exc:
        raise WireError(413, "invalid_request", str(exc)) from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        raw = orjson.dumps({**body, "model": deployment})
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    await embeddings(wire, replay, send, headers)


async def _resource_not_found(receive: Receive, send: Send, headers: dict[str, str]) -> None:
    raise WireError(404, "not_found", "Resource not found", code="404")
