"""The one exception tree of Thrifty.

Foreign errors (aiohttp, sqlite3, yaml, pydantic) are translated into these where they enter,
so the API layer maps one family of exceptions to each protocol's error shape.
"""

from __future__ import annotations

from decimal import Decimal


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


class MethodNotAllowed(GatewayError):
    """A known path asked with a method it does not take (answered with an `Allow` header)."""

    status, kind = 405, "invalid_request"


class RequestTooLarge(GatewayError):
    status, kind = 413, "request_too_large"


class RequestTimeout(GatewayError):
    """The client did not send its whole request body in time (HTTP 408)."""

    status, kind = 408, "invalid_request"


class RateLimited(GatewayError):
    status, kind = 429, "rate_limit"


class UpstreamError(GatewayError):
    """The provider answered with an error or could not be reached."""

    status, kind = 502, "upstream"


# The code of an upstream error raised after the request reached the provider (a timeout, a broken
# connection, a stream cut short): the provider may have billed the attempt.
UPSTREAM_INTERRUPTED = "upstream_interrupted"


class UpstreamTimeout(UpstreamError):
    status, kind = 504, "timeout"


class UpstreamCredentialsRefused(UpstreamError):
    """The provider refused the gateway's own credentials (its 401/403). The client's virtual key
    was fine, so the client gets a 502, not a 401 that would send it looking at its own key; the
    call is not retried (the same key would be refused again)."""

    def __init__(self, message: str, **kw) -> None:
        super().__init__(message, code="upstream_credentials_refused", **kw)


class Overloaded(GatewayError):
    status, kind = 529, "overloaded"


class CorruptEntry(ThriftyError):
    """Cached bytes that are truncated, tampered with, of another format version, or misplaced."""


class IncompleteStream(ThriftyError):
    """A stream that ended early or with an error: there is no complete answer to assemble."""


# --- raised inside Thrifty and handled there (a store down, a lever that cannot act) ---------

class CacheUnavailable(ThriftyError):
    """The cache backend could not be reached or failed; the request goes upstream instead."""


class SemanticStoreUnavailable(ThriftyError):
    """The entry store could not be reached; the caller treats it as a miss."""


class EmbedderUnavailable(ThriftyError):
    """The embedding model or its tokenizer is not installed, or could not be loaded."""


class CalibrationError(ThriftyError):
    """The labelled pairs cannot support the requested operating point."""


class BudgetStoreUnavailable(ThriftyError):
    """The budget store could not be reached; the enforcer decides between 503 and fail-open."""


class BudgetStoreNotSeeded(BudgetStoreUnavailable):
    """The budget store answers but holds no counters yet (new, restarted without persistence,
    or wiped): until they are re-seeded from the ledger it is treated as unavailable."""


class BudgetExceeded(RateLimited):
    """A hard budget or rate limit has no room for this call (HTTP 429).

    The message names the limit, what is spent and held, and when it resets; `retry_after` is the
    number of seconds until then (None for a lifetime budget, which never resets).
    """

    def __init__(self, message: str, *, budget: str, scope: str, scope_value: str | None,
                 limit_usd: Decimal | None = None, limit_tokens: int | None = None,
                 spent_usd: Decimal | None = None, spent_tokens: int | None = None,
                 resets_at: float | None = None, retry_after: int | None = None,
                 code: str = "budget_exceeded") -> None:
        super().__init__(message, code=code,
                         retry_after=None if retry_after is None else str(max(1, retry_after)))
        self.budget, self.scope, self.scope_value = budget, scope, scope_value
        self.limit_usd, self.limit_tokens = limit_usd, limit_tokens
        self.spent_usd, self.spent_tokens = spent_usd, spent_tokens
        self.resets_at = resets_at


class BudgetUnavailable(GatewayError):
    """The shared budget store cannot be reached and hard budgets fail closed (HTTP 503)."""

    status, kind = 503, "api_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="budget_store_unavailable", retry_after="1")


class DefinitionsUnavailable(GatewayError):
    """The shared budget definitions cannot be reached (Redis down)."""

    status, kind = 503, "api_error"


class KeyStoreUnavailable(GatewayError):
    """The shared key store cannot be reached: API-made keys cannot be checked (fail closed)."""

    status, kind = 503, "api_error"


class BadRecord(ThriftyError, ValueError):
    """Raised by an analysis source's record parser: the record at this line cannot be read
    because of `field` (the loader counts and names it, and goes on)."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field, self.problem = field_name, problem


class LineParked(BaseException):
    """Raised by the batch lane where the provider would be called: the prepared call goes to a
    provider batch instead (thrifty.batch.lane). A BaseException, so that no stage's error
    handling mistakes it for a failed attempt."""


class GiveUp(ThriftyError):
    """No further attempt: answer the last error."""


class BatchAmbiguous(ThriftyError):
    """More than one provider batch could be the submission being looked for (providers.batches
    `find`): the lane must not guess (it could run a submission twice, or lose one), so it stops
    and says which."""

    def __init__(self, submission_id: str, batch_ids: tuple[str, ...] | list[str]) -> None:
        self.submission_id, self.batch_ids = submission_id, tuple(batch_ids)
        super().__init__(f"submission {submission_id} matches several provider batches: {', '.join(batch_ids)}")


class SchemaError(ThriftyError, ValueError):
    """The schema itself cannot be used."""


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
    if status in (401, 403):
        return UpstreamCredentialsRefused(f"{message} (the provider refused the gateway's credentials "
                                          f"with {status}; the operator must fix the provider key)", **kw)
    cls = KIND_BY_STATUS.get(status, UpstreamError if status >= 500 else InvalidRequest)
    return cls(message, status=status, **kw)
