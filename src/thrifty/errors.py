"""The one exception tree of Thrifty.

Foreign errors (aiohttp, sqlite3, yaml, pydantic) are translated into these where they enter,
so the API layer maps one family of exceptions to each protocol's error shape.
"""

from __future__ import annotations


class ThriftyError(Exception):
    """Base of every error Thrifty raises on purpose."""


class ConfigError(ThriftyError):
    """The configuration file is missing, unreadable or invalid."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path, self.key, self.problem = path, key, problem
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")


class GatewayError(ThriftyError):
    """An error answered to a client, carrying what both protocols need to render it.

    `kind` is one of the protocol-neutral kinds below; each API surface maps it to its own
    error `type` string and HTTP status.
    """

    status: int = 500
    kind: str = "api_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 status: int | None = None, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after
        if status is not None:
            self.status = status


class InvalidRequest(GatewayError):
    status, kind = 400, "invalid_request"


class AuthenticationFailed(GatewayError):
    status, kind = 401, "authentication"


class PermissionDenied(GatewayError):
    status, kind = 403, "permission"


class NotFound(GatewayError):
    status, kind = 404, "not_found"


class RequestTooLarge(GatewayError):
    status, kind = 413, "request_too_large"


class RateLimited(GatewayError):
    status, kind = 429, "rate_limit"


class UpstreamError(GatewayError):
    """The provider answered with an error or could not be reached."""

    status, kind = 502, "upstream"


class UpstreamTimeout(UpstreamError):
    status, kind = 504, "timeout"


class Overloaded(GatewayError):
    status, kind = 529, "overloaded"


KIND_BY_STATUS: dict[int, type[GatewayError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    413: RequestTooLarge,
    422: InvalidRequest,
    429: RateLimited,
    504: UpstreamTimeout,
    529: Overloaded,
}


def error_for_status(status: int, message: str, **kw) -> GatewayError:
    """The GatewayError subclass that matches an upstream HTTP status."""
    cls = KIND_BY_STATUS.get(status, UpstreamError if status >= 500 else InvalidRequest)
    return cls(message, status=status, **kw)
