"""The Thrifty ledger (SQLite file or PostgreSQL URL), read in chunks with the database's own
driver (sqlite3, psycopg): DuckDB's sqlite/postgres scanners would need extensions downloaded.

`calls.prompt_tokens` is the uncached input, so input_tokens = prompt_tokens + cached_tokens +
cache_write_tokens. When the ledger stored bodies (`call_bodies`), the request's hash, texts,
type and output cap come from the request body through the wire object of the row's `surface`,
exactly as for a log file; otherwise request_hash is the exact-cache key the gateway recorded.
Ledgers from before a migration lack its columns; those read as NULL.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import orjson

from thrifty import wire as wires
from thrifty.analysis.sources.base import LoadContext, Source
from thrifty.analysis.sources.columns import Chunk
from thrifty.analysis.sources.fields import billable, body_fields
from thrifty.errors import ThriftyError

# A column an old ledger lacks (added by a later migration) reads as NULL.
_SELECT: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (traffic column, SQL expression, calls columns it needs)
    ("id", "c.request_id", ("request_id",)),
    ("ts", "c.started_at", ("started_at",)),
    ("tenant", "c.tenant", ("tenant",)),
    ("feature", "c.feature", ("feature",)),
    ("user_id", "c.user_id", ("user_id",)),
    ("task", "c.task", ("task",)),
    ("call_site", "c.call_site", ("call_site",)),
    ("provider", "c.provider", ("provider",)),
    ("requested_model", "c.requested_model", ("requested_model",)),
    ("model", "COALESCE(c.served_model, c.requested_model)", ("served_model", "requested_model")),
    ("tier", "c.tier", ("tier",)),
    ("lane", "c.lane", ("lane",)),
    ("cache", "c.cache", ("cache",)),
    ("status", "c.status", ("status",)),
    ("error", "c.error_type", ("error_type",)),
    ("stream", "c.stream", ("stream",)),
    ("input_tokens", "c.prompt_tokens + c.cached_tokens + c.cache_write_tokens",
     ("prompt_tokens", "cached_tokens", "cache_write_tokens")),
    ("cached_tokens", "c.cached_tokens", ("cached_tokens",)),
    ("cache_write_tokens", "c.cache_write_tokens", ("cache_write_tokens",)),
    ("output_tokens", "c.completion_tokens", ("completion_tokens",)),
    ("reasoning_tokens", "c.reasoning_tokens", ("reasoning_tokens",)),
    ("cost_usd", "c.cost_usd", ("cost_usd",)),
    ("request_hash", "c.request_hash", ("request_hash",)),
)
_BODY_COLUMNS = ("request_body", "response_body")
_FROM_BODY = ("request_hash", "prompt_text", "system_text", "request_type", "max_tokens", "prefix_hashes")


def is_postgres_url(source: str) -> bool:
    return source.lower().startswith(("postgresql://", "postgres://"))


def sqlite_path(source: str) -> str:
    """The file of `sqlite:///relative.db`, `sqlite:////absolute.db` or a plain path."""
    if not source.lower().startswith("sqlite:"):
        return os.path.expanduser(source)
    parts = urlsplit(source)
    if parts.netloc or parts.query or parts.fragment:
        raise ThriftyError(f"{source!r}: write sqlite:///relative.db or sqlite:////absolute.db")
    return os.path.expanduser(unquote(parts.path)[1:])


class Ledger(Source):
    name = "ledger"
    description = "the Thrifty ledger: sqlite:///PATH, a .db file, or postgresql://USER@HOST/DB"

    def __init__(self, since: float | None = None, until: float | None = None) -> None:
        self.since, self.until = since, until  # started_at window, [since, until)

    def read(self, source: str, ctx: LoadContext) -> Iterator[Chunk]:
        with _connect(source) as (conn, dialect):
            have = _columns(conn, "calls")
            select = [expr if all(c in have for c in needs) else "NULL" for _, expr, needs in _SELECT]
            select.append("c.surface" if "surface" in have else "NULL")
            where, params = [], []
            if self.since is not None:
                where.append(f"c.started_at >= {dialect.mark}")
                params.append(self.since)
            if self.until is not None:
                where.append(f"c.started_at < {dialect.mark}")
                params.append(self.until)
            tail = (" WHERE " + " AND ".join(where)) if where else ""
            total = _scalar(conn, f"SELECT count(*) FROM calls c{tail}", params)
            # Bodies are fetched per chunk, and only when the ledger kept any: a join would cost
            # a lookup per row on the (common) ledger that stores none.
            bodies = ("request_id" in _columns(conn, "call_bodies")
                      and bool(_scalar(conn, "SELECT count(*) FROM (SELECT 1 FROM call_bodies LIMIT 1) x", [])))
            # No ORDER BY: a plain scan is the fastest read, and no analysis depends on row order.
            cur = dialect.scan_cursor(conn)
            cur.execute(f"SELECT {', '.join(select)} FROM calls c{tail}", params)
            done = 0
            while True:
                rows = cur.fetchmany(ctx.chunk_rows)
                if not rows:
                    break
                chunk = _chunk(rows, done, ctx)
                surfaces = chunk.pop("_surface")
                if bodies:
                    _add_bodies(chunk, surfaces, _bodies(conn, dialect, chunk["id"]))
                done += len(rows)
                yield chunk
                if ctx.progress:
                    ctx.progress(done, total)
            if ctx.progress:
                ctx.progress(done, total)


def _chunk(rows: list[tuple], offset: int, ctx: LoadContext) -> Chunk:
    names = [name for name, _, _ in _SELECT] + ["_surface"]
    chunk: Chunk = {name: list(values) for name, values in zip(names, zip(*rows))}
    chunk["source_line"] = list(range(offset + 1, offset + 1 + len(rows)))
    costs = chunk["cost_usd"]
    chunk["cost_estimated"] = [None if c is None else False for c in costs]
    for i, cost in enumerate(costs):
        if cost is None and billable(chunk["status"][i]):
            priced = ctx.pricer.price(chunk["model"][i], chunk["input_tokens"][i], chunk["output_tokens"][i],
                                      cached_tokens=chunk["cached_tokens"][i],
                                      cache_write_tokens=chunk["cache_write_tokens"][i],
                                      reasoning_tokens=chunk["reasoning_tokens"][i])
            if priced is not None:
                costs[i], chunk["cost_estimated"][i] = priced, True
    return chunk


def _add_bodies(chunk: Chunk, surfaces: list[str | None],
                found: dict[str, tuple[str | None, str | None]]) -> None:
    if not found:
        return
    n = len(surfaces)
    for column in (*_BODY_COLUMNS, *_FROM_BODY):
        chunk.setdefault(column, [None] * n)
    for i, request_id in enumerate(chunk["id"]):
        if request_id not in found:
            continue
        request_text, response_text = found[request_id]
        chunk["request_body"][i], chunk["response_body"][i] = request_text, response_text
        if request_text is None:
            continue
        try:
            body = orjson.loads(request_text)
            wire = wires.get(surfaces[i])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue  # a body the gateway could not parse either; the row itself is sound
        if isinstance(body, dict):
            for column, value in body_fields(wire, body).items():
                chunk[column][i] = value


def _bodies(conn: Any, dialect: "_Dialect", ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
    cur = conn.cursor()
    cur.execute(f"SELECT request_id, request_body, response_body FROM call_bodies WHERE {dialect.id_in}",
                [dialect.id_list(ids)])
    found = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
    cur.close()
    return found


def _columns(conn: Any, table: str) -> set[str]:
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT * FROM {table} WHERE 1 = 0")
        names = {d[0] for d in cur.description}
        cur.close()
        return names
    except Exception:  # no such table: an old or foreign database
        if hasattr(conn, "rollback"):
            conn.rollback()
        return set()


def _scalar(conn: Any, sql: str, params: list[Any]) -> int:
    cur = conn.cursor()
    cur.execute(sql, params)
    value = cur.fetchone()[0]
    cur.close()
    return int(value)


@dataclass(frozen=True)
class _Dialect:
    """What differs between the two databases' SQL and drivers, for this reader."""

    mark: str  # the parameter placeholder
    id_in: str  # "request_id is one of the ids" with one parameter: the id list
    id_list: Callable[[list[str]], Any]
    scan_cursor: Callable[[Any], Any]  # the cursor for the big scan


