"""Vertex AI: Gemini and Claude behind Google Cloud's model URLs, OAuth2 access tokens and a token endpoint.

What differs from the Gemini API and the Anthropic API, as Google's Vertex AI docs describe it:

- one URL per model, `POST /v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}`
  (REST reference, `projects.locations.publishers.models`): publisher `google` with
  `generateContent` / `streamGenerateContent?alt=sse` and the Gemini body, or publisher
  `anthropic` with `rawPredict` / `streamRawPredict` and the Messages body ("Use Claude models");
- Claude's body names no `model` (the URL does; Vertex ids carry the version after `@`,
  `claude-haiku-4-5@20251001`) and carries `anthropic_version`: Google documents
  `vertex-2023-10-16`; the anthropic SDK's Vertex client sends its dated API version instead,
  so a date is accepted too. Claude's own validation errors keep Anthropic's shape; Vertex's
  (credentials, unknown model) are Google's `{"error": {"code", "message", "status"}}`;
- `count-tokens:rawPredict` under the anthropic publisher counts a Messages body (model in the body);
- an OAuth2 access token as `Authorization: Bearer`, never an API key: none is 401
  `UNAUTHENTICATED` "missing required authentication credential", an unknown or expired one 401
  "invalid authentication credentials". Accepted: the configured keys (as static tokens, what
  `gcloud auth print-access-token` gives) and the tokens this emulator's token endpoint issued;
- the token endpoint (`POST /token`, Google's `https://oauth2.googleapis.com/token`; "Using OAuth
  2.0 for Server to Server Applications"): form-encoded `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`
  with a service account's signed JWT `assertion` (claims `iss`, `scope`, `aud`, `iat`, `exp`;
  at most an hour between `iat` and `exp`), or `grant_type=refresh_token` (authorized-user
  credentials). Answers `{"access_token", "expires_in": 3599, "token_type": "Bearer"}`, errors
  `{"error": "invalid_grant", "error_description"}`. The JWT's signature is not checked (the
  emulator holds no service account's public key); a service account whose e-mail starts with
  `REVOKED_MARKER` is refused as a deleted one is (`invalid_grant`), so the refusal can be tested.

Answers, usage, prompt caching, streaming and billing are the Gemini and Anthropic engines'.
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
import time
from functools import partial
from typing import Any, Awaitable, Callable, Iterable, Mapping
from urllib.parse import parse_qs

import orjson

from thrifty_emulator.anthropic_wire import AnthropicWire
from thrifty_emulator.asgi import Receive, Send, read_body, send_body
from thrifty_emulator.errors import BodyTooLarge
from thrifty_emulator.gemini import GeminiRoutes, GeminiWire
from thrifty_emulator.generate import ChatRequest
from thrifty_emulator.keys import KeySpec
from thrifty_emulator.prompt import ClaudeTokenizer, Tokenizer
from thrifty_emulator.prompt_cache import Clock
from thrifty_emulator.wire import Wire, WireError

TOKEN_PATH = "/token"
REVOKED_MARKER = "revoked"
TOKEN_LIFETIME_S = 3599  # what Google's token endpoint answers
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
ANTHROPIC_VERSION = "vertex-2023-10-16"
_MODEL_URL = re.compile(r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/publishers/"
                        r"(?P<publisher>google|anthropic)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)")
_DATED = re.compile(r"\d{4}-\d{2}-\d{2}")
_GOOGLE = "google-shape"  # WireError.code of errors Vertex itself answers (not the model's)
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_MISSING = ("Request is missing required authentication credential. Expected OAuth 2 access token, login cookie "
            "or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/"
            "devconsole-project.")
_INVALID = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
            "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")

Handler = Callable[[Receive, Send, dict[str, str]], Awaitable[None]]


def google_error(status: int, message: str) -> WireError:
    kind = {401: "authentication", 404: "not_found", 429: "rate_limit"}.get(status, "invalid_request")
    return WireError(status, kind, message, code=_GOOGLE)


def google_error_body(err: WireError) -> dict[str, Any]:
    return {"error": {"code": err.status, "message": err.message, "status": _STATUS.get(err.status, "UNKNOWN")}}


def _not_found(resource: str) -> WireError:
    return google_error(404, f"Publisher Model `{resource}` was not found or your project does not have access "
                             "to it. Please ensure you are using a valid model version.")


class AccessTokens:
    """The access tokens the token endpoint issued, each until it expires."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}

    def issue(self) -> str:
        token = "ya29.emulator-" + secrets.token_urlsafe(24)
        self._expiry[token] = self._clock() + TOKEN_LIFETIME_S
        return token

    def valid(self, token: str) -> bool:
        expiry = self._expiry.get(token)
        return expiry is not None and self._clock() < expiry

    def authenticate(self, headers: Mapping[str, str], keys: Iterable[KeySpec]) -> KeySpec:
        """The request's bearer token: one this emulator issued, or a configured key used as a static token."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if not token:
            raise google_error(401, _MISSING)
        if self.valid(token):
            return KeySpec(token)
        found = next((k for k in keys if k.key == token), None)
        if found is None:
            raise google_error(401, _INVALID)
        return found

    def reset(self) -> None:
        self._expiry.clear()


class VertexGeminiWire(GeminiWire):
    """The Gemini engine's wire with Vertex's credentials and errors."""

    tokens: AccessTokens
    resource = ""  # the model URL's resource name, set on each request's copy

    def authenticate(self, headers: Mapping[str, str], keys: Iterable[KeySpec]) -> KeySpec:
        return self.tokens.authenticate(headers, keys)

    def unknown_model(self, model: str) -> WireError:
        return _not_found(self.resource or model)

    def error_body(self, err: WireError, request_id: str) -> dict[str, Any]:
        return google_error_body(err)


class VertexAnthropicWire(AnthropicWire):
    """The Anthropic engine's wire for one model URL: the model from the URL, Vertex's credentials."""

    tokens: AccessTokens
    model: str | None = None  # the URL's model (None for count-tokens, where the body names it)
    streams = False  # streamRawPredict: the method decides whether the answer streams
    resource = ""

    def for_model(self, model: str | None, resource: str, *, streams: bool = False) -> "VertexAnthropicWire":
        view = copy.copy(self)  # the prompt cache stays shared
        view.model, view.resource, view.streams = model, resource, streams
        return view

    def authenticate(self, headers: Mapping[str, str], keys: Iterable[KeySpec]) -> KeySpec:
        return self.tokens.authenticate(headers, keys)

    def parse(self, body: Any, *, need_max_tokens: bool = True) -> ChatRequest:
        if not isinstance(body, dict):
            raise self.invalid("Request body must be a JSON object")
        version = body.get("anthropic_version")
        if version is None:
            raise self.invalid("anthropic_version: Field required")
        if version != ANTHROPIC_VERSION and not (isinstance(version, str) and _DATED.fullmatch(version)):
            raise self.invalid(f"anthropic_version: unsupported version {version!r} (Vertex AI takes "
                               f"{ANTHROPIC_VERSION})")
        body = {k: v for k, v in body.items() if k != "anthropic_version"}
        if self.model is not None:
            if "model" in body:
                raise self.invalid("model: Extra inputs are not permitted")
            body["model"] = self.model
            body["stream"] = self.streams
        if isinstance(body.get("model"), str):
            body["model"] = body["model"].replace("@", "-")  # claude-x@20251001 is the snapshot claude-x-20251001
        return super().parse(body, need_max_tokens=need_max_tokens)

    def unknown_model(self, model: str) -> WireError:
        return _not_found(self.resource or model)

    def fault_error(self, status: int, model: str, retry_after_s: int) -> WireError:
        if status == 429:  # Vertex's own quota, in Google's shape
            return WireError(429, "rate_limit", "Quota exceeded for aiplatform.googleapis.com/"
                             "online_prediction_requests_per_base_model. Please try again later.",
                             code=_GOOGLE, headers={"retry-after": str(retry_after_s)})
        return super().fault_error(status, model, retry_after_s)

    def error_body(self, err: WireError, request_id: str) -> dict[str, Any]:
        if err.code == _GOOGLE:
            return google_error_body(err)
        return super().error_body(err, request_id)


class VertexRoutes:
    """The model URLs of both publishers and the token endpoint, onto the emulator's engines."""

    def __init__(self, app: Any, tokenizer: Tokenizer, clock: Clock, cache_ttl_s: float) -> None:
        self._app = app
        self.tokens = AccessTokens(clock)
        gemini = VertexGeminiWire(tokenizer, clock, cache_ttl_s)
        gemini.tokens = self.tokens
        self._gemini = GeminiRoutes(gemini, app)
        self.anthropic = VertexAnthropicWire(ClaudeTokenizer(), clock)  # its own prompt cache
        self.anthropic.tokens = self.tokens

    def reset(self) -> None:
        self.anthropic.reset()
        self.tokens.reset()

    def match(self, method: str, path: str, query_string: bytes) -> tuple[Wire, Handler] | None:
        if method != "POST":
            return None
        if path == TOKEN_PATH:
            return self.anthropic, self._token
        m = _MODEL_URL.fullmatch(path)
        if m is None:
            return None
        resource = path[len("/v1/"):].rpartition(":")[0]
        model, verb = m["model"], m["method"]
        if m["publisher"] == "google":
            route = self._gemini.match("POST", f"/v1beta/models/{model}:{verb}", query_string)
            if route is None:
                return None
            route[0].resource = resource  # type: ignore[attr-defined]
            return route
        if model == "count-tokens" and verb == "rawPredict":
            wire = self.anthropic.for_model(None, resource)
            return wire, partial(self._count_tokens, wire)
        if verb not in ("rawPredict", "streamRawPredict"):
            return None
        wire = self.anthropic.for_model(model, resource, streams=verb == "streamRawPredict")
        return wire, partial(self._app._chat, wire)

    async def _count_tokens(self, wire: VertexAnthropicWire, receive: Receive, send: Send,
                            headers: dict[str, str]) -> None:
        app = self._app
        wire.authenticate(headers, app.config.keys)
        req = wire.parse(await app._json_body(wire, receive), need_max_tokens=False)
        app._spec(wire, req.model)
        await send_body(send, 200, orjson.dumps({"input_tokens": req.prompt.tokens}))

    async def _token(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        try:
            raw = await read_body(receive, headers, 64 * 1024)
        except BodyTooLarge as exc:
            await send_body(send, 400, orjson.dumps({"error": "invalid_request", "error_description": str(exc)}))
            return
        form = {k: v[0] for k, v in parse_qs(raw.decode("latin-1")).items()}
        problem = self._grant_problem(form)
        if problem is not None:
            error, description = problem
            await send_body(send, 400, orjson.dumps({"error": error, "error_description": description}))
            return
        answer: dict[str, Any] = {"access_token": self.tokens.issue(), "expires_in": TOKEN_LIFETIME_S,
                                  "token_type": "Bearer"}
        if form.get("grant_type") == "refresh_token":
            answer["scope"] = CLOUD_PLATFORM
        await send_body(send, 200, orjson.dumps(answer))

    def _grant_problem(self, form: dict[str, str]) -> tuple[str, str] | None:
        grant = form.get("grant_type")
        if grant == "refresh_token":
            if not all(form.get(k) for k in ("refresh_token", "client_id", "client_secret")):
                return "invalid_request", "Missing required parameter: refresh_token, client_id or client_secret"
            return None
        if grant != JWT_BEARER:
            return "unsupported_grant_type", f"Invalid grant_type: {grant or ''}"
        claims = _jwt_claims(form.get("assertion") or "")
        if claims is None:
            return "invalid_grant", "Invalid JWT Signature."
        iss, iat, exp = claims.get("iss"), claims.get("iat"), claims.get("exp")
        if not isinstance(iss, str) or "@" not in iss:
            return "invalid_grant", "Invalid JWT: iss must be a service account e-mail."
        if iss.startswith(REVOKED_MARKER):
            return "invalid_grant", "Invalid grant: account not found"
        now = time.time()
        if (not isinstance(iat, (int, float)) or not isinstance(exp, (int, float)) or exp - iat > 3600
                or exp < now or iat > now + 300):
            return "invalid_grant", ("Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                                     "reasonable timeframe. Check your iat and exp values in the JWT claim.")
        if CLOUD_PLATFORM not in str(claims.get("scope") or "").split():
            return "invalid_scope", "Invalid OAuth scope or ID token audience provided."
        return None


def _jwt_claims(assertion: str) -> dict[str, Any] | None:
    """The claims of a compact JWS (header.payload.signature), unverified; None when malformed."""
    parts = assertion.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        header = orjson.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
        return None
    return claims


__all__ = ["ANTHROPIC_VERSION", "REVOKED_MARKER", "TOKEN_PATH", "AccessTokens", "VertexRoutes"]
