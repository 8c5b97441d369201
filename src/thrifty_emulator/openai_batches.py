"""OpenAI's Batch API: `POST /v1/batches`, retrieve, list, cancel; results as files (openai_files.py).

As the Batch guide and API reference describe it (https://platform.openai.com/docs/guides/batch,
https://platform.openai.com/docs/api-reference/batch):

- the input file holds up to 50,000 lines `{custom_id, method: "POST", url, body}`, unique
  `custom_id`s, every `url` the batch's `endpoint`, one model for the whole file (and for
  `/v1/embeddings` at most 50,000 inputs across it). These are checked while the batch is
  `validating`: a file that breaks them does not run, the batch goes to `failed` with `errors.data`
  `{code, line, message, param}` (codes `invalid_json_line`, `duplicate_custom_id`, `url_mismatch`,
  `model_mismatch`, `empty_file`, `too_many_tasks`, `missing_required_parameter`, `invalid_value`);
- status validating -> in_progress -> finalizing -> completed, or -> failed, -> expired (the
  24h window passed), cancelling -> cancelled; `request_counts` {total, completed, failed} move as
  lines run;
- the output file has a line `{id, custom_id, response: {status_code, request_id, body}, error:
  null}` per request that ran and answered 2xx; the error file has the requests that answered
  4xx/5xx (same shape, the error body in `response.body`) and those that never ran, with `response:
  null` and `error` {code: "batch_expired" | "batch_cancelled", message}. A file is only created
  when it has lines (`output_file_id` is null when every request failed);
- `metadata` up to 16 pairs (keys <= 64 characters, values <= 512) is kept and returned.

Endpoints: `/v1/chat/completions` and `/v1/embeddings`, the two the emulator serves; the others
OpenAI's batches take (`/v1/responses`, `/v1/completions`, ...) are refused with a 400 saying the
emulator does not serve them. Prompt caching applies inside a batch as on the interactive route
(cache reads are reported in `cached_tokens` and billed in the batch section).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from thrifty_emulator import jsonutil
from thrifty_emulator.asgi import Receive, Send, read_body, send_body
from thrifty_emulator.batch_jobs import Job, Line, LineRunner, Timeline
from thrifty_emulator.errors import BodyTooLarge
from thrifty_emulator.generate import IdMaker
from thrifty_emulator.models import EmulatorConfig
from thrifty_emulator.openai_files import (
    BATCH_FILE_MAX_BYTES,
    UPLOAD_SLACK_BYTES,
    FileStore,
)
from thrifty_emulator.openai_wire import OpenAIWire
from thrifty_emulator.prompt_cache import Clock
from thrifty_emulator.wire import WireError

Handler = Callable[[Receive, Send, dict[str, str]], Awaitable[None]]

MAX_LINES = 50_000
MAX_EMBEDDING_INPUTS = 50_000
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
SERVED_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")
OPENAI_ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions",
                    "/v1/moderations", "/v1/images/generations", "/v1/images/edits", "/v1/videos")
CREATE_PARAMS = frozenset({"input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after"})
DONE = ("completed", "failed", "expired", "cancelled")
_NOT_RUN = {"expired": ("batch_expired", "This request could not be executed before the completion window expired."),
            "cancelled": ("batch_cancelled", "This request was not executed because the batch was cancelled.")}


def _invalid(message: str, param: str | None = None, code: str | None = None) -> WireError:
    return WireError(400, "invalid_request", message, param=param, code=code)


def _error(code: str, line: int | None, message: str, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "line": line, "message": message, "param": param}


def _embedding_inputs(body: dict[str, Any]) -> int:
    raw = body.get("input")
    if isinstance(raw, list) and raw and not all(isinstance(t, int) for t in raw):
        return len(raw)
    return 1


def read_input(content: bytes, endpoint: str) -> tuple[list[Line], str | None, list[dict[str, Any]]]:
    """The lines of a batch input file, its one model, and what breaks the file's rules (with line numbers)."""
    errors: list[dict[str, Any]] = []
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return [], None, [_error("invalid_json_line", None, "The file is not valid UTF-8 text.")]
    raw_lines = text.splitlines()
    while raw_lines and not raw_lines[-1].strip():
        raw_lines.pop()
    if not raw_lines:
        return [], None, [_error("empty_file", None, "The input file is empty.")]
    if len(raw_lines) > MAX_LINES:
        return [], None, [_error("too_many_tasks", None, f"The input file has {len(raw_lines)} requests; a batch "
                                                           f"takes at most {MAX_LINES}.")]
    lines: list[Line] = []
    seen: set[str] = set()
    model: str | None = None
    inputs = 0
    for number, raw in enumerate(raw_lines, start=1):
        try:
            item = jsonutil.loads(raw)
        except jsonutil.JSONDecodeError:
            errors.append(_error("invalid_json_line", number, "This line is not parseable as valid JSON."))
            continue
        if not isinstance(item, dict):
            errors.append(_error("invalid_json_line", number, "Each line must be a JSON object."))
            continue
        missing = [k for k in ("custom_id", "method", "url", "body") if k not in item]
        if missing:
            errors.append(_error("missing_required_parameter", number,
                                 f"Missing required parameter: '{missing[0]}'.", missing[0]))
            continue
        custom_id, body = item["custom_id"], item["body"]
        if not isinstance(custom_id, str) or not custom_id:
            errors.append(_error("invalid_value", number, "'custom_id' must be a non-empty string.", "custom_id"))
            continue
        if item["method"] != "POST":
            errors.append(_error("invalid_value", number, f"Invalid value: '{item['method']}'. Supported values "
                                 "are: 'POST'.", "method"))
            continue
        if item["url"] != endpoint:
            errors.append(_error("url_mismatch", number, f"The URL provided for this request ('{item['url']}') "
                                 f"does not match the batch endpoint ('{endpoint}').", "url"))
            continue
        if not isinstance(body, dict):
            errors.append(_error("invalid_value", number, "'body' must be a JSON object.", "body"))
            continue
        if custom_id in seen:
            errors.append(_error("duplicate_custom_id", number, "The custom_id for this request is a duplicate of "
                                 "another request. The custom_id parameter must be unique for each individual "
                                 "request in a batch.", "custom_id"))
            continue
        seen.add(custom_id)
        line_model = body.get("model")
        if model is None and isinstance(line_model, str):
            model = line_model
        elif isinstance(line_model, str) and line_model != model:
            errors.append(_error("model_mismatch", number, f"The model '{line_model}' does not match the model "
                                 f"'{model}' of the other requests: a batch uses one model.", "body.model"))
            continue
        if endpoint == "/v1/embeddings":
            inputs += _embedding_inputs(body)
        lines.append(Line(custom_id, body))
    if inputs > MAX_EMBEDDING_INPUTS:
        errors.append(_error("too_many_tasks", None, f"The batch has {inputs} embedding inputs; /v1/embeddings "
                                                     f"batches take at most {MAX_EMBEDDING_INPUTS}."))
    return lines, model, errors


