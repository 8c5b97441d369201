"""JSON in one place: orjson for speed, with Decimal rendered as a JSON number string-free float."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterator

import orjson

loads = orjson.loads


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return float(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default)


def nesting_exceeds(raw: bytes, obj: Any, limit: int) -> bool:
    """Whether the parsed `obj` (from `raw`) nests objects and arrays deeper than `limit`.

    Cheap for ordinary requests: a document with no more than `limit` brackets in all cannot be
    deeper than that (two C-level counts); otherwise the containers alone are walked, iteratively.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    stack: list[tuple[Any, int]] = [(obj, 1)] if isinstance(obj, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in (node.values() if isinstance(node, dict) else node):
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def jsonl_lines(path: str, kind: str) -> Iterator[tuple[str, Any]]:
    """(`path:line`, parsed value) for each non-blank line of a JSON Lines file; a ThriftyError
    names the file (`kind`: what it holds, for the message) or the first line that is not JSON."""
    import json
    from pathlib import Path

    from thrifty.errors import ThriftyError

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ThriftyError(f"cannot read {kind} file {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise ThriftyError(f"{path}:{number}: not JSON: {exc.msg}") from exc
