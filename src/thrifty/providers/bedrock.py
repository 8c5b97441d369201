"""AWS Bedrock Runtime: the `bedrock` wire, requests signed with SigV4 by botocore (or a Bedrock API key).

`POST {base_url}/model/{modelId}/converse`, and for streams `/converse-stream`, whose answer is
AWS's binary event stream (`application/vnd.amazon.eventstream`), decoded with botocore's own
parser (`botocore.eventstream`) into `{eventType: payload}` dicts, as botocore's client hands them
out. The model id is a URI label: the upstream body carries it under `MODEL_KEY`, taken off here,
and it is percent-encoded once in the URL (`:` as `%3A`), which is the path that is signed and sent.

Signing (Bedrock Runtime's service model: signing name `bedrock`, SigV4 or bearer auth): each
request is signed by `botocore.auth.SigV4Auth` over its exact body and headers, for the region of
`bedrock.region` or the endpoint's host. Credentials are resolved once, when the provider is
built (config.BedrockOptions says in which order); a Bedrock API key goes as `Authorization:
Bearer`. Errors are `{"message"}` with the type in `x-amzn-errortype`; a 403 (AccessDenied,
InvalidSignature, UnrecognizedClient, MissingAuthenticationToken) is the credentials refusal it is.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any, AsyncIterator, Mapping
from urllib.parse import quote

import aiohttp
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError
from yarl import URL

from thrifty import jsonutil
from thrifty.config import BEDROCK_DEFAULT_REGION, BEDROCK_KIND, BedrockOptions, ProviderConfig
from thrifty.errors import (
    GatewayError,
    InvalidRequest,
    RateLimited,
    UpstreamCredentialsRefused,
    UpstreamError,
    UpstreamTimeout,
    error_for_status,
)
from thrifty.providers.base import INTERRUPTED, Provider, _sent, register
from thrifty.redact import Redactor
from thrifty.wire import BEDROCK
from thrifty.wire.bedrock_translate import MODEL_KEY

SIGNING_NAME = "bedrock"
_REGION_IN_HOST = re.compile(r"bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com")
# Model failures that are not the client's fault keep their meaning, not their odd statuses.
_STATUS_BY_TYPE = {"ModelTimeoutException": 504, "ModelErrorException": 502, "ModelStreamErrorException": 502}
_STREAM_ERRORS = {"throttlingException": RateLimited, "validationException": InvalidRequest,
                  "serviceUnavailableException": UpstreamError}


def signing_region(options: BedrockOptions, base_url: str) -> str:
    """The region requests are signed for: configured, else the endpoint's, else us-east-1."""
    m = _REGION_IN_HOST.search(base_url)
    return options.region or (m.group(1) if m else BEDROCK_DEFAULT_REGION)


def resolve_credentials(config: ProviderConfig, env: Mapping[str, str]) -> Credentials | str | None:
    """SigV4 credentials, a Bedrock API key (a str), or None; first found wins (BedrockOptions)."""
    options = config.bedrock or BedrockOptions()
    if options.access_key_id and options.secret_access_key:
        return Credentials(options.access_key_id, options.secret_access_key, options.session_token)
    if config.api_key:
        if ":" not in config.api_key:
            return config.api_key
        key_id, secret, *token = config.api_key.split(":", 2)
        return Credentials(key_id, secret, token[0] if token else None)
    if env.get("AWS_BEARER_TOKEN_BEDROCK"):
        return env["AWS_BEARER_TOKEN_BEDROCK"]
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN"))
    return None


