"""Typed queries over the ledger: a RowFilter, compiled to SQL here and nowhere else.

Callers say which calls they mean with a frozen RowFilter, never with SQL: the compiled condition
uses only column names from the schema and the driver's placeholder, every value travels as a
parameter, and the same filter means the same rows on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, Sequence

from thrifty.ledger.codec import lever_from_db, row_from_db
from thrifty.ledger.driver import Dialect, Driver
from thrifty.ledger.schema import CALL_COLUMNS, GROUP_COLUMNS, LEVER_COLUMNS, LedgerRow


class _Null:
    """The marker for "this field is empty" in a RowFilter (None there means "any value")."""

    _instance: "_Null | None" = None

    def __new__(cls) -> "_Null":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NULL"

    def __reduce__(self) -> str:
        return "NULL"


NULL = _Null()


@dataclass(frozen=True, slots=True)
class RowFilter:
    """Which calls a query covers. Each field set narrows it (they AND together); None leaves
    a field free, and NULL asks for calls where it is empty, e.g. `RowFilter(user=NULL)`.

    Text compares exactly (case and all); prefixes too, with no wildcard characters.
    """

    request_id: str | None = None
    request_ids: tuple[str, ...] | None = None  # any of these (an empty tuple: none)
    request_id_prefix: str | None = None  # e.g. a call and the retries it led to ("rid", "rid.1")
    tenant: str | _Null | None = None
    feature: str | _Null | None = None
    user: str | _Null | None = None
    task: str | _Null | None = None
    call_site: str | _Null | None = None
    surface: str | None = None
    provider: str | _Null | None = None
    requested_model: str | _Null | None = None
    served_model: str | _Null | None = None
    tier: str | _Null | None = None
    cache: str | None = None  # "miss", "exact", "semantic", "bypass", "unavailable"
    status: int | None = None
    error_type: str | _Null | None = None
    error_type_prefix: str | None = None  # e.g. "escalated:"
    since: float | None = None  # started_at >= since (unix seconds)
    until: float | None = None  # started_at < until
    priced: bool | None = None  # True: the cost is known; False: it is not
    stream: bool | None = None

    def __post_init__(self) -> None:
        ids = self.request_ids
        if ids is not None:
            if isinstance(ids, (str, bytes)):  # would be read as a list of characters
                raise TypeError("RowFilter.request_ids takes a sequence of ids, not one string")
            object.__setattr__(self, "request_ids", tuple(ids))
        for name in ("request_id_prefix", "error_type_prefix"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"RowFilter.{name} must be a string")


# Fields compared for equality (or NULL), and their columns.
_COLUMN = dict(CALL_COLUMNS)
_EQUALS = tuple(f.name for f in fields(RowFilter) if f.name in _COLUMN)
_PREFIXES = (("request_id_prefix", "request_id"), ("error_type_prefix", "error_type"))


def compile_where(where: RowFilter | None, dialect: Dialect) -> tuple[str, list[Any]]:
    """(` WHERE ...` or "", parameters) on the `calls` columns, in `dialect`'s placeholders."""
    if where is None:
        return "", []
    if not isinstance(where, RowFilter):
        raise TypeError(f"ledger queries take a RowFilter, not {type(where).__name__} "
                        "(SQL fragments are no longer accepted)")
    mark = dialect.mark
    terms: list[str] = []
    params: list[Any] = []
    for name in _EQUALS:
        value = getattr(where, name)
        if value is None:
            continue
        if value is NULL:
            terms.append(f"{_COLUMN[name]} IS NULL")
        else:
            terms.append(f"{_COLUMN[name]} = {mark}")
            params.append(1 if value is True else 0 if value is False else value)
    if where.request_ids is not None:
        if where.request_ids:
            terms.append(f"request_id IN ({', '.join([mark] * len(where.request_ids))})")
            params.extend(where.request_ids)
        else:
            terms.append("1 = 0")
    for name, column in _PREFIXES:
        prefix = getattr(where, name)
        if prefix is not None:
            # substr, not LIKE: no wildcards to escape, and case-sensitive on both databases
            # (SQLite's LIKE ignores ASCII case). Both count characters, not bytes.
            terms.append(f"substr({column}, 1, {len(prefix):d}) = {mark}")
            params.append(prefix)
    if where.since is not None:
        terms.append(f"started_at >= {mark}")
        params.append(where.since)
    if where.until is not None:
        terms.append(f"started_at < {mark}")
        params.append(where.until)
    if where.priced is not None:
        terms.append("cost_usd IS NOT NULL" if where.priced else "cost_usd IS NULL")
    return (" WHERE " + " AND ".join(terms) if terms else ""), params


