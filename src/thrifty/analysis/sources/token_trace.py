"""Token-only traces: no text, no cost, only when a call came and how many tokens it moved.

- CSV with a header `timestamp, input_tokens, output_tokens[, model]`, as Azure's public LLM
  inference trace writes it (`TIMESTAMP, ContextTokens, GeneratedTokens`); header names are
  matched case-insensitively, in either spelling.
- JSON Lines as Mooncake's traces (FAST'25): `timestamp` (milliseconds from the trace's start),
  `input_length`, `output_length`, `hash_ids` (ids of the prompt's 512-token blocks, equal ids
  being equal prefixes) -> prefix_hashes.

A token-only trace names no model: cost stays NULL unless the load's `model` option names one to
price it as (then cost_estimated is true). A row's own `model` column, when the CSV has one, wins.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from typing import Any

from thrifty.analysis.sources.base import JsonLinesSource, LoadContext, Source, open_text
from thrifty.analysis.sources.columns import Chunk, chunk_of
from thrifty.analysis.sources.fields import count, parse_ts, text_or_none
from thrifty.analysis.sources.report import BadRecord

# CSV header (lower-cased) -> the field it fills.
HEADER_ALIASES = {
    "timestamp": "timestamp", "ts": "timestamp", "time": "timestamp", "arrival_time": "timestamp",
    "input_tokens": "input_tokens", "contexttokens": "input_tokens", "context_tokens": "input_tokens",
    "prompt_tokens": "input_tokens", "input_length": "input_tokens",
    "output_tokens": "output_tokens", "generatedtokens": "output_tokens", "generated_tokens": "output_tokens",
    "completion_tokens": "output_tokens", "output_length": "output_tokens",
    "model": "model",
}
REQUIRED = ("timestamp", "input_tokens", "output_tokens")


def csv_header_fields(header: list[str]) -> dict[str, int]:
    """Field -> column index of a token-trace header; missing required fields are absent."""
    found: dict[str, int] = {}
    for i, name in enumerate(header):
        field_name = HEADER_ALIASES.get(name.strip().lower())
        if field_name and field_name not in found:
            found[field_name] = i
    return found


def _token_record(ts: float, input_tokens: int, output_tokens: int, model: str | None,
                  ctx: LoadContext) -> dict[str, Any]:
    rec: dict[str, Any] = {"ts": ts, "input_tokens": input_tokens, "output_tokens": output_tokens}
    model = model or ctx.model
    if model:
        rec["model"] = rec["requested_model"] = model
        ctx.pricer.fill(rec)
    return rec


class TokenCSV(Source):
    name = "token-csv"
    description = "CSV timestamp,input_tokens,output_tokens[,model] (Azure's LLM inference trace)"

    def read(self, source: str, ctx: LoadContext) -> Iterator[Chunk]:
        total = os.path.getsize(source) if not source.endswith(".gz") else None
        base = os.path.basename(source)
        with open_text(source) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            counted = _Counted(text)
            rows = csv.reader(counted)
            header = next(rows, None)
            where = csv_header_fields(header or [])
            missing = [f for f in REQUIRED if f not in where]
            if missing:
                ctx.report.add_bad(1, missing[0], "no such column in the header "
                                   f"(want {', '.join(REQUIRED)}[, model]; got {', '.join(header or [])})")
                return
            t_i, in_i, out_i = where["timestamp"], where["input_tokens"], where["output_tokens"]
            m_i = where.get("model")
            width = max(where.values()) + 1
            records: list[dict[str, Any]] = []
            for line_no, row in enumerate(rows, start=2):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) < width:
                    ctx.report.add_bad(line_no, "(line)", f"{len(row)} columns, the header has {len(header)}")
                    continue
                try:
                    rec = _token_record(parse_ts(row[t_i], "timestamp"),
                                        count(row[in_i], "input_tokens", required=True),
                                        count(row[out_i], "output_tokens", required=True),
                                        text_or_none(row[m_i]) if m_i is not None else None, ctx)
                except BadRecord as bad:
                    ctx.report.add_bad(line_no, bad.field, bad.problem)
                    continue
                rec["source_line"], rec["id"] = line_no, f"{base}:{line_no}"
                records.append(rec)
                if len(records) >= ctx.chunk_rows:
                    yield chunk_of(records)
                    records = []
                    if ctx.progress:
                        ctx.progress(counted.chars, total)
            if records:
                yield chunk_of(records)
            if ctx.progress:
                ctx.progress(counted.chars, total if total is not None else counted.chars)


class _Counted:
    """Lines of a text file, counting characters read (bytes for ASCII traces) for progress."""

    def __init__(self, lines: io.TextIOBase) -> None:
        self.lines, self.chars = lines, 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.chars += len(line)
        return line


class Mooncake(JsonLinesSource):
    name = "mooncake"
    description = "JSON Lines timestamp (ms), input_length, output_length, hash_ids (Mooncake's traces)"

    def record(self, obj: dict[str, Any], line: int, ctx: LoadContext) -> dict[str, Any]:
        ts = obj.get("timestamp")
        if ts is None:
            raise BadRecord("timestamp", "missing")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)):
            raise BadRecord("timestamp", "not a number of milliseconds")
        input_tokens = count(obj.get("input_length", obj.get("input_tokens")), "input_length", required=True)
        output_tokens = count(obj.get("output_length", obj.get("output_tokens")), "output_length", required=True)
        rec = _token_record(ts / 1000.0, input_tokens, output_tokens, text_or_none(obj.get("model")), ctx)
        ids = obj.get("hash_ids")
        if ids is not None:
            if not isinstance(ids, list) or any(isinstance(i, (bool, dict, list)) or i is None for i in ids):
                raise BadRecord("hash_ids", "not a list of block ids")
            rec["prefix_hashes"] = [str(i) for i in ids]
        return rec