@register(BEDROCK_KIND)
class BedrockProvider(Provider):
    wire = BEDROCK
    path = ""  # the URL names the model: see url_for

    def __init__(self, name: str, config: ProviderConfig, *, redactor: Redactor | None = None) -> None:
        self.region = signing_region(config.bedrock or BedrockOptions(), config.base_url)
        self._credentials = resolve_credentials(config, os.environ)
        if redactor is None:
            redactor = Redactor(config.secret_values(), [config.base_url])
        super().__init__(name, config, redactor=redactor)

    def auth_headers(self) -> dict[str, str]:
        creds = self._credentials
        return {"authorization": f"Bearer {creds}"} if isinstance(creds, str) else {}

    def url_for(self, body: dict[str, Any], *, stream: bool = False) -> str:
        model = quote(str(body.get(MODEL_KEY) or ""), safe="")
        return f"{self.config.base_url.rstrip('/')}/model/{model}/{'converse-stream' if stream else 'converse'}"

    def signed_headers(self, url: str, data: bytes, *, stream: bool) -> dict[str, str]:
        """The headers of one request, signed over its exact URL and body when SigV4 applies."""
        headers = {"content-type": "application/json",
                   "accept": "application/vnd.amazon.eventstream" if stream else "application/json"}
        if self._credentials is None:
            raise UpstreamCredentialsRefused(
                f"{self.name}: no AWS credentials configured (bedrock.access_key_id / secret_access_key, "
                "api_key, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_BEARER_TOKEN_BEDROCK)")
        if isinstance(self._credentials, str):
            return {**headers, **self._auth}
        request = AWSRequest(method="POST", url=url, data=data, headers=headers)
        SigV4Auth(self._credentials, SIGNING_NAME, self.region).add_auth(request)
        return dict(request.headers.items())

    def error_message(self, body: Any) -> str | None:
        if isinstance(body, dict):
            return body.get("message") or body.get("Message")
        return None

    async def _raise_for(self, resp: aiohttp.ClientResponse) -> None:
        raw = await resp.read()
        try:
            message = self.error_message(jsonutil.loads(raw))
        except ValueError:
            message = None
        error_type = resp.headers.get("x-amzn-errortype", "").split(":")[0]
        message = message or raw.decode("utf-8", "replace")[:300] or resp.reason or "error"
        if error_type:
            message = f"{error_type}: {message}"
        raise error_for_status(_STATUS_BY_TYPE.get(error_type, resp.status), self.upstream_message(message),
                               retry_after=resp.headers.get("retry-after"))

    def parse_stream_event(self, event: str | None, data: bytes) -> dict[str, Any] | None:
        """One decoded event-stream message's JSON payload, as `{event: payload}`."""
        try:
            payload = jsonutil.loads(data) if data else {}
        except ValueError:
            raise UpstreamError(f"{self.name}: invalid JSON in stream") from None
        return {event or "": payload}

    def _event(self, message: EventStreamMessage) -> dict[str, Any]:
        headers = message.headers
        kind = headers.get(":message-type")
        if kind == "event":
            return self.parse_stream_event(headers.get(":event-type"), message.payload) or {}
        if kind == "exception":
            name = str(headers.get(":exception-type") or "")
            text = self.error_message(self.parse_stream_event(name, message.payload)[name]) or name
            raise _STREAM_ERRORS.get(name, UpstreamError)(self.upstream_message(f"{name}: {text}"))
        raise UpstreamError(self.upstream_message(f"{headers.get(':error-code')}: {headers.get(':error-message')}"))

    def _outgoing(self, body: dict[str, Any], stream: bool) -> tuple[URL, bytes, dict[str, str]]:
        url = self.url_for(body, stream=stream)
        data = jsonutil.dumps({k: v for k, v in body.items() if k != MODEL_KEY})
        # encoded=True: the path goes out byte for byte as it was signed (%3A stays %3A).
        return URL(url, encoded=True), data, self.signed_headers(url, data, stream=stream)

    async def complete(self, body: dict[str, Any], client_headers: Mapping[str, str]) -> dict[str, Any]:
        url, data, headers = self._outgoing(body, stream=False)
        return await self.post_bytes(url, data, headers)  # sent exactly as signed

    async def stream(self, body: dict[str, Any],
                     client_headers: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        assert self._session is not None, "provider not started"
        url, data, headers = self._outgoing(body, stream=True)
        ended = False  # the `metadata` event, with usage, closes a ConverseStream
        try:
            async with self._session.post(url, data=data, headers=headers) as resp:
                if resp.status >= 400:
                    await self._raise_for(resp)
                frames = EventStreamBuffer()
                async for chunk in resp.content.iter_any():
                    frames.add_data(chunk)
                    for message in frames:
                        event = self._event(message)
                        ended = ended or "metadata" in event
                        yield event
        except GatewayError:
            raise
        except ParserError as exc:
            raise UpstreamError(f"{self.name}: a malformed event-stream frame ({type(exc).__name__})",
                                code=INTERRUPTED) from None
        except asyncio.TimeoutError as exc:
            raise UpstreamTimeout(f"{self.name}: the stream stalled past "
                                  f"{self.config.timeout_s:g}s", code=_sent(exc)) from None
        except aiohttp.ClientError as exc:
            raise self.connection_failed(exc) from None
        if not ended:
            raise UpstreamError(f"{self.name}: the stream ended before its final event", code=INTERRUPTED)
