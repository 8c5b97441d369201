"""The batch lane's durable state, in the ledger's own database (SQLite or PostgreSQL).

Four tables (ledger migration 0005_batch_lane): the files clients upload, the jobs, one row per
line, and the provider batches that lines were sent in. Every state change is one transaction,
so a restarted gateway finds each line exactly where the last one left it:

    line:        queued -> submitted -> succeeded | errored | expired | cancelled
                 queued -> running (a provider without a batch API) -> the same finals
    submission:  submitting -> submitted -> done        (or: ambiguous, see lane.py)

A submission is written as `submitting` (with its lines) *before* the provider is asked, so a
crash between the provider's answer and recording it leaves a trace to look the batch up by,
instead of a second submission.

The SQL is the subset both databases accept; the work runs on one thread of its own (sqlite3
and psycopg connections are blocking), reached through `await store.run(fn, ...)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, TypeVar

import orjson

from thrifty.errors import ConfigError

T = TypeVar("T")

FINAL = ("succeeded", "errored", "expired", "cancelled")
OPEN = ("queued", "running", "submitted")
_CHUNK = 500  # ids per IN (...) list and rows per executemany


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


@dataclass(slots=True)
class Job:
    id: str
    tenant: str
    surface: str  # the client's API: "openai" (files + batches), "anthropic" (message batches), "deferred"
    lane: str  # "batch" | "deferred" (LedgerRow.lane of its lines)
    endpoint: str  # the lines' URL ("/v1/chat/completions", "/v1/messages")
    status: str  # in_progress | ended (counts per line state tell the rest)
    created_at: float
    expires_at: float
    ended_at: float | None = None
    cancel_requested: bool = False
    input_file_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # metadata, attribution, webhook, rejected lines


@dataclass(slots=True)
class Line:
    id: str  # the lane's id: the custom_id sent to the provider, and the line's ledger request id
    job_id: str
    n: int  # 1-based line number in the client's input
    custom_id: str  # the client's
    state: str
    due_at: float  # when it may be submitted (deferred calls wait to be coalesced)
    request: dict[str, Any]  # what the client sent: wire, body, model, tenant and attribution
    deployment: str | None = None
    submission_id: str | None = None
    plan: dict[str, Any] | None = None  # the prepared upstream call (lane.py)
    result: dict[str, Any] | None = None  # the final answer or error, in the client's format
    updated_at: float = 0.0


@dataclass(slots=True)
class Submission:
    id: str
    deployment: str
    provider: str
    state: str
    lines: int
    created_at: float
    next_poll_at: float
    poll_interval_s: float
    provider_batch_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


_JOB_COLS = ("id, tenant, surface, lane, endpoint, status, created_at, expires_at, ended_at, "
             "cancel_requested, input_file_id, info")
_LINE_COLS = "id, job_id, n, custom_id, state, deployment, submission_id, due_at, request, plan, result, updated_at"
_SUB_COLS = ("id, deployment, provider, state, provider_batch_id, lines, created_at, next_poll_at, "
             "poll_interval_s, info")


def _job(r: Sequence[Any]) -> Job:
    return Job(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]), r[10], _loads(r[11]) or {})


def _line(r: Sequence[Any]) -> Line:
    return Line(id=r[0], job_id=r[1], n=r[2], custom_id=r[3], state=r[4], deployment=r[5], submission_id=r[6],
                due_at=r[7], request=_loads(r[8]), plan=_loads(r[9]), result=_loads(r[10]), updated_at=r[11])


def _sub(r: Sequence[Any]) -> Submission:
    return Submission(id=r[0], deployment=r[1], provider=r[2], state=r[3], provider_batch_id=r[4], lines=r[5],
                      created_at=r[6], next_poll_at=r[7], poll_interval_s=r[8], info=_loads(r[9]) or {})


class BatchStore:
    """Jobs, lines, files and submissions, in the ledger's database.

    `driver` is the ledger's (thrifty.ledger.driver.Driver): the same connection settings, the
    same placeholder, and its migrations have created the tables by the time the lane starts.
    """

    def __init__(self, driver: Any) -> None:
        self._driver = driver
        self._m = driver.dialect.mark
        self._pg = driver.name == "PostgreSQL"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thrifty-batch-store")
        self._conn: Any = None

    # -- plumbing --------------------------------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the store's thread (where its connection lives)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def _c(self) -> Any:
        if self._conn is None:
            try:
                self._conn = self._driver.connect()
            except ConnectionError as exc:
                raise ConfigError("ledger", "url", f"the batch lane cannot reach the ledger database: {exc}") from exc
        return self._conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        conn = self._c()
        if self._pg:
            with conn.transaction():
                yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _q(self, sql: str) -> str:
        return sql.replace("?", self._m)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._c().execute(self._q(sql), tuple(params)).fetchall())

    def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._pool.submit(shut).result()
        self._pool.shutdown(wait=True)

    # -- files -----------------------------------------------------------------------------------

    def add_file(self, file_id: str, tenant: str, purpose: str, filename: str, content: bytes) -> dict[str, Any]:
        now = time.time()
        with self._tx() as conn:
            conn.execute(self._q("INSERT INTO batch_files (id, tenant, purpose, filename, bytes, created_at, content) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?)"),
                         (file_id, tenant, purpose, filename, len(content), now,
                          content.decode("utf-8", "replace")))
        return {"id": file_id, "purpose": purpose, "filename": filename, "bytes": len(content), "created_at": now}

    def get_file(self, tenant: str, file_id: str, *, content: bool = False) -> dict[str, Any] | None:
        cols = "id, purpose, filename, bytes, created_at" + (", content" if content else "")
        rows = self._all(f"SELECT {cols} FROM batch_files WHERE id = ? AND tenant = ?", (file_id, tenant))
        if not rows:
            return None
        r = rows[0]
        out = {"id": r[0], "purpose": r[1], "filename": r[2], "bytes": r[3], "created_at": r[4]}
        if content:
            out["content"] = r[5]
        return out

    # -- jobs and their lines --------------------------------------------------------------------

    def add_job(self, job: Job, lines: Sequence[Line]) -> None:
        """The job and all its lines, in one transaction."""
        with self._tx() as conn:
            conn.execute(self._q(f"INSERT INTO batch_jobs ({_JOB_COLS}) VALUES ({', '.join('?' * 12)})"),
                         (job.id, job.tenant, job.surface, job.lane, job.endpoint, job.status, job.created_at,
                          job.expires_at, job.ended_at, int(job.cancel_requested), job.input_file_id,
                          _dumps(job.info)))
            sql = self._q(f"INSERT INTO batch_lines ({_LINE_COLS}) VALUES ({', '.join('?' * 12)})")
            for i in range(0, len(lines), _CHUNK):
                conn.cursor().executemany(sql, [(ln.id, ln.job_id, ln.n, ln.custom_id, ln.state, ln.deployment,
                                        ln.submission_id, ln.due_at, _dumps(ln.request),
                                        None if ln.plan is None else _dumps(ln.plan),
                                        None if ln.result is None else _dumps(ln.result), ln.updated_at)
                                       for ln in lines[i:i + _CHUNK]])

    def get_job(self, job_id: str, tenant: str | None = None) -> Job | None:
        sql, params = f"SELECT {_JOB_COLS} FROM batch_jobs WHERE id = ?", [job_id]
        if tenant is not None:
            sql, params = sql + " AND tenant = ?", [job_id, tenant]
        rows = self._all(sql, params)
        return _job(rows[0]) if rows else None

    def list_jobs(self, tenant: str, surface: str, limit: int, after: str | None = None,
                  before: str | None = None) -> tuple[list[Job], bool]:
        """The tenant's jobs of one surface, newest first; and whether there are more."""
        sql = f"SELECT {_JOB_COLS} FROM batch_jobs WHERE tenant = ? AND surface = ?"
        params: list[Any] = [tenant, surface]
        if after is not None:  # older than `after`
            sql += " AND created_at < (SELECT created_at FROM batch_jobs WHERE id = ?)"
            params.append(after)
        if before is not None:  # newer than `before`
            sql += " AND created_at > (SELECT created_at FROM batch_jobs WHERE id = ?)"
            params.append(before)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(limit + 1)
        rows = self._all(sql, params)
        return [_job(r) for r in rows[:limit]], len(rows) > limit

    def set_job(self, job_id: str, **fields: Any) -> None:
        names = list(fields)
        values = [(_dumps(v) if k == "info" else int(v) if k == "cancel_requested" else v)
                  for k, v in fields.items()]
        with self._tx() as conn:
            conn.execute(self._q(f"UPDATE batch_jobs SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?"),
                         (*values, job_id))

    def counts(self, job_id: str) -> dict[str, int]:
        """Lines of the job per state."""
        return {s: n for s, n in self._all("SELECT state, COUNT(*) FROM batch_lines WHERE job_id = ? GROUP BY state",
                                           (job_id,))}

    def lines_of_job(self, job_id: str, *, after_n: int = 0, limit: int = _CHUNK) -> list[Line]:
        return [_line(r) for r in self._all(
            f"SELECT {_LINE_COLS} FROM batch_lines WHERE job_id = ? AND n > ? ORDER BY n LIMIT ?",
            (job_id, after_n, limit))]

    def lines(self, ids: Sequence[str]) -> list[Line]:
        out: list[Line] = []
        for i in range(0, len(ids), _CHUNK):
            part = ids[i:i + _CHUNK]
            out += [_line(r) for r in self._all(
                f"SELECT {_LINE_COLS} FROM batch_lines WHERE id IN ({', '.join('?' * len(part))})", part)]
        return out

    def expired_jobs(self, now: float) -> list[Job]:
        """Jobs still running past their completion window."""
        return [_job(r) for r in self._all(
            f"SELECT {_JOB_COLS} FROM batch_jobs WHERE status = 'in_progress' AND expires_at <= ?", (now,))]

    # -- the lane's work -------------------------------------------------------------------------

    def queued_groups(self) -> list[tuple[str, int, float]]:
        """Per deployment with queued lines: (deployment, how many, when the first is due)."""
        return [(d, n, due) for d, n, due in self._all(
            "SELECT deployment, COUNT(*), MIN(due_at) FROM batch_lines WHERE state = 'queued' "
            "GROUP BY deployment")]

    def queued(self, deployment: str, limit: int) -> list[Line]:
        return [_line(r) for r in self._all(
            f"SELECT {_LINE_COLS} FROM batch_lines WHERE state = 'queued' AND deployment = ? "
            "ORDER BY due_at, id LIMIT ?", (deployment, limit))]

    def queued_of_job(self, job_id: str) -> list[Line]:
        return [_line(r) for r in self._all(
            f"SELECT {_LINE_COLS} FROM batch_lines WHERE job_id = ? AND state = 'queued'", (job_id,))]

    def mark(self, ids: Sequence[str], state: str, *, only_from: Sequence[str] = ("queued",),
             submission_id: str | None = None) -> int:
        """Move lines to `state` (those still in one of `only_from`); return how many moved."""
        moved, now = 0, time.time()
        allowed = ", ".join("?" * len(only_from))
        with self._tx() as conn:
            for i in range(0, len(ids), _CHUNK):
                part = list(ids[i:i + _CHUNK])
                cur = conn.execute(self._q(
                    f"UPDATE batch_lines SET state = ?, submission_id = COALESCE(?, submission_id), updated_at = ? "
                    f"WHERE id IN ({', '.join('?' * len(part))}) AND state IN ({allowed})"),
                    (state, submission_id, now, *part, *only_from))
                moved += cur.rowcount
        return moved

    def finish(self, done: Sequence[tuple[str, str, dict[str, Any]]], *,
               only_from: Sequence[str] = OPEN) -> list[str]:
        """Give lines their final state and result: (line id, state, result). A line already
        final is left as it is (results read twice after a restart change nothing); returns the
        ids that changed."""
        now, changed = time.time(), []
        allowed = ", ".join("?" * len(only_from))
        with self._tx() as conn:
            for line_id, state, result in done:
                cur = conn.execute(self._q(
                    f"UPDATE batch_lines SET state = ?, result = ?, updated_at = ? WHERE id = ? AND state IN ({allowed})"),
                    (state, _dumps(result), now, line_id, *only_from))
                if cur.rowcount:
                    changed.append(line_id)
        return changed

    def add_submission(self, sub: Submission, line_ids: Sequence[str]) -> None:
        """The submission, as `submitting`, and its lines moved to it: before the provider is asked."""
        with self._tx() as conn:
            conn.execute(self._q(f"INSERT INTO batch_submissions ({_SUB_COLS}) VALUES ({', '.join('?' * 10)})"),
                         (sub.id, sub.deployment, sub.provider, sub.state, sub.provider_batch_id, sub.lines,
                          sub.created_at, sub.next_poll_at, sub.poll_interval_s, _dumps(sub.info)))
            now = time.time()
            for i in range(0, len(line_ids), _CHUNK):
                part = list(line_ids[i:i + _CHUNK])
                conn.execute(self._q(
                    f"UPDATE batch_lines SET state = 'submitted', submission_id = ?, updated_at = ? "
                    f"WHERE id IN ({', '.join('?' * len(part))})"), (sub.id, now, *part))

    def set_submission(self, sub_id: str, **fields: Any) -> None:
        names = list(fields)
        values = [_dumps(v) if k == "info" else v for k, v in fields.items()]
        with self._tx() as conn:
            conn.execute(self._q(f"UPDATE batch_submissions SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?"),
                         (*values, sub_id))

    def submissions(self, state: str) -> list[Submission]:
        return [_sub(r) for r in self._all(
            f"SELECT {_SUB_COLS} FROM batch_submissions WHERE state = ? ORDER BY created_at", (state,))]

    def provider_batch_ids(self, provider: str) -> set[str]:
        return {r[0] for r in self._all(
            "SELECT provider_batch_id FROM batch_submissions WHERE provider = ? AND provider_batch_id IS NOT NULL",
            (provider,))}

    def lines_of_submission(self, sub_id: str, state: str | None = None) -> list[Line]:
        sql, params = f"SELECT {_LINE_COLS} FROM batch_lines WHERE submission_id = ?", [sub_id]
        if state is not None:
            sql, params = sql + " AND state = ?", [sub_id, state]
        return [_line(r) for r in self._all(sql + " ORDER BY id", params)]

    def jobs_of_submission(self, sub_id: str) -> list[str]:
        return [r[0] for r in self._all("SELECT DISTINCT job_id FROM batch_lines WHERE submission_id = ?", (sub_id,))]
