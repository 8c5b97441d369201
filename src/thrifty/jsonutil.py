"""JSON in one place: orjson for speed, with Decimal rendered as a JSON number string-free float."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

loads = orjson.loads


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return float(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default)
