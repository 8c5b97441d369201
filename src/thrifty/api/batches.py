"""The batch lane's HTTP surfaces, each in its own protocol (thrifty.batch does the work):

- OpenAI: `POST /v1/files` (purpose `batch`), `GET /v1/files/{id}`, `GET /v1/files/{id}/content`
  (input files, and the output and error files of finished batches), `POST /v1/batches`,
  `GET /v1/batches/{id}`, `GET /v1/batches`, `POST /v1/batches/{id}/cancel`;
- Anthropic: `POST /v1/messages/batches`, `GET /v1/messages/batches/{id}`, `GET /v1/messages/batches`,
  `GET /v1/messages/batches/{id}/results`, `POST /v1/messages/batches/{id}/cancel`;
- Thrifty: `GET /v1/thrifty/jobs/{id}` and `POST /v1/thrifty/jobs/{id}/cancel` for deferred calls
  (a chat or messages call with `x-thrifty-defer`, answered 202; see `defer()`).

Jobs, files and lines belong to the tenant of the key that made them: any other tenant gets 404,
as for an id that does not exist. A line's model may be served by either provider kind: each line
is translated to the deployment's dialect and its answer back (thrifty.wire).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qs

import orjson

from thrifty import jsonutil
from thrifty.api.asgi import Receive, Scope, Send, parse_json, read_body, send_response
from thrifty.api.multipart import parse_form
from thrifty.batch import formats
from thrifty.batch.lane import BatchLane, Intake
from thrifty.batch.store import Job
from thrifty.contract import Call
from thrifty.errors import GatewayError, InvalidRequest, NotFound, RequestTooLarge, UpstreamError
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT, Wire

log = logging.getLogger("thrifty.api")

_JSONL = b"application/jsonl"
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # Anthropic's rule; OpenAI's ids are free-form
_ANTHROPIC_MAX_REQUESTS = 100_000
_ANTHROPIC_MAX_BYTES = 256 * 1024 * 1024
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_DEFER_S = 24 * 3600  # provider batches promise results within 24 h
DEFER_HEADER = "x-thrifty-defer"
WEBHOOK_HEADER = "x-thrifty-webhook"
# The chat paths a batch line may name, and the dialect its body is in.
_LINE_URLS: dict[str, Wire] = {"/v1/chat/completions": OPENAI_CHAT, "/v1/embeddings": OPENAI_CHAT}


def _paths(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p)


class BatchSurfaces:
    """Routes of the batch lane; `handles(path)` says which paths are ours."""

    def __init__(self, gateway: Any, lane: BatchLane | None) -> None:
        self.gw = gateway
        self.lane = lane

    @staticmethod
    def handles(path: str) -> bool:
        return (path in ("/v1/files", "/v1/batches", "/v1/messages/batches")
                or path.startswith(("/v1/files/", "/v1/batches/", "/v1/messages/batches/", "/v1/thrifty/jobs/")))

    @staticmethod
    def allowed(path: str) -> tuple[str, ...]:
        p = _paths(path)
        if p in (("v1", "files"), ("v1", "batches"), ("v1", "messages", "batches")):
            return ("GET", "POST") if p != ("v1", "files") else ("POST",)
        if p[-1:] == ("cancel",):
            return ("POST",)
        return ("GET",)

    async def __call__(self, method: str, path: str, scope: Scope, receive: Receive, send: Send,
                       headers: dict[str, str]) -> bool:
        """Serve the request; False when the method/path pair is not one of ours (the app then
        answers 405 with Allow, or 404)."""
        wire = ANTHROPIC_MESSAGES if path.startswith("/v1/messages") else OPENAI_CHAT
        p = _paths(path)
        rid = self.gw.new_request_id()
        try:
            tenant = await self.gw.tenant_for(wire.api_key(headers))
            if self.lane is None:
                raise InvalidRequest("the batch lane is off on this gateway (batch.enabled: false)",
                                     code="batch_lane_disabled")
            query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
            handler = self._route(method, p)
            if handler is None:
                return False
            await handler(tenant, p, query, receive, send, headers)
        except GatewayError as err:
            await send_response(send, err.status, wire.error_body(err, rid), {"x-thrifty-request-id": rid})
        except Exception as exc:  # a bug of ours: a clean answer in the protocol's shape, and the log
            log.exception("batch surface: unhandled error on %s %s", method, path)
            err = UpstreamError(f"internal gateway error: {type(exc).__name__}", status=500)
            await send_response(send, 500, wire.error_body(err, rid), {"x-thrifty-request-id": rid})
        return True

    def _route(self, method: str, p: tuple[str, ...]) -> Any:
        table = {
            ("POST", ("v1", "files")): self._upload,
            ("POST", ("v1", "batches")): self._openai_create,
            ("GET", ("v1", "batches")): self._openai_list,
            ("POST", ("v1", "messages", "batches")): self._anthropic_create,
            ("GET", ("v1", "messages", "batches")): self._anthropic_list,
        }
        found = table.get((method, p))
        if found is not None:
            return found
        n = len(p)
        if p[:2] == ("v1", "files") and method == "GET" and n in (3, 4) and (n == 3 or p[3] == "content"):
            return self._file
        if p[:2] == ("v1", "batches") and n == 3 and method == "GET":
            return self._openai_get
        if p[:2] == ("v1", "batches") and n == 4 and p[3] == "cancel" and method == "POST":
            return self._openai_cancel
        if p[:3] == ("v1", "messages", "batches") and n == 4 and method == "GET":
            return self._anthropic_get
        if p[:3] == ("v1", "messages", "batches") and n == 5 and p[4] == "results" and method == "GET":
            return self._anthropic_results
        if p[:3] == ("v1", "messages", "batches") and n == 5 and p[4] == "cancel" and method == "POST":
            return self._anthropic_cancel
        if p[:3] == ("v1", "thrifty", "jobs") and n == 4 and method == "GET":
            return self._job_get
        if p[:3] == ("v1", "thrifty", "jobs") and n == 5 and p[4] == "cancel" and method == "POST":
            return self._job_cancel
        return None

    # -- shared ----------------------------------------------------------------------------------

    async def _json(self, receive: Receive, headers: dict[str, str], limit: int | None = None) -> dict[str, Any]:
        server = self.gw.config.server
        raw = await read_body(receive, headers, limit or server.max_body_bytes, server.body_timeout_s)
        body = parse_json(raw, server.max_json_depth)
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        return body

    def _attribution(self, headers: dict[str, str]) -> dict[str, str | None]:
        cap = self.gw.config.server.max_attribution_chars
        out = {}
        for name, header in (("feature", "x-thrifty-feature"), ("user", "x-thrifty-user"),
                             ("task", "x-thrifty-task"), ("call_site", "x-thrifty-call-site")):
            value = headers.get(header)
            if value is not None and len(value) > cap:
                raise InvalidRequest(f"header {header} is {len(value)} characters long; the limit is {cap}",
                                     param=header, code="header_too_long")
            out[name] = value
        return out

    async def _job(self, tenant: str, job_id: str, surface: str) -> Job:
        job = await self.lane.store.run(self.lane.store.get_job, job_id, tenant)  # type: ignore[union-attr]
        if job is None or job.surface != surface:
            raise NotFound(f"no batch with id {job_id!r}", param="batch_id", code="not_found")
        return job

    async def _counts(self, job: Job) -> dict[str, int]:
        return await self.lane.store.run(self.lane.store.counts, job.id)  # type: ignore[union-attr]

    async def _lines(self, job: Job):  # -> AsyncIterator[Line]
        store, after = self.lane.store, 0  # type: ignore[union-attr]
        while True:
            chunk = await store.run(store.lines_of_job, job.id, after_n=after)
            if not chunk:
                return
            for line in chunk:
                yield line
            after = chunk[-1].n

    # -- OpenAI files ----------------------------------------------------------------------------

    async def _upload(self, tenant: str, p: tuple[str, ...], query: dict[str, str], receive: Receive, send: Send,
                      headers: dict[str, str]) -> None:
        limit = self.gw.config.batch.max_file_bytes + 64 * 1024
        raw = await read_body(receive, headers, limit, self.gw.config.server.body_timeout_s)
        form = parse_form(headers.get("content-type"), raw)
        purpose = form.fields.get("purpose")
        if purpose != "batch":
            raise InvalidRequest(f"purpose {purpose!r} is not supported here: this gateway stores files for the "
                                 "batch lane only (purpose 'batch')", param="purpose")
        if "file" not in form.files:
            raise InvalidRequest("a 'file' part is required", param="file")
        filename, content = form.files["file"]
        if len(content) > self.gw.config.batch.max_file_bytes:
            raise RequestTooLarge(f"the file is {len(content)} bytes; the limit is "
                                  f"{self.gw.config.batch.max_file_bytes} (batch.max_file_bytes)")
        store = self.lane.store  # type: ignore[union-attr]
        file_id = "file-" + self.gw.new_request_id()[4:]
        info = await store.run(store.add_file, file_id, tenant, purpose, filename, content)
        await send_response(send, 200, jsonutil.dumps(formats.openai_file(
            file_id, filename, info["bytes"], info["created_at"], purpose)))

    async def _file(self, tenant: str, p: tuple[str, ...], query: dict[str, str], receive: Receive, send: Send,
                    headers: dict[str, str]) -> None:
        file_id, content = p[2], len(p) == 4
        store = self.lane.store  # type: ignore[union-attr]
        for prefix in (formats.OUTPUT_PREFIX, formats.ERRORS_PREFIX):
            if file_id.startswith(prefix):
                job = await self._job(tenant, file_id[len(prefix):], "openai")
                if job.status != "ended":
                    raise NotFound(f"no file with id {file_id!r} yet: the batch is still running", param="file_id")
                want_ok = prefix == formats.OUTPUT_PREFIX
                body = formats.jsonl([formats.openai_output_line(ln) async for ln in self._lines(job)
                                      if ((ln.result or {}).get("outcome") == "succeeded") == want_ok])
                if content:
                    await send_response(send, 200, body, content_type=_JSONL)
                else:
                    name = ("batch_output.jsonl" if want_ok else "batch_errors.jsonl")
                    await send_response(send, 200, jsonutil.dumps(formats.openai_file(
                        file_id, name, len(body), job.ended_at or job.created_at, "batch_output")))
                return
        found = await store.run(store.get_file, tenant, file_id, content=content)
        if found is None:
            raise NotFound(f"no file with id {file_id!r}", param="file_id")
        if content:
            await send_response(send, 200, found["content"].encode(), content_type=_JSONL)
            return
        await send_response(send, 200, jsonutil.dumps(formats.openai_file(
            found["id"], found["filename"], found["bytes"], found["created_at"], found["purpose"])))

    # -- OpenAI batches --------------------------------------------------------------------------

    async def _openai_create(self, tenant: str, p: tuple[str, ...], query: dict[str, str], receive: Receive,
                             send: Send, headers: dict[str, str]) -> None:
        body = await self._json(receive, headers)
        endpoint = body.get("endpoint")
        wire = _LINE_URLS.get(endpoint) if isinstance(endpoint, str) else None
        if wire is None:
            raise InvalidRequest(f"endpoint {endpoint!r} is not supported by the batch lane (supported: "
                                 f"{', '.join(_LINE_URLS)})", param="endpoint")
        if body.get("completion_window") != "24h":
            raise InvalidRequest("completion_window must be '24h'", param="completion_window")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16 or not all(
                isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                for k, v in metadata.items())):
            raise InvalidRequest("metadata: at most 16 string pairs (keys up to 64, values up to 512 characters)",
                                 param="metadata")
        file_id = body.get("input_file_id")
        store = self.lane.store  # type: ignore[union-attr]
        found = await store.run(store.get_file, tenant, file_id, content=True) if isinstance(file_id, str) else None
        if found is None:
            raise NotFound(f"no file with id {file_id!r}", param="input_file_id")
        lines = self._openai_lines(found["content"], endpoint)
        job = await self.lane.create_job(  # type: ignore[union-attr]
            tenant=tenant, surface="openai", lane="batch", endpoint=endpoint, wire=wire, lines=lines,
            headers=headers, attribution=self._attribution(headers), info={"metadata": metadata},
            input_file_id=file_id, job_id="batch_" + self.gw.new_request_id()[4:])
        await send_response(send, 200, jsonutil.dumps(formats.openai_batch(job, await self._counts(job))))

    def _openai_lines(self, content: str, endpoint: str) -> list[Intake]:
        out: list[Intake] = []
        seen: set[str] = set()
        limit = self.gw.config.batch.max_lines
        for n, text in enumerate(content.splitlines(), 1):
            if not text.strip():
                continue
            if len(out) >= limit:
                raise InvalidRequest(f"the file has more than {limit} lines (batch.max_lines)",
                                     param="input_file_id")
            try:
                item = orjson.loads(text)
            except orjson.JSONDecodeError:
                out.append(Intake(n, f"line-{n}", None, "not valid JSON"))
                continue
            if not isinstance(item, dict):
                out.append(Intake(n, f"line-{n}", None, "a line must be a JSON object"))
                continue
            custom_id = item.get("custom_id")
            error = None
            if not isinstance(custom_id, str) or not custom_id:
                custom_id, error = f"line-{n}", "'custom_id' (a string) is required"
            elif custom_id in seen:
                error = f"custom_id {custom_id!r} is used by an earlier line"
            elif item.get("method") != "POST":
                error = "'method' must be 'POST'"
            elif item.get("url") != endpoint:
                error = f"'url' must be the batch's endpoint {endpoint!r}"
            elif not isinstance(item.get("body"), dict):
                error = "'body' (the request, a JSON object) is required"
            seen.add(custom_id)
            out.append(Intake(n, custom_id, item.get("body"), error))
        if not out:
            raise InvalidRequest("the input file has no lines", param="input_file_id")
        return out

    async def _openai_get(self, tenant: str, p: tuple[str, ...], query: dict[str, str], receive: Receive,
                          send: Send, headers: dict[str, str]) -> None:
        job = await self._job(tenant, p[2], "openai")
        await send_response(send, 200, jsonutil.dumps(formats.openai_batch(job, await self._counts(job))))

    async def _openai_list(self, tenant: str, p: tuple[str, ...], query: dict[str, str], receive: Receive,
                           send: Send, headers: dict[str, str]) -> None:
        limit = _limit(query.get("limit"), 20, 100)
        store = self.lane.store  # type: ignore[union-attr]
        jobs, more = await store.run(store.list_jobs, tenant, "openai", limit, query.get("after"))
        data = [formats.openai_batch(j, await self._counts(j)) for j in jobs]
        await send_response(send, 200, jsonutil.dumps({
            "object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": more}))

    async def _openai_cancel(self, tenant: str, p: tuple[str, ...], query: dict[str, str], receive: Receive,
                             send: Send, headers: dict[str, str]) -> None:
        job = await self.lane.cancel(await self._job(tenant, p[2], "openai"))  # type: ignore[union-attr]
        await send_response(send, 200, jsonutil.dumps(formats.openai_batch(job, await self._counts(job))))

    # -- Anthropic message batches ---------------------------------------------------------------

    async def _anthropic_create(self, tenant: str, p: tuple[str, ...], query: dict[str, str], receive: Receive,
                                send: Send, headers: dict[str, str]) -> None:
        body = await self._json(receive, headers, _ANTHROPIC_MAX_BYTES)
        unknown = set(body) - {"requests"}
        if unknown:
            raise InvalidRequest(f"{sorted(unknown)[0]}: Extra inputs are not permitted", param=sorted(unknown)[0])
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise InvalidRequest("requests: a non-empty list of {custom_id, params} is required", param="requests")
        limit = min(_ANTHROPIC_MAX_REQUESTS, self.gw.config.batch.max_lines)
        if len(requests) > limit:
            raise InvalidRequest(f"requests: at most {limit} per batch", param="requests")
        lines, seen = [], set()
        for n, item in enumerate(requests, 1):
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            error = None
            if not isinstance(item, dict):
                custom_id, error = f"request-{n}", "each request must be an object {custom_id, params}"
            elif not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
                custom_id, error = f"request-{n}", "custom_id must match ^[a-zA-Z0-9_-]{1,64}$"
            elif custom_id in seen:
                error = f"custom_id {custom_id!r} is used by an earlier request"
            elif not isinstance(item.get("params"), dict):
                error = "params (a Messages API request) is required"
            elif set(item) - {"custom_id", "params"}:
                error = f"{sorted(set(item) - {'custom_id', 'params'})[0]}: Extra inputs are not permitted"
            seen.add(custom_id)
            lines.append(Intake(n, custom_id, item.get("params") if isinstance(item, dict) else None, error))
        job = await self.lane.create_job(  # type: ignore[union-attr]
            tenant=tenant, surface="anthropic", lane="batch", endpoint="/v1/messages", wire=ANTHROPIC_MESSAGES,
            lines=lines, headers=headers, attribution=self._attribution(headers),
            job_id="msgbatch_" + self.gw.new_request_id()[4:])
        await send_response(send, 200, jsonutil.dumps(formats.anthropic_batch(
            job, await self._counts(job), self._base_url(headers))))

    def _base_url(self, headers: dict[str, str]) -> str:
        host = headers.get("host") or f"{self.gw.config.server.host}:{self.gw.config.server.port}"
        return f"http://{host}"

    async def _anthropic_get(self, tenant: str, p: tuple[str, ...], query: dict[str, str], receive: Receive,
                             send: Send, headers: dict[str, str]) -> None:
        job = await self._job(tenant, p[3], "anthropic")
        await send_response(send, 200, jsonutil.dumps(formats.anthropic_batch(
            job, await self._counts(job), self._base_url(headers))))

    async def _anthropic_list(self, tenant: str, p: tuple[str, ...], query: dict[str, str], receive: Receive,
                              send: Send, headers: dict[str, str]) -> None:
        limit = _limit(query.get("limit"), 20, 1000)
        store = self.lane.store  # type: ignore[union-attr]
        jobs, more = await store.run(store.list_jobs, tenant, "anthropic", limit, query.get("after_id"),
                                     query.get("before_id"))
        base = self._base_url(headers)
        data = [formats.anthropic_batch(j, await self._counts(j), base) for j in jobs]
        await send_response(send, 200, jsonutil.dumps({
            "data": data, "has_more": more, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}))

    async def _anthropic_results(self, tenant: str, p: tuple[str, ...], query: dict[str, str], receive: Receive,
                                 send: Send, headers: dict[str, str]) -> None:
        job = await self._job(tenant, p[3], "anthropic")
        if job.status != "ended":
            raise InvalidRequest(f"message batch {job.id} has not ended yet; results are available once "
                                 "processing_status is 'ended'", code="batch_not_ended")
        body = formats.jsonl([formats.anthropic_result_line(ln) async for ln in self._lines(job)])
        await send_response(send, 200, body, content_type=_JSONL)

    async def _anthropic_cancel(self, tenant: str, p: tuple[str, ...], query: dict[str, str], receive: Receive,
                                send: Send, headers: dict[str, str]) -> None:
        job = await self.lane.cancel(await self._job(tenant, p[3], "anthropic"))  # type: ignore[union-attr]
        await send_response(send, 200, jsonutil.dumps(formats.anthropic_batch(
            job, await self._counts(job), self._base_url(headers))))

    # -- deferred single calls -------------------------------------------------------------------

    async def _job_get(self, tenant: str, p: tuple[str, ...], query: dict[str, str], receive: Receive,
                       send: Send, headers: dict[str, str]) -> None:
        job = await self._job(tenant, p[3], "deferred")
        await send_response(send, 200, jsonutil.dumps(await self.lane.job_view(job)))  # type: ignore[union-attr]

    async def _job_cancel(self, tenant: str, p: tuple[str, ...], query: dict[str, str], receive: Receive,
                          send: Send, headers: dict[str, str]) -> None:
        job = await self.lane.cancel(await self._job(tenant, p[3], "deferred"))  # type: ignore[union-attr]
        await send_response(send, 200, jsonutil.dumps(await self.lane.job_view(job)))  # type: ignore[union-attr]

    async def defer(self, call: Call, window: float, headers: dict[str, str]) -> dict[str, Any]:
        """Hand a chat call to the lane as a job of one line; the 202's body."""
        assert self.lane is not None
        hook = headers.get(WEBHOOK_HEADER)
        info: dict[str, Any] = {}
        if hook is not None:
            info["webhook"] = check_webhook(hook, self.gw.config.batch.webhook_hosts)
        attribution = {"feature": call.feature, "user": call.user, "task": call.task, "call_site": call.call_site}
        job = await self.lane.create_job(
            tenant=call.tenant, surface="deferred", lane="deferred", endpoint=call.wire.name, wire=call.wire,
            lines=[Intake(1, call.request_id, call.body)], headers=headers, attribution=attribution, info=info,
            job_id="job_" + call.request_id[4:], request_ids=[call.request_id], expires_in_s=window)
        return await self.lane.job_view(job)


