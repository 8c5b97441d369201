"""Anthropic's Message Batches API: create, retrieve, list, results, cancel, delete.

As the batch-processing guide and API reference describe it
(https://docs.claude.com/en/docs/build-with-claude/batch-processing,
https://docs.claude.com/en/api/creating-message-batches):

- the body is `{"requests": [{custom_id, params}]}` and nothing else (unknown fields: "X: Extra
  inputs are not permitted"); at most 100,000 requests or 256 MB (413 `request_too_large`);
  `custom_id` matches `^[a-zA-Z0-9_-]{1,64}$` and is unique in the batch;
- `params` are validated asynchronously, as the guide says: a request whose params the Messages
  API would refuse does not fail the batch, it ends `errored` with that 400 in its result, while
  the others succeed;
- `processing_status` in_progress -> ended, or canceling -> ended; `request_counts` stay all
  `processing` until the batch ends ("Requests start as processing and move to one of the other
  statuses only once processing of the entire batch ends"); `results_url` is null until then;
- results are JSONL lines `{custom_id, result}` with result `{type: succeeded, message}`,
  `{type: errored, error: {type: "error", error: {type, message}}}`, `{type: canceled}` or
  `{type: expired}`; `created_at`, `ended_at`, `expires_at` (24h after creation),
  `cancel_initiated_at` are RFC 3339;
- prompt caching applies inside a batch and its discount stacks with the batch discount (the
  guide: "the pricing discounts from prompt caching and Message Batches can stack"), so cache reads
  and writes are reported and billed as on the interactive route, in the batch section.

Not documented, chosen here: results asked for before the batch ended, and deleting a batch that has
not ended, are 400 `invalid_request_error`; cancelling an ended batch is 409.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from thrifty_emulator import jsonutil
from thrifty_emulator.anthropic_wire import AnthropicWire
from thrifty_emulator.asgi import Receive, Send, read_body, send_body
from thrifty_emulator.batch_jobs import Job, Line, LineRunner, Timeline
from thrifty_emulator.errors import BodyTooLarge
from thrifty_emulator.generate import IdMaker
from thrifty_emulator.models import EmulatorConfig
from thrifty_emulator.prompt_cache import Clock
from thrifty_emulator.wire import WireError

Handler = Callable[[Receive, Send, dict[str, str]], Awaitable[None]]

MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1024 * 1024
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_PREFIX = "/v1/messages/batches"
_RESULT_TYPES = {"expired": "expired", "cancelled": "canceled"}


def _invalid(message: str) -> WireError:
    return WireError(400, "invalid_request", message)


def read_requests(body: Any) -> list[Line]:
    """The batch's requests, checked as the create endpoint checks them (params are checked later)."""
    if not isinstance(body, dict):
        raise _invalid("Request body must be a JSON object")
    for key in sorted(set(body) - {"requests"}):
        raise _invalid(f"{key}: Extra inputs are not permitted")
    requests = body.get("requests")
    if requests is None:
        raise _invalid("requests: Field required")
    if not isinstance(requests, list):
        raise _invalid("requests: Input should be a valid list")
    if not requests:
        raise _invalid("requests: List should have at least 1 item after validation, not 0")
    if len(requests) > MAX_REQUESTS:
        raise _invalid(f"requests: List should have at most {MAX_REQUESTS} items after validation, "
                       f"not {len(requests)}")
    lines: list[Line] = []
    seen: set[str] = set()
    for i, request in enumerate(requests):
        if not isinstance(request, dict):
            raise _invalid(f"requests.{i}: Input should be a valid dictionary")
        for key in sorted(set(request) - {"custom_id", "params"}):
            raise _invalid(f"requests.{i}.{key}: Extra inputs are not permitted")
        for key in ("custom_id", "params"):
            if key not in request:
                raise _invalid(f"requests.{i}.{key}: Field required")
        custom_id, params = request["custom_id"], request["params"]
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise _invalid(f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        if custom_id in seen:
            raise _invalid(f"requests.{i}.custom_id: Duplicate custom_id '{custom_id}': each request in a "
                           "Message Batch must have a unique custom_id")
        if not isinstance(params, dict):
            raise _invalid(f"requests.{i}.params: Input should be a valid dictionary")
        seen.add(custom_id)
        lines.append(Line(custom_id, params))
    return lines


class AnthropicBatches:
    """The `/v1/messages/batches` routes."""

    def __init__(self, wire: AnthropicWire, runner: LineRunner, ids: IdMaker, clock: Clock,
                 config: EmulatorConfig) -> None:
        self.wire, self._runner, self._ids, self._clock, self._config = wire, runner, ids, clock, config
        self.jobs: dict[str, Job] = {}

    def match(self, method: str, path: str, query: bytes) -> Handler | None:
        if path != _PREFIX and not path.startswith(_PREFIX + "/"):
            return None
        rest = [p for p in path[len(_PREFIX):].split("/") if p]
        routes: dict[str, Handler]
        if not rest:
            routes = {"POST": self._create, "GET": self._answer(lambda h: self._list(query, h))}
        elif len(rest) == 1:
            routes = {"GET": self._answer(lambda h: self.render(self._job(rest[0]), h)),
                      "DELETE": self._answer(lambda h: self._delete(rest[0]))}
        elif len(rest) == 2 and rest[1] == "cancel":
            routes = {"POST": self._answer(lambda h: self._cancel(rest[0], h))}
        elif len(rest) == 2 and rest[1] == "results":
            routes = {"GET": self._results(rest[0])}
        else:
            return None
        return routes.get(method) or _not_allowed(method, path)

    # --- handlers -------------------------------------------------------------------------

    def _answer(self, make: Callable[[Mapping[str, str]], dict[str, Any]]) -> Handler:
        async def handler(receive: Receive, send: Send, headers: dict[str, str]) -> None:
            self.wire.authenticate(headers, self._config.keys)
            self.advance()
            await self._send(send, make(headers))
        return handler

    async def _send(self, send: Send, body: dict[str, Any]) -> None:
        await send_body(send, 200, jsonutil.dumps(body), {self.wire.request_id_header: self._ids.make("req_", 24)})

    async def _create(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        self.wire.authenticate(headers, self._config.keys)
        try:
            raw = await read_body(receive, headers, MAX_BYTES)
        except BodyTooLarge:
            # The errors page: 413 request_too_large (a kind the interactive wire never needs).
            body = {"type": "error", "error": {"type": "request_too_large", "message":
                    f"Request exceeds the maximum allowed number of bytes for a Message Batch ({MAX_BYTES})."},
                    "request_id": self._ids.make("req_", 24)}
            await send_body(send, 413, jsonutil.dumps(body))
            return
        try:
            parsed = jsonutil.loads(raw)
        except jsonutil.JSONDecodeError:
            parsed = None
        lines = read_requests(parsed)
        # Beta headers sent with the batch apply to every request in it (extended thinking's betas).
        beta = {k: v for k, v in headers.items() if k == "anthropic-beta"}
        job = Job(self._ids.make("msgbatch_01", 22), lines,
                  Timeline(self._clock(), time.time(), self._config.batch_seconds, self._config.batch_expire_seconds),
                  lambda line: self._runner.chat(self.wire, line, beta))
        self.jobs[job.id] = job
        await self._send(send, self.render(job, headers))

    def _job(self, batch_id: str) -> Job:
        job = self.jobs.get(batch_id)
        if job is None:
            raise WireError(404, "not_found", f"message_batch_id: no Message Batch found with id '{batch_id}'")
        return job

    def _cancel(self, batch_id: str, headers: Mapping[str, str]) -> dict[str, Any]:
        job = self._job(batch_id)
        if job.ended_at is not None:
            raise WireError(409, "invalid_request", f"Message Batch {batch_id} has already ended and cannot be "
                                                    "canceled")
        if job.cancel_at is None:
            job.cancel_at = self._clock()
        return self.render(job, headers)

    def _delete(self, batch_id: str) -> dict[str, Any]:
        job = self._job(batch_id)
        if job.ended_at is None:
            raise _invalid(f"Message Batch {batch_id} is still processing; cancel it and wait for it to end "
                           "before deleting it")
        del self.jobs[batch_id]
        return {"id": batch_id, "type": "message_batch_deleted"}

    def _list(self, query: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        params = parse_qs(query.decode("latin-1"))
        raw_limit = (params.get("limit") or ["20"])[0]
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise _invalid(f"limit: Input should be between 1 and 1000, got {raw_limit!r}")
        limit = int(raw_limit)
        ids = list(reversed(self.jobs))  # newest first
        after, before = (params.get("after_id") or [None])[0], (params.get("before_id") or [None])[0]
        if after is not None and before is not None:
            raise _invalid("after_id and before_id cannot both be set")
        for cursor in (after, before):
            if cursor is not None and cursor not in self.jobs:
                raise WireError(404, "not_found", f"message_batch_id: no Message Batch found with id '{cursor}'")
        if after is not None:
            rest = ids[ids.index(after) + 1:]
            page, more = rest[:limit], len(rest) > limit
        elif before is not None:
            rest = ids[:ids.index(before)]
            page, more = rest[-limit:], len(rest) > limit
        else:
            page, more = ids[:limit], len(ids) > limit
        return {"data": [self.render(self.jobs[i], headers) for i in page], "has_more": more,
                "first_id": page[0] if page else None, "last_id": page[-1] if page else None}

    def _results(self, batch_id: str) -> Handler:
        async def handler(receive: Receive, send: Send, headers: dict[str, str]) -> None:
            self.wire.authenticate(headers, self._config.keys)
            self.advance()
            job = self._job(batch_id)
            if job.ended_at is None:
                raise _invalid(f"Message Batch {batch_id} has not ended yet: results are available once its "
                               "processing_status is ended")
            body = b"".join(jsonutil.dumps({"custom_id": line.custom_id, "result": _result(line)}) + b"\n"
                            for line in job.lines)
            await send_body(send, 200, body, {self.wire.request_id_header: self._ids.make("req_", 24)},
                            content_type=b"application/binary")
        return handler

    # --- state ----------------------------------------------------------------------------

    def advance(self) -> None:
        now = self._clock()
        for job in self.jobs.values():
            if job.ended_at is None:
                job.advance(now)

    def render(self, job: Job, headers: Mapping[str, str]) -> dict[str, Any]:
        """The Message Batch object (API reference, "Retrieve a Message Batch")."""
        t, ended = job.timeline, job.ended_at
        if ended is None:
            status = "canceling" if job.cancel_at is not None else "in_progress"
            counts = {"processing": len(job.lines), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        else:
            status = "ended"
            counts = {"processing": 0, "succeeded": job.count("succeeded"), "errored": job.count("errored"),
                      "canceled": job.count("cancelled"), "expired": job.count("expired")}
        host = headers.get("host", "127.0.0.1")
        return {
            "id": job.id, "type": "message_batch", "processing_status": status, "request_counts": counts,
            "ended_at": t.rfc3339(ended) if ended is not None else None, "created_at": t.rfc3339(t.created),
            "expires_at": t.rfc3339(t.expires), "archived_at": None,
            "cancel_initiated_at": t.rfc3339(job.cancel_at) if job.cancel_at is not None else None,
            "results_url": f"http://{host}{_PREFIX}/{job.id}/results" if ended is not None else None,
        }

    def reset(self) -> None:
        self.jobs.clear()


def _result(line: Line) -> dict[str, Any]:
    if line.outcome == "succeeded":
        return {"type": "succeeded", "message": line.response}
    if line.outcome == "errored":
        return {"type": "errored", "error": line.response}
    return {"type": _RESULT_TYPES[line.outcome or "expired"]}


def _not_allowed(method: str, path: str) -> Handler:
    async def handler(receive: Receive, send: Send, headers: Mapping[str, str]) -> None:
        raise WireError(405, "invalid_request", f"Method not allowed: {method} {path}")
    return handler
