"""A LedgerRow to and from what the databases and the spill/spool files hold.

Money leaves as exact text (`schema.money_to_text`) and comes back as Decimal; booleans are 0/1.
The JSON form (spill file, spool) carries every field, levers included, so a row read back from
disk is equal to the row recorded.
"""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal
from operator import attrgetter
from typing import Any, Iterable, Sequence

from thrifty.contract import LeverSaving
from thrifty.ledger.schema import CALL_COLUMNS, MONEY_FIELDS, LedgerRow, money_to_text

_CALL_FIELDS = attrgetter(*(name for name, _ in CALL_COLUMNS))
_MONEY = tuple([name for name, _ in CALL_COLUMNS].index(f) for f in MONEY_FIELDS)
_STREAM = [name for name, _ in CALL_COLUMNS].index("stream")


# What a database refuses in text: NUL (PostgreSQL's text cannot hold it) and lone surrogates
# (not UTF-8 at all; neither driver can encode them). Both databases get the same cleaned text.
_REFUSED = re.compile("[\x00\ud800-\udfff]")
_TEXT_FIELDS = tuple(f.name for f in dataclasses.fields(LedgerRow)
                     if f.type in ("str", "str | None"))
REPLACEMENT = "\ufffd"


def clean_text(text: str) -> str:
    """`text` with NUL and lone surrogates replaced by U+FFFD (a surrogate pair becomes its
    character)."""
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    if _REFUSED.search(text):
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def clean_row(row: LedgerRow) -> LedgerRow:
    """Make every text field of `row` storable (see clean_text), in place; return `row`.

    A character a database refuses must never cost a row: it is replaced, the row is kept.
    """
    search = _REFUSED.search
    for name in _TEXT_FIELDS:
        value = getattr(row, name)
        if value.__class__ is str and search(value):
            setattr(row, name, clean_text(value))
    if row.levers and any(search(s.lever) or (s.note is not None and search(s.note)) for s in row.levers):
        row.levers = tuple(dataclasses.replace(s, lever=clean_text(s.lever),
                                               note=None if s.note is None else clean_text(s.note))
                           for s in row.levers)
    return row


def unique_rows(rows: Iterable[LedgerRow]) -> list[LedgerRow]:
    """`rows` with each request_id once, the first recorded winning (as a later batch would)."""
    seen: set[Any] = set()
    out = []
    for row in rows:
        if row.request_id not in seen:
            seen.add(row.request_id)
            out.append(row)
    return out


def call_params(row: LedgerRow) -> list[Any]:
    """The values of `row` for the `calls` columns, in CALL_COLUMNS order."""
    values = list(_CALL_FIELDS(row))
    for i in _MONEY:
        values[i] = money_to_text(values[i])
    values[_STREAM] = 1 if row.stream else 0
    return values


def body_params(rows: Iterable[LedgerRow]) -> list[tuple[Any, str | None, str | None]]:
    """The `call_bodies` values of the rows that carry a body."""
    return [(r.request_id, r.request_body, r.response_body) for r in rows
            if r.request_body is not None or r.response_body is not None]


def lever_params(rows: Iterable[LedgerRow]) -> list[tuple[Any, str, str | None, int, str | None]]:
    """The `call_levers` values of `rows`, in LEVER_COLUMNS order."""
    return [(r.request_id, s.lever, money_to_text(s.saved_usd), 1 if s.estimated else 0, s.note)
            for r in rows for s in r.levers]


def lever_from_db(lever: str, saved_usd: str | None, estimated: int, note: str | None) -> LeverSaving:
    return LeverSaving(lever, None if saved_usd is None else Decimal(saved_usd), bool(estimated), note)


def row_from_db(values: Sequence[Any], request_body: str | None = None, response_body: str | None = None,
                levers: Sequence[LeverSaving] = ()) -> LedgerRow:
    """A LedgerRow from the `calls` values in CALL_COLUMNS order (and its bodies and levers)."""
    kw = {name: values[i] for i, (name, _) in enumerate(CALL_COLUMNS)}
    for f in MONEY_FIELDS:
        kw[f] = None if kw[f] is None else Decimal(kw[f])
    kw["stream"] = bool(kw["stream"])
    return LedgerRow(**kw, request_body=request_body, response_body=response_body, levers=tuple(levers))


_JSON_FIELDS = tuple(f.name for f in dataclasses.fields(LedgerRow) if f.name != "levers")
_JSON_VALUES = attrgetter(*_JSON_FIELDS)


def row_to_json(row: LedgerRow) -> dict[str, Any]:
    """A JSON-ready dict of `row`, money as an exact string (the spill, spool and journal format)."""
    out = dict(zip(_JSON_FIELDS, _JSON_VALUES(row)))
    for f in MONEY_FIELDS:
        if out[f] is not None:
            out[f] = money_to_text(out[f])
    out["levers"] = [{"lever": s.lever, "saved_usd": money_to_text(s.saved_usd), "estimated": bool(s.estimated),
                      "note": s.note} for s in row.levers]
    return out


def row_from_json(data: dict[str, Any]) -> LedgerRow:
    """The inverse of row_to_json; keys starting with "_" (annotations) are ignored."""
    kw = {k: v for k, v in data.items() if not k.startswith("_")}
    for f in MONEY_FIELDS:
        if kw.get(f) is not None:
            kw[f] = Decimal(kw[f])
    # A line with no `accounting` was written before there was one: its baseline is the old
    # definition, whatever LedgerRow's default says for rows made now.
    kw.setdefault("accounting", None)
    kw["levers"] = tuple(LeverSaving(lever=s["lever"], estimated=bool(s.get("estimated", False)), note=s.get("note"),
                                     saved_usd=None if s.get("saved_usd") is None else Decimal(s["saved_usd"]))
                         for s in kw.get("levers") or ())
    return LedgerRow(**kw)