def defer_window(headers: dict[str, str], route_defers: bool) -> float | None:
    """Seconds the client lets a deferred call take (None: not deferred). `x-thrifty-defer` takes
    a duration (`24h`, `2d`, `86400s`) or `true` / `1` (24 h); `false` / `0` opts a call on a
    `defer` route out. Provider batches promise results within 24 h, so a shorter window is refused."""
    value = headers.get(DEFER_HEADER)
    if value is None:
        return MIN_DEFER_S if route_defers else None
    v = value.strip().lower()
    if v in ("false", "0", "no", "off"):
        return None
    if v in ("true", "1", "yes", "on"):
        return MIN_DEFER_S
    m = _DURATION.match(v)
    if m is None:
        raise InvalidRequest(f"{DEFER_HEADER}: {value!r} is not a duration (say 24h, 2d or true)",
                             param=DEFER_HEADER)
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if seconds < MIN_DEFER_S:
        raise InvalidRequest(f"{DEFER_HEADER}: provider batches finish within 24 h, not sooner; a window of at "
                             f"least 24h is needed (got {value!r})", param=DEFER_HEADER)
    return seconds


def check_webhook(url: str, hosts: tuple[str, ...]) -> str:
    from urllib.parse import urlsplit

    if not hosts:
        raise InvalidRequest(f"{WEBHOOK_HEADER}: webhooks are off on this gateway (batch.webhook_hosts is empty)",
                             param=WEBHOOK_HEADER)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in hosts:
        raise InvalidRequest(f"{WEBHOOK_HEADER}: only http(s) URLs on batch.webhook_hosts are called",
                             param=WEBHOOK_HEADER)
    return url


def _limit(value: str | None, default: int, top: int) -> int:
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise InvalidRequest(f"limit must be an integer from 1 to {top}", param="limit") from None
    if not 1 <= n <= top:
        raise InvalidRequest(f"limit must be from 1 to {top}", param="limit")
    return n
