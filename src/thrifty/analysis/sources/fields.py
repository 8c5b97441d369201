"""What every text-bearing source derives the same way: fields from a request body, timestamps,
tags, and a price for calls whose source gave none.

One home for each, so a ledger row, a LiteLLM log line and a wire-format log line of the same
request get the same request_hash, request_type and prefix hashes.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

import orjson

from thrifty.analysis.sources.report import BadRecord
from thrifty.cache.keys import CachePolicy, canonical_request
from thrifty.contract.usage import Usage
from thrifty.pricing import PriceBook
from thrifty.routing.features import features_from_body
from thrifty.wire import Wire

# Characters per prompt-cache block: providers cache in blocks of tokens (Mooncake's hash ids are
# 512-token blocks); at ~4 characters a token, 2048 characters stand in for 512 tokens.
PREFIX_BLOCK_CHARS = 2048
_POLICY = CachePolicy()  # the exact cache's default normalisation (volatile ids, whitespace)


def body_fields(wire: Wire, body: Mapping[str, Any]) -> dict[str, Any]:
    """request_hash, prompt_text, system_text, request_type, max_tokens and prefix_hashes of a
    request body in `wire`'s dialect.

    The hash is the SHA-256 of the exact cache's canonical form (thrifty.cache.keys) with the
    dialect and requested model, without the tenant: two tenants sending the same request are a
    duplicate for a profile, and tenant is a column to group by anyway.
    """
    canonical = canonical_request(wire, dict(body), _POLICY)
    doc = (wire.name, body.get("model"), canonical)
    request_hash = hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
    view = wire.request_view(body)
    features = features_from_body(body, wire)
    return {
        "request_hash": request_hash,
        "prompt_text": view.user_texts[-1] if view.user_texts else None,
        "system_text": view.system or None,
        "request_type": features.request_type,
        "max_tokens": wire.output_cap(dict(body)),
        "prefix_hashes": prefix_hashes(canonical),
    }


def prefix_hashes(canonical: Mapping[str, Any]) -> list[str]:
    """Ids of the prompt's successive blocks, each the hash of the whole prompt up to its end, so
    two requests share the first k ids exactly when they share the first k blocks (what a
    provider's prefix cache can reuse). The prompt is tools, system and messages in the order a
    provider reads them; the last, partial block gets an id too, as in Mooncake's traces."""
    prompt = orjson.dumps([canonical.get("tools"), canonical.get("system"), canonical.get("messages")],
                          option=orjson.OPT_SORT_KEYS)
    out: list[str] = []
    h = hashlib.sha256()
    for start in range(0, len(prompt), PREFIX_BLOCK_CHARS):
        h.update(prompt[start:start + PREFIX_BLOCK_CHARS])
        out.append(h.copy().hexdigest()[:16])
    return out


def parse_ts(value: Any, field_name: str) -> float:
    """Unix seconds from a number (seconds, or milliseconds when it can only be those) or an
    ISO-8601 text (UTC when it names no zone). Anything else is a BadRecord."""
    if isinstance(value, bool) or value is None:
        raise BadRecord(field_name, "missing" if value is None else "not a time")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return _iso_seconds(text, field_name)
    else:
        raise BadRecord(field_name, f"not a time: {type(value).__name__}")
    if not math.isfinite(number):
        raise BadRecord(field_name, "not a finite number")
    return number / 1000.0 if number > 1e11 else number  # 1e11 s is the year 5138; ms it is


def _iso_seconds(text: str, field_name: str) -> float:
    clean = text.replace("Z", "+00:00") if text.endswith("Z") else text
    if "." in clean:
        # Python reads at most 6 fractional digits; Azure's trace writes 7.
        head, _, rest = clean.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        clean = head + "." + rest[:min(digits, 6)] + rest[digits:]
    try:
        moment = datetime.fromisoformat(clean)
    except ValueError:
        raise BadRecord(field_name, f"not a time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def count(value: Any, field_name: str, *, required: bool = False) -> int | None:
    """A token count: a non-negative whole number (integral floats and digit strings accepted)."""
    if value is None or value == "":
        if required:
            raise BadRecord(field_name, "missing")
        return None
    if isinstance(value, bool):
        raise BadRecord(field_name, "not a token count: a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise BadRecord(field_name, f"not a token count: {str(value)[:40]!r}")
    if number < 0:
        raise BadRecord(field_name, "negative")
    return number


def money(value: Any, field_name: str) -> Decimal | None:
    """A cost in USD as an exact Decimal (a JSON float's shortest repr), or None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadRecord(field_name, "not an amount: a boolean")
    try:
        amount = Decimal(value) if isinstance(value, (int, str, Decimal)) else Decimal(repr(float(value)))
    except (InvalidOperation, TypeError, ValueError):
        raise BadRecord(field_name, f"not an amount: {str(value)[:40]!r}") from None
    if not amount.is_finite() or amount < 0:
        raise BadRecord(field_name, "not a non-negative finite amount")
    return amount


def text_or_none(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


# Tag keys a log may carry, in any of their spellings -> the traffic column they fill.
TAG_COLUMNS = {
    "feature": "feature", "x-thrifty-feature": "feature",
    "call_site": "call_site", "call-site": "call_site", "callsite": "call_site", "x-thrifty-call-site": "call_site",
    "task": "task", "x-thrifty-task": "task", "session_id": "task", "session": "task", "trace_id": "task",
    "user": "user_id", "user_id": "user_id", "end_user": "user_id", "x-thrifty-user": "user_id",
    "cohort": "user_cohort", "user_tier": "user_cohort", "user_cohort": "user_cohort",
    "x-thrifty-user-tier": "user_cohort",
    "tenant": "tenant", "team": "tenant", "team_id": "tenant",
}


def tag_columns(tags: Any) -> dict[str, str]:
    """The traffic columns named by tags: a mapping ({"feature": "search"}) or a list of
    "key:value" / "key=value" strings; the first plain string of a list is taken as the feature."""
    out: dict[str, str] = {}
    if isinstance(tags, Mapping):
        for key, value in tags.items():
            column = TAG_COLUMNS.get(str(key).lower())
            if column and column not in out and value not in (None, ""):
                out[column] = str(value)
    elif isinstance(tags, list):
        plain: list[str] = []
        for tag in tags:
            if not isinstance(tag, str):
                continue
            key, sep, value = tag.partition(":") if ":" in tag else tag.partition("=")
            column = TAG_COLUMNS.get(key.strip().lower()) if sep else None
            if column and column not in out and value.strip():
                out[column] = value.strip()
            elif not sep:
                plain.append(tag)
        if plain and "feature" not in out:
            out["feature"] = plain[0]
    return out


def billable(status: int | None) -> bool:
    """Whether a call with this status is priced when its source gave no cost: a failed call
    is not billed by the providers, so it is not given a made-up price (its cost stays NULL)."""
    return status is None or 200 <= status < 400


class Pricer:
    """Prices calls whose source gave no cost from their tokens, with genai-prices (PriceBook).
    Remembers each (model, usage) it priced: token-only traces repeat the same shapes."""

    def __init__(self, book: PriceBook | None = None) -> None:
        self.book = book or PriceBook()
        self._memo: dict[tuple, Decimal | None] = {}

    def price(self, model: str | None, input_tokens: int | None, output_tokens: int | None, *,
              cached_tokens: int | None = None, cache_write_tokens: int | None = None,
              reasoning_tokens: int | None = None) -> Decimal | None:
        if not model or input_tokens is None or output_tokens is None:
            return None
        cached, written = cached_tokens or 0, cache_write_tokens or 0
        key = (model, input_tokens, output_tokens, cached, written, reasoning_tokens or 0)
        try:
            return self._memo[key]
        except KeyError:
            pass
        usage = Usage(input_tokens=max(0, input_tokens - cached - written), cache_read_tokens=cached,
                      cache_write_5m_tokens=written, output_tokens=output_tokens,
                      reasoning_tokens=reasoning_tokens or 0)
        cost = self.book.cost(model, usage)
        total = None if cost is None else cost.total
        if len(self._memo) < 200_000:
            self._memo[key] = total
        return total

    def fill(self, record: dict[str, Any]) -> None:
        """Set cost_usd (and cost_estimated) on a record that has tokens and a model but no cost."""
        if record.get("cost_usd") is not None:
            record.setdefault("cost_estimated", False)
            return
        if not billable(record.get("status")):
            return
        cost = self.price(record.get("model"), record.get("input_tokens"), record.get("output_tokens"),
                          cached_tokens=record.get("cached_tokens"),
                          cache_write_tokens=record.get("cache_write_tokens"),
                          reasoning_tokens=record.get("reasoning_tokens"))
        if cost is not None:
            record["cost_usd"], record["cost_estimated"] = cost, True
