"""One stored exact-cache answer, and its byte format with an integrity check.

Byte format (version 1)::

    b"TXC" | version (1 byte) | BLAKE2b-128 digest of payload (16 bytes) | payload

`payload` is orjson JSON: ``{"key", "surface", "response", "served_model", "tier", "usage",
"cost_usd", "created_at", "ttl_s"}`` and, since the savings redesign, ``"baseline_usd"`` (what the
call that filled it would have cost sent directly; entries written before it lack the key). The cache key is stored inside and checked on decode, so a
value that landed under the wrong key (a bug, a manual copy in Redis) is never served. Money is
kept as a decimal string. Anything that does not decode exactly is rejected with CorruptEntry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from thrifty.contract.usage import Usage
from thrifty.errors import CorruptEntry

MAGIC = b"TXC"
FORMAT_VERSION = 1
_HEADER = len(MAGIC) + 1 + 16
_USAGE_FIELDS = tuple(f.name for f in fields(Usage))


@dataclass(frozen=True, slots=True)
class Entry:
    """A complete answer in the client's format, with what the original call cost.

    `response` is an OpenAI `chat.completion` dict on the OpenAI surface and an Anthropic
    `message` dict on the Anthropic surface, exactly as the client received it the first time.
    """

    surface: str
    response: dict[str, Any]
    usage: Usage
    cost_usd: Decimal | None
    served_model: str | None = None
    tier: str | None = None
    created_at: float = 0.0
    ttl_s: int = 0
    baseline_usd: Decimal | None = None  # the filling call's baseline (docs/savings.md)

    @property
    def expires_at(self) -> float:
        return self.created_at + self.ttl_s

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


def encode_entry(entry: Entry, key: str) -> bytes:
    doc = {
        "key": key,
        "surface": entry.surface,
        "response": entry.response,
        "served_model": entry.served_model,
        "tier": entry.tier,
        "usage": {name: getattr(entry.usage, name) for name in _USAGE_FIELDS},
        "cost_usd": None if entry.cost_usd is None else format(entry.cost_usd, "f"),
        "created_at": entry.created_at,
        "ttl_s": entry.ttl_s,
        "baseline_usd": None if entry.baseline_usd is None else format(entry.baseline_usd, "f"),
    }
    payload = orjson.dumps(doc)
    return MAGIC + bytes((FORMAT_VERSION,)) + _digest(payload) + payload


def decode_entry(data: bytes, key: str) -> Entry:
    """The entry stored under `key`; raises CorruptEntry for anything else."""
    if len(data) < _HEADER or data[:3] != MAGIC:
        raise CorruptEntry("not an exact-cache entry (bad header or truncated)")
    if data[3] != FORMAT_VERSION:
        raise CorruptEntry(f"entry format version {data[3]} is not supported")
    payload = data[_HEADER:]
    if _digest(payload) != data[4:_HEADER]:
        raise CorruptEntry("checksum mismatch")
    try:
        doc = orjson.loads(payload)
        if doc["key"] != key:
            raise CorruptEntry("entry belongs to another key")
        usage = doc["usage"]
        cost = doc["cost_usd"]
        baseline = doc.get("baseline_usd")
        entry = Entry(
            surface=_str(doc["surface"]),
            response=_dict(doc["response"]),
            usage=Usage(**{name: _int(usage[name]) for name in _USAGE_FIELDS}),
            cost_usd=None if cost is None else Decimal(_str(cost)),
            served_model=_opt_str(doc["served_model"]),
            tier=_opt_str(doc["tier"]),
            created_at=float(doc["created_at"]),
            ttl_s=_int(doc["ttl_s"]),
            baseline_usd=None if baseline is None else Decimal(_str(baseline)),
        )
    except CorruptEntry:
        raise
    except (ValueError, KeyError, TypeError, InvalidOperation) as err:
        raise CorruptEntry(f"malformed entry: {type(err).__name__}: {err}") from None
    return entry


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {type(v).__name__}")
    return v


def _opt_str(v: Any) -> str | None:
    return None if v is None else _str(v)


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"expected an integer, got {type(v).__name__}")
    return v


def _dict(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise TypeError(f"expected an object, got {type(v).__name__}")
    return v