_SQLITE = _Dialect("?", "request_id IN (SELECT value FROM json_each(?))", lambda ids: orjson.dumps(ids).decode(),
                   lambda conn: conn.cursor())
# A server-side cursor: the scan streams instead of landing in client memory at once.
_POSTGRES = _Dialect("%s", "request_id = ANY(%s)", list, lambda conn: conn.cursor(name="thrifty_traffic_scan"))


@contextmanager
def _connect(source: str) -> Iterator[tuple[Any, _Dialect]]:
    """The connection and its dialect for a ledger URL or path."""
    if is_postgres_url(source):
        try:
            import psycopg
        except ImportError as exc:
            raise ThriftyError("reading a PostgreSQL ledger needs psycopg (pip install 'psycopg[binary]')") from exc
        try:
            conn = psycopg.connect(source, connect_timeout=10)
        except psycopg.Error as exc:
            raise ThriftyError(f"cannot connect to the PostgreSQL ledger: {str(exc).splitlines()[0]}") from None
        try:
            if not _columns(conn, "calls"):
                raise ThriftyError("the PostgreSQL database has no Thrifty ledger (no `calls` table)")
            yield conn, _POSTGRES
        finally:
            conn.close()
        return
    path = sqlite_path(source)
    if not os.path.isfile(path):
        raise ThriftyError(f"no ledger file at {path!r}")
    conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
    try:
        if not _columns(conn, "calls"):
            raise ThriftyError(f"{path!r} is not a Thrifty ledger (no `calls` table)")
        yield conn, _SQLITE
    finally:
        conn.close()