def group_column(group_by: str) -> str:
    col = GROUP_COLUMNS.get(group_by)
    if col is None:
        raise ValueError(f"cannot group by {group_by!r}; choose one of {', '.join(GROUP_COLUMNS)}")
    return col


_SELECT_ROWS = ("SELECT {cols}, b.request_body, b.response_body "
                "FROM (SELECT * FROM calls{cond}) AS c "
                "LEFT JOIN call_bodies AS b ON b.request_id = c.request_id "
                "ORDER BY c.started_at, c.request_id{order}")
_SELECT_LEVERS = (f"SELECT {', '.join(LEVER_COLUMNS)} FROM call_levers "
                  "WHERE request_id IN (SELECT request_id FROM calls{cond})")
_SELECT_TOTALS = ("SELECT {col}, COUNT(*), {cost}, "
                  "SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END), SUM(prompt_tokens), "
                  "SUM(cached_tokens), SUM(cache_write_tokens), SUM(completion_tokens), "
                  "{baseline}, {saved_pc}, {saved_rc} "
                  "FROM calls{cond} GROUP BY {col}")


def select_rows(driver: Driver, where: RowFilter | None) -> list[LedgerRow]:
    """Written rows, oldest first (ties by request_id, byte order), with bodies and levers."""
    cond, params = compile_where(where, driver.dialect)
    sql = _SELECT_ROWS.format(cols=", ".join(f"c.{col}" for _, col in CALL_COLUMNS), cond=cond,
                              order=driver.dialect.text_order)
    with driver.reader() as conn:
        found = conn.execute(sql, params).fetchall()
        # A second statement may see rows committed after the first: their levers are
        # ignored, and a row seen above always has its levers (one transaction wrote both).
        levers: dict[Any, list] = {}
        for rid, *lever in conn.execute(_SELECT_LEVERS.format(cond=cond), params).fetchall():
            levers.setdefault(rid, []).append(lever_from_db(*lever))
    return [row_from_db(r[:-2], r[-2], r[-1], levers.get(r[0], ())) for r in found]


def select_totals(driver: Driver, group_by: str, where: RowFilter | None) -> list[dict[str, Any]]:
    """Per value of `group_by`: calls, the exact sum of known costs (`unpriced_calls` says how
    many had no price), token sums and the baseline/saved columns; most expensive first."""
    col = group_column(group_by)
    cond, params = compile_where(where, driver.dialect)
    money = driver.dialect.money_sum
    sql = _SELECT_TOTALS.format(col=col, cond=cond, cost=money.format("cost_usd"),
                                baseline=money.format("baseline_cost_usd"),
                                saved_pc=money.format("saved_prompt_cache_usd"),
                                saved_rc=money.format("saved_response_cache_usd"))
    with driver.reader() as conn:
        found = conn.execute(sql, params).fetchall()
    return _totals(found)


def select_count(driver: Driver, where: RowFilter | None) -> int:
    cond, params = compile_where(where, driver.dialect)
    with driver.reader() as conn:
        return conn.execute(f"SELECT COUNT(*) FROM calls{cond}", params).fetchone()[0]


def _totals(found: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Money arrives as exact text (SQLite) or NUMERIC (PostgreSQL) and leaves as Decimal."""
    out = [{"key": key, "calls": calls, "cost_usd": Decimal(cost), "unpriced_calls": unpriced,
            "prompt_tokens": prompt, "cached_tokens": cached, "cache_write_tokens": written,
            "completion_tokens": completion, "baseline_cost_usd": Decimal(baseline),
            "saved_prompt_cache_usd": Decimal(saved_pc), "saved_response_cache_usd": Decimal(saved_rc)}
           for (key, calls, cost, unpriced, prompt, cached, written, completion,
                baseline, saved_pc, saved_rc) in found]
    out.sort(key=lambda t: (-t["cost_usd"], -t["calls"], t["key"] is None, t["key"] or ""))
    return out
