"""Provider batch jobs: OpenAI's Batch API and Anthropic's Message Batches, behind one small interface.

The deferred lane (thrifty.batch) hands a `BatchAPI` lines already in the provider's dialect and
gets back the provider's batch id, its status, and each line's result, streamed. One class per
provider API, found by adapter class (`batch_api`), never by comparing provider names; a provider
kind without a batch API (Azure, Gemini for now) gets None.

Calls go out on the provider adapter's own pooled session with its own credentials, and failures
are translated at this boundary exactly as the adapter translates them (`thrifty.errors`: the
provider's HTTP status mapped by `error_for_status`, timeouts as `UpstreamTimeout`, connection
failures as `UpstreamError`, every provider message redacted before a client could see it).

Limits (`max_lines`, `max_bytes`) are the providers' documented ones per batch; the lane splits
its work to fit them, and `submit` refuses (ValueError) a submission that does not.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import aiohttp

from thrifty import jsonutil
from thrifty.errors import (
    BatchAmbiguous,
    GatewayError,
    InvalidRequest,
    UpstreamError,
    UpstreamTimeout,
)
from thrifty.providers.anthropic import _ERROR_STATUS, AnthropicProvider
from thrifty.providers.base import Provider, _sent
from thrifty.providers.openai import OpenAIProvider

SUBMISSION_KEY = "thrifty_submission"  # the OpenAI batch metadata key naming the lane's submission
FIND_SLACK_S = 60.0  # clocks differ: a batch may carry a created_at a little before the lane's `since`
_PAGE = 100
# Anthropic's result types, in the lane's words (Anthropic spells it "canceled").
_ANTHROPIC_OUTCOMES = {"succeeded": "succeeded", "errored": "errored", "canceled": "cancelled", "expired": "expired"}
_CHUNK = 64 * 1024

__all__ = ["AnthropicBatches", "BatchAPI", "BatchAmbiguous", "BatchLine", "BatchStatus", "LineResult",
           "OpenAIBatches", "batch_api", "register_batch_api"]


@dataclass(frozen=True, slots=True)
class BatchLine:
    custom_id: str  # the lane's own line id (unique, ^[A-Za-z0-9_-]{1,64}$)
    body: dict[str, Any]  # request body already in the provider's dialect, model included


@dataclass(frozen=True, slots=True)
class BatchStatus:
    id: str  # the provider's batch id
    done: bool  # results are final (completed/failed/expired/cancelled on OpenAI; ended on Anthropic)
    status: str  # the provider's own status word
    counts: dict[str, int]  # what the provider reports


@dataclass(frozen=True, slots=True)
class LineResult:
    custom_id: str
    outcome: str  # "succeeded" | "errored" | "expired" | "cancelled"
    body: dict[str, Any] | None  # the provider's response body (its dialect) when succeeded
    error: dict[str, Any] | None  # {"type"/"code", "message"} when not
    status_code: int | None  # HTTP status of the line when the provider gives one


class BatchAPI(ABC):
    """One provider's batch API, over the adapter `provider` (its session, credentials, redactor)."""

    max_lines: ClassVar[int]
    max_bytes: ClassVar[int]

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    @abstractmethod
    async def submit(self, lines: Sequence[BatchLine], *, submission_id: str, endpoint: str) -> str:
        """Create the provider batch of `lines`; its id."""

    @abstractmethod
    async def find(self, submission_id: str, *, since: float, line_count: int,
                   exclude: Collection[str]) -> str | None:
        """The provider batch of a submission whose id was never recorded (a crash between `submit`
        and the lane's write), or None when it was never created. Raises BatchAmbiguous."""

    @abstractmethod
    async def poll(self, batch_id: str) -> BatchStatus:
        ...

    @abstractmethod
    def results(self, batch_id: str) -> AsyncIterator[LineResult]:
        """Every line's result, streamed (memory bounded by one line, not the batch)."""

    @abstractmethod
    async def cancel(self, batch_id: str) -> BatchStatus:
        """Ask the provider to stop; lines not yet run end cancelled. A batch already done is
        answered with its status."""

    # --- HTTP on the adapter's session ---------------------------------------------------------

    def _headers(self, json_body: bool) -> dict[str, str]:
        headers = dict(self.provider._auth)
        if json_body:
            headers["content-type"] = "application/json"
        return headers

    async def _call(self, method: str, path: str, *, body: dict[str, Any] | None = None,
                    form: aiohttp.FormData | None = None, params: dict[str, str] | None = None) -> Any:
        """One request to `path` under the provider's base URL; its JSON answer, errors translated."""
        p = self.provider
        assert p._session is not None, "provider not started"
        data: Any = jsonutil.dumps(body) if body is not None else form
        try:
            async with p._session.request(method, p.endpoint(path), data=data, params=params,
                                          headers=self._headers(body is not None)) as resp:
                if resp.status >= 400:
                    await p._raise_for(resp)
                raw = await resp.read()
        except GatewayError:
            raise
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{p.name}: the provider did not answer within {p.config.timeout_s:g}s",
                                  code=_sent(exc)) from None
        except aiohttp.ClientError as exc:
            raise p.connection_failed(exc) from None
        try:
            return jsonutil.loads(raw)
        except ValueError:
            raise UpstreamError(f"{p.name}: the provider answered with invalid JSON") from None

    async def _jsonl(self, path: str) -> AsyncIterator[dict[str, Any]]:
        """The JSON Lines at `path`, one object at a time as they arrive."""
        p = self.provider
        assert p._session is not None, "provider not started"
        try:
            async with p._session.get(p.endpoint(path), headers=self._headers(False)) as resp:
                if resp.status >= 400:
                    await p._raise_for(resp)
                pending = bytearray()
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    pending += chunk
                    start = 0
                    while (end := pending.find(b"\n", start)) >= 0:
                        line = bytes(pending[start:end])
                        start = end + 1
                        if line.strip():
                            yield self._parse_line(line)
                    del pending[:start]
                if bytes(pending).strip():
                    yield self._parse_line(bytes(pending))
        except GatewayError:
            raise
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{p.name}: the results download stalled past {p.config.timeout_s:g}s",
                                  code=_sent(exc)) from None
        except aiohttp.ClientError as exc:
            raise p.connection_failed(exc) from None

    def _parse_line(self, line: bytes) -> dict[str, Any]:
        try:
            parsed = jsonutil.loads(line)
        except ValueError:
            raise UpstreamError(f"{self.provider.name}: a batch results line is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise UpstreamError(f"{self.provider.name}: a batch results line is not a JSON object")
        return parsed

    def _error(self, error: Any) -> dict[str, Any]:
        """A line's error as the lane may show it to a client: the provider's message redacted."""
        if not isinstance(error, dict):
            error = {"message": str(error)}
        message = error.get("message")
        return {**error, "message": self.provider.redactor.for_client(str(message or "error"))}

    def _check_size(self, count: int, size: int) -> None:
        if not 1 <= count <= self.max_lines:
            raise ValueError(f"a {self.provider.name} batch takes 1 to {self.max_lines} lines, not {count}")
        if size > self.max_bytes:
            raise ValueError(f"a {self.provider.name} batch takes at most {self.max_bytes} bytes, not {size}")

    async def _cancel_or_status(self, path: str, batch_id: str) -> BatchStatus:
        try:
            await self._call("POST", path)
        except InvalidRequest:
            status = await self.poll(batch_id)  # refused because it had already ended: say so
            if status.done:
                return status
            raise
        return await self.poll(batch_id)


_APIS: dict[type[Provider], type[BatchAPI]] = {}


def register_batch_api(adapter: type[Provider]):
    """Class decorator: `cls` is the batch API of providers of exactly this adapter class (a
    subclass such as Azure's, with other URLs and auth, registers its own or has none)."""

    def deco(cls: type[BatchAPI]) -> type[BatchAPI]:
        _APIS[adapter] = cls
        return cls

    return deco


def batch_api(provider: Provider) -> BatchAPI | None:
    """The batch API of `provider`, or None when its kind has none."""
    cls = _APIS.get(type(provider))
    return cls(provider) if cls is not None else None


def _rfc3339(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


@register_batch_api(OpenAIProvider)
class OpenAIBatches(BatchAPI):
    """OpenAI's Batch API (https://platform.openai.com/docs/guides/batch): a JSONL file uploaded
    with purpose `batch`, then a batch over it; results in an output file and an error file."""

    max_lines = 50_000
    max_bytes = 200 * 1024 * 1024
    DONE = frozenset({"completed", "failed", "expired", "cancelled"})

    async def submit(self, lines: Sequence[BatchLine], *, submission_id: str, endpoint: str) -> str:
        content = b"".join(jsonutil.dumps({"custom_id": line.custom_id, "method": "POST", "url": endpoint,
                                           "body": line.body}) + b"\n" for line in lines)
        self._check_size(len(lines), len(content))
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", content, filename=f"{submission_id}.jsonl", content_type="application/jsonl")
        uploaded = await self._call("POST", "/files", form=form)
        batch = await self._call("POST", "/batches", body={
            "input_file_id": uploaded["id"], "endpoint": endpoint, "completion_window": "24h",
            "metadata": {SUBMISSION_KEY: submission_id}})
        return str(batch["id"])

    async def find(self, submission_id: str, *, since: float, line_count: int,
                   exclude: Collection[str]) -> str | None:
        """OpenAI keeps the metadata `submit` set: the batches (newest first, paged) created since
        `since` - 60 s whose `thrifty_submission` is this submission, less `exclude`."""
        found: list[str] = []
        params = {"limit": str(_PAGE)}
        while True:
            page = await self._call("GET", "/batches", params=params)
            data = page.get("data") or []
            for batch in data:
                if (batch.get("created_at") or 0) < since - FIND_SLACK_S:
                    return _one(submission_id, found)
                metadata = batch.get("metadata") or {}
                if metadata.get(SUBMISSION_KEY) == submission_id and batch["id"] not in exclude:
                    found.append(batch["id"])
            if not page.get("has_more") or not data:
                return _one(submission_id, found)
            params = {"limit": str(_PAGE), "after": data[-1]["id"]}

    async def poll(self, batch_id: str) -> BatchStatus:
        return self._status(await self._call("GET", f"/batches/{batch_id}"))

    def _status(self, batch: dict[str, Any]) -> BatchStatus:
        status = str(batch.get("status"))
        counts = {k: int(v) for k, v in (batch.get("request_counts") or {}).items() if isinstance(v, int)}
        return BatchStatus(str(batch["id"]), status in self.DONE, status, counts)

    async def results(self, batch_id: str) -> AsyncIterator[LineResult]:
        batch = await self._call("GET", f"/batches/{batch_id}")
        for key in ("output_file_id", "error_file_id"):
            file_id = batch.get(key)
            if file_id:
                async for line in self._jsonl(f"/files/{file_id}/content"):
                    yield self._result(line)

    def _result(self, line: dict[str, Any]) -> LineResult:
        custom_id = str(line.get("custom_id"))
        response, error = line.get("response"), line.get("error")
        if isinstance(response, dict):
            status = response.get("status_code")
            body = response.get("body")
            if isinstance(status, int) and 200 <= status < 300 and isinstance(body, dict):
                return LineResult(custom_id, "succeeded", body, None, status)
            inner = body.get("error") if isinstance(body, dict) and "error" in body else body
            return LineResult(custom_id, "errored", None, self._error(inner), status if isinstance(status, int)
                              else None)
        code = error.get("code") if isinstance(error, dict) else None
        outcome = {"batch_expired": "expired", "batch_cancelled": "cancelled"}.get(str(code), "errored")
        return LineResult(custom_id, outcome, None, self._error(error or {"message": "no response"}), None)

    async def cancel(self, batch_id: str) -> BatchStatus:
        return await self._cancel_or_status(f"/batches/{batch_id}/cancel", batch_id)


@register_batch_api(AnthropicProvider)
class AnthropicBatches(BatchAPI):
    """Anthropic's Message Batches (https://docs.claude.com/en/docs/build-with-claude/batch-processing):
    one JSON body of requests; results as JSONL once the batch has ended."""

    max_lines = 100_000
    max_bytes = 256 * 1024 * 1024
    _PATH = "/v1/messages/batches"

    async def submit(self, lines: Sequence[BatchLine], *, submission_id: str, endpoint: str) -> str:
        body = {"requests": [{"custom_id": line.custom_id, "params": line.body} for line in lines]}
        self._check_size(len(lines), len(jsonutil.dumps(body)))
        batch = await self._call("POST", self._PATH, body=body)
        return str(batch["id"])

    async def find(self, submission_id: str, *, since: float, line_count: int,
                   exclude: Collection[str]) -> str | None:
        """Anthropic keeps no metadata on a batch, so a submission is recognised by when and how
        big: batches created since `since` - 60 s with exactly `line_count` requests, less those
        in `exclude` (the batches the lane already knows). Two candidates: BatchAmbiguous, since
        choosing either could run a submission twice."""
        found: list[str] = []
        params = {"limit": str(_PAGE)}
        while True:
            page = await self._call("GET", self._PATH, params=params)
            data = page.get("data") or []
            for batch in data:
                if _rfc3339(batch.get("created_at")) < since - FIND_SLACK_S:
                    return _one(submission_id, found)
                counts = batch.get("request_counts") or {}
                total = sum(v for v in counts.values() if isinstance(v, int))
                if total == line_count and batch["id"] not in exclude:
                    found.append(batch["id"])
            if not page.get("has_more") or not data:
                return _one(submission_id, found)
            params = {"limit": str(_PAGE), "after_id": str(page.get("last_id") or data[-1]["id"])}

    async def poll(self, batch_id: str) -> BatchStatus:
        batch = await self._call("GET", f"{self._PATH}/{batch_id}")
        status = str(batch.get("processing_status"))
        counts = {k: int(v) for k, v in (batch.get("request_counts") or {}).items() if isinstance(v, int)}
        return BatchStatus(str(batch["id"]), status == "ended", status, counts)

    async def results(self, batch_id: str) -> AsyncIterator[LineResult]:
        # The documented path under the configured base URL, rather than the absolute `results_url`
        # the batch names: the same place, and the key never goes to an address nobody configured.
        async for line in self._jsonl(f"{self._PATH}/{batch_id}/results"):
            yield self._result(line)

    def _result(self, line: dict[str, Any]) -> LineResult:
        custom_id = str(line.get("custom_id"))
        result = line.get("result") if isinstance(line.get("result"), dict) else {}
        outcome = _ANTHROPIC_OUTCOMES.get(str(result.get("type")), "errored")
        if outcome == "succeeded" and isinstance(result.get("message"), dict):
            return LineResult(custom_id, outcome, result["message"], None, 200)
        if outcome != "errored":
            return LineResult(custom_id, outcome, None, {"type": result.get("type"), "message": outcome}, None)
        error = result.get("error") or {"message": "errored"}
        inner = error.get("error") if isinstance(error, dict) and error.get("type") == "error" else error
        kind = inner.get("type") if isinstance(inner, dict) else None
        return LineResult(custom_id, "errored", None, self._error(inner), _ERROR_STATUS.get(str(kind)))

    async def cancel(self, batch_id: str) -> BatchStatus:
        return await self._cancel_or_status(f"{self._PATH}/{batch_id}/cancel", batch_id)


def _one(submission_id: str, found: list[str]) -> str | None:
    if len(found) > 1:
        raise BatchAmbiguous(submission_id, found)
    return found[0] if found else None