def _check_create(body: Any) -> tuple[str, str, dict[str, str] | None]:
    if not isinstance(body, dict):
        raise _invalid("We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                       "using your HTTP library correctly. The OpenAI API expects a JSON payload.)")
    unknown = sorted(set(body) - CREATE_PARAMS)
    if unknown:
        raise _invalid(f"Unrecognized request argument supplied: {unknown[0]}")
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(name), str):
            raise _invalid(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
    endpoint = body["endpoint"]
    if endpoint not in OPENAI_ENDPOINTS:
        raise _invalid(f"Invalid value: '{endpoint}'. Supported values are: "
                       + ", ".join(f"'{e}'" for e in OPENAI_ENDPOINTS) + ".", "endpoint", "invalid_value")
    if endpoint not in SERVED_ENDPOINTS:
        raise _invalid(f"The emulator does not serve {endpoint}: its batches take "
                       + " and ".join(SERVED_ENDPOINTS) + ".", "endpoint", "invalid_value")
    if body["completion_window"] != "24h":
        raise _invalid(f"Invalid value: '{body['completion_window']}'. Supported values are: '24h'.",
                       "completion_window", "invalid_value")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _invalid("Invalid type for 'metadata': expected an object.", "metadata", "invalid_type")
        if len(metadata) > MAX_METADATA_PAIRS:
            raise _invalid(f"Invalid 'metadata': too many properties. Expected an object with at most "
                           f"{MAX_METADATA_PAIRS} properties, but got an object with {len(metadata)} properties "
                           "instead.", "metadata", "object_above_max_properties")
        for key, value in metadata.items():
            if len(key) > MAX_METADATA_KEY:
                raise _invalid(f"Invalid 'metadata': key '{key[:20]}...' is longer than {MAX_METADATA_KEY} "
                               "characters.", "metadata", "invalid_value")
            if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
                raise _invalid(f"Invalid 'metadata.{key}': expected a string of at most {MAX_METADATA_VALUE} "
                               "characters.", f"metadata.{key}", "invalid_value")
    expiry = body.get("output_expires_after")
    if expiry is not None and not (isinstance(expiry, dict) and expiry.get("anchor") == "created_at"
                                   and isinstance(expiry.get("seconds"), int)
                                   and 3600 <= expiry["seconds"] <= 2_592_000):
        raise _invalid("Invalid 'output_expires_after': expected {anchor: 'created_at', seconds: 3600 to "
                       "2592000}.", "output_expires_after", "invalid_value")
    return body["input_file_id"], endpoint, metadata


class OpenAIBatches:
    """The `/v1/files` and `/v1/batches` routes."""

    def __init__(self, wire: OpenAIWire, runner: LineRunner, files: FileStore, ids: IdMaker, clock: Clock,
                 config: EmulatorConfig, json_body: Callable[[Receive], Awaitable[Any]]) -> None:
        self.wire, self._runner, self.files, self._ids, self._clock = wire, runner, files, ids, clock
        self._config = config
        self._json_body = json_body
        self.jobs: dict[str, Job] = {}

    def match(self, method: str, path: str, query: bytes) -> Handler | None:
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "files"]:
            routes = self._file_routes(parts[2:])
        elif parts[:2] == ["v1", "batches"]:
            routes = self._batch_routes(parts[2:], query)
        else:
            return None
        if routes is None:
            return None
        handler = routes.get(method)
        if handler is None:
            return _not_allowed(method, path)
        return handler

    def _file_routes(self, rest: list[str]) -> dict[str, Handler] | None:
        if not rest:
            return {"POST": self._upload}
        if len(rest) == 1:
            return {"GET": self._answer(lambda: self.files.get(rest[0]).meta),
                    "DELETE": self._answer(lambda: self.files.delete(rest[0]))}
        if len(rest) == 2 and rest[1] == "content":
            return {"GET": self._content(rest[0])}
        return None

    def _batch_routes(self, rest: list[str], query: bytes) -> dict[str, Handler] | None:
        if not rest:
            return {"POST": self._create, "GET": self._answer(lambda: self._list(query))}
        if len(rest) == 1:
            return {"GET": self._answer(lambda: self.render(self._job(rest[0])))}
        if len(rest) == 2 and rest[1] == "cancel":
            return {"POST": self._answer(lambda: self._cancel(rest[0]))}
        return None

    # --- handlers -------------------------------------------------------------------------

    def _answer(self, make: Callable[[], dict[str, Any]]) -> Handler:
        async def handler(receive: Receive, send: Send, headers: dict[str, str]) -> None:
            self.wire.authenticate(headers, self._config.keys)
            self.advance()
            await self._send(send, make())
        return handler

    async def _send(self, send: Send, body: dict[str, Any]) -> None:
        await send_body(send, 200, jsonutil.dumps(body), {self.wire.request_id_header: self._ids.make("req_", 24)})

    async def _upload(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        self.wire.authenticate(headers, self._config.keys)
        try:
            body = await read_body(receive, headers, BATCH_FILE_MAX_BYTES + UPLOAD_SLACK_BYTES)
        except BodyTooLarge:
            raise _invalid(f"File is too large. The Batch API accepts .jsonl files up to {BATCH_FILE_MAX_BYTES} "
                           "bytes (200 MB).", "file", "file_too_large") from None
        await self._send(send, self.files.upload(body, headers.get("content-type", "")))

    def _content(self, file_id: str) -> Handler:
        async def handler(receive: Receive, send: Send, headers: dict[str, str]) -> None:
            self.wire.authenticate(headers, self._config.keys)
            self.advance()
            stored = self.files.get(file_id)
            await send_body(send, 200, stored.content, {self.wire.request_id_header: self._ids.make("req_", 24)},
                            content_type=b"application/octet-stream")
        return handler

    async def _create(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        self.wire.authenticate(headers, self._config.keys)
        file_id, endpoint, metadata = _check_create(await self._json_body(receive))
        stored = self.files.get(file_id, "input_file_id")
        if stored.meta["purpose"] != "batch":
            raise _invalid(f"Invalid 'input_file_id': file {file_id} has purpose '{stored.meta['purpose']}'; the "
                           "Batch API needs a file uploaded with purpose 'batch'.", "input_file_id", "invalid_value")
        lines, model, errors = read_input(stored.content, endpoint)
        if errors:
            lines = []
        now = self._clock()
        run = self._run_chat if endpoint == "/v1/chat/completions" else self._run_embedding
        job = Job(self._ids.make("batch_", 32), lines,
                  Timeline(now, time.time(), self._config.batch_seconds, self._config.batch_expire_seconds), run)
        job.extra.update(endpoint=endpoint, input_file_id=file_id, metadata=metadata, model=model, errors=errors)
        self.jobs[job.id] = job
        await self._send(send, self.render(job))

    def _run_chat(self, line: Line) -> None:
        self._runner.chat(self.wire, line, {})

    def _run_embedding(self, line: Line) -> None:
        self._runner.embedding(self.wire, line)

    def _job(self, batch_id: str) -> Job:
        job = self.jobs.get(batch_id)
        if job is None:
            raise WireError(404, "not_found", f"No batch found with id '{batch_id}'.", param="batch_id")
        return job

    def _cancel(self, batch_id: str) -> dict[str, Any]:
        job = self._job(batch_id)
        status = self.status(job)
        if status in DONE or status == "cancelling":
            raise WireError(409, "invalid_request", f"Cannot cancel a batch with status '{status}'.")
        job.cancel_at = self._clock()
        return self.render(job)

    def _list(self, query: bytes) -> dict[str, Any]:
        params = parse_qs(query.decode("latin-1"))
        raw_limit = (params.get("limit") or ["20"])[0]
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            raise _invalid(f"Invalid 'limit': expected an integer between 1 and 100, got '{raw_limit}'.",
                           "limit", "invalid_value")
        newest_first = list(reversed(self.jobs))
        after = (params.get("after") or [None])[0]
        if after is not None:
            if after not in self.jobs:
                raise WireError(404, "not_found", f"No batch found with id '{after}'.", param="after")
            newest_first = newest_first[newest_first.index(after) + 1:]
        page = newest_first[:int(raw_limit)]
        data = [self.render(self.jobs[i]) for i in page]
        return {"object": "list", "data": data, "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None, "has_more": len(newest_first) > len(page)}

    # --- state ------------------------------------------------------------------------------

    def advance(self) -> None:
        now = self._clock()
        for job in self.jobs.values():
            if job.ended_at is None and not job.extra["errors"]:
                job.advance(now)
                if job.ended_at is not None:
                    self._write_results(job)

    def _write_results(self, job: Job) -> None:
        out, err = [], []
        for line in job.lines:
            entry: dict[str, Any] = {"id": self._ids.make("batch_req_", 32), "custom_id": line.custom_id}
            if line.outcome in _NOT_RUN:
                code, message = _NOT_RUN[line.outcome]
                err.append({**entry, "response": None, "error": {"code": code, "message": message}})
                continue
            entry["response"] = {"status_code": line.status, "request_id": line.request_id, "body": line.response}
            entry["error"] = None
            (out if line.outcome == "succeeded" else err).append(entry)
        for key, rows, kind in (("output_file_id", out, "output"), ("error_file_id", err, "error")):
            content = b"".join(jsonutil.dumps(r) + b"\n" for r in rows)
            job.extra[key] = (self.files.add(f"batch_{job.id}_{kind}.jsonl", "batch_output", content).meta["id"]
                              if rows else None)

    def status(self, job: Job) -> str:
        now, t = self._clock(), job.timeline
        if job.extra["errors"]:
            return "validating" if now < t.validated else "failed"
        if job.ended_at is not None:
            return "expired" if job.expired else "cancelled" if job.cancel_at is not None else "completed"
        if job.cancel_at is not None:
            return "cancelling"
        return "validating" if now < t.validated else "in_progress" if now < t.finalizing else "finalizing"

    def render(self, job: Job) -> dict[str, Any]:
        """The Batch object (API reference, "The batch object")."""
        t, status, x = job.timeline, self.status(job), job.extra
        failed = status == "failed"
        ended = job.ended_at
        started = not failed and self._clock() >= t.validated and (job.cancel_at is None
                                                                    or job.cancel_at >= t.validated)
        finalized = ended is not None and status == "completed" or status == "finalizing"
        failed_lines = job.count("errored") + (job.count("expired") + job.count("cancelled") if ended else 0)
        return {
            "id": job.id, "object": "batch", "endpoint": x["endpoint"], "model": x["model"],
            "errors": {"object": "list", "data": x["errors"]} if failed else None,
            "input_file_id": x["input_file_id"], "completion_window": "24h", "status": status,
            "output_file_id": x.get("output_file_id"), "error_file_id": x.get("error_file_id"),
            "created_at": t.unix(t.created), "in_progress_at": t.unix(t.validated) if started else None,
            "expires_at": t.unix(t.expires), "finalizing_at": t.unix(t.finalizing) if finalized else None,
            "completed_at": t.unix(ended) if ended is not None and status == "completed" else None,
            "failed_at": t.unix(t.validated) if failed else None,
            "expired_at": t.unix(ended) if ended is not None and status == "expired" else None,
            "cancelling_at": t.unix(job.cancel_at) if job.cancel_at is not None else None,
            "cancelled_at": t.unix(ended) if ended is not None and status == "cancelled" else None,
            "request_counts": {"total": len(job.lines), "completed": job.count("succeeded"), "failed": failed_lines},
            "usage": _usage(job), "metadata": x["metadata"],
        }

    def reset(self) -> None:
        self.jobs.clear()


def _usage(job: Job) -> dict[str, Any]:
    used = [line.usage for line in job.lines if line.usage is not None]
    inputs = sum(u.all_input_tokens for u in used)
    outputs = sum(u.output_tokens for u in used)
    return {"input_tokens": inputs, "input_tokens_details": {"cached_tokens": sum(u.cache_read_tokens for u in used)},
            "output_tokens": outputs,
            "output_tokens_details": {"reasoning_tokens": sum(u.reasoning_tokens for u in used)},
            "total_tokens": inputs + outputs}


def _not_allowed(method: str, path: str) -> Handler:
    async def handler(receive: Receive, send: Send, headers: Mapping[str, str]) -> None:
        raise WireError(405, "invalid_request", f"Method not allowed: {method} {path}")
    return handler
