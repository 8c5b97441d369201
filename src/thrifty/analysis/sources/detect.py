"""Which format a traffic source is in, from its name and its first records.

In order: a PostgreSQL or sqlite URL, or a file that starts with SQLite's magic header, is the
ledger; a folder of (or a single) Parquet file is a `thrifty export parquet` export; a file whose
first line is a CSV header with token columns is a token trace; JSON Lines are told apart by the
keys of their first object: `hash_ids`/`input_length` (Mooncake), `request` (a wire-format log),
LiteLLM's payload keys (`response_cost`, `model_parameters`, `startTime`, ...).
"""

from __future__ import annotations

import csv
import os

import orjson

from thrifty.analysis.sources.base import open_text
from thrifty.analysis.sources.ledger import is_postgres_url, sqlite_path
from thrifty.analysis.sources.litellm import MARKERS as LITELLM_MARKERS
from thrifty.analysis.sources.parquet import parquet_files
from thrifty.analysis.sources.token_trace import REQUIRED, csv_header_fields
from thrifty.errors import ThriftyError

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SNIFF_LINES = 20  # non-empty lines looked at for a JSON object, past leading garbage


def detect(source: str) -> str:
    """The name of the source's format (a key of load.SOURCES); ThriftyError when none fits."""
    if is_postgres_url(source) or source.lower().startswith("sqlite:"):
        return "ledger"
    path = os.path.expanduser(source)
    if os.path.isdir(path):
        if parquet_files(path):
            return "parquet"
        raise ThriftyError(f"{source!r} is a folder without .parquet files")
    if not os.path.isfile(path):
        raise ThriftyError(f"no such file: {source!r}")
    with open(path, "rb") as f:
        head = f.read(len(_SQLITE_MAGIC))
    if head == _SQLITE_MAGIC:
        return "ledger"
    if head[:4] == b"PAR1":
        return "parquet"
    with open_text(path) as f:
        lines = []
        for raw in f:
            if raw.strip():
                lines.append(raw)
            if len(lines) >= _SNIFF_LINES:
                break
    if not lines:
        raise ThriftyError(f"{source!r} is empty")
    first = lines[0].decode("utf-8", "replace")
    if not first.lstrip().startswith("{"):
        header = next(csv.reader([first]))
        if all(f in csv_header_fields(header) for f in REQUIRED):
            return "token-csv"
        raise ThriftyError(f"cannot tell the format of {source!r}: its first line is neither JSON nor a "
                           f"CSV header with {', '.join(REQUIRED)}; use --format")
    for raw in lines:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return _json_kind(obj, source)
    raise ThriftyError(f"cannot tell the format of {source!r}: no JSON object in its first lines")


def _json_kind(obj: dict, source: str) -> str:
    keys = set(obj)
    if "hash_ids" in keys or "input_length" in keys:
        return "mooncake"
    if isinstance(obj.get("request"), dict):
        return "wire"
    if keys & LITELLM_MARKERS or ("messages" in keys and "model" in keys):
        return "litellm"
    if {"input_tokens", "output_tokens"} <= keys and "timestamp" in keys:
        return "mooncake"  # token-only JSON Lines: the same reader, hash ids optional
    raise ThriftyError(f"cannot tell the format of {source!r} from its first object's keys "
                       f"({', '.join(sorted(keys)[:8])}); use --format")


__all__ = ["detect", "sqlite_path"]
