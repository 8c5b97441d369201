"""Who made a call and for which task: the `x-thrifty-*` headers, else what coding agents send.

Coding agents already say which session a call belongs to; that session is recorded as the call's
task, so per-task budgets (`scope: task`) work for them without client changes:

- Claude Code sends the header `X-Claude-Code-Session-Id`, and puts a JSON object into Anthropic's
  `metadata.user_id`: `{"device_id": ..., "account_uuid": ..., "session_id": ...}` (2.x; 1.x sent
  `user_<hash>_account_<uuid>_session_<uuid>`). Its user is the account, else the device.
- Codex CLI sends the header `session_id` (older versions `conversation_id` too) and, on the
  Responses API, the same id as `prompt_cache_key`, which counts only with its `originator: codex_*`
  header (other clients choose cache keys for their own reasons).

An explicit `x-thrifty-task` / `x-thrifty-user` header always wins.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

# Header names as the ASGI layer gives them (lower case), in order of preference.
_SESSION_HEADERS = ("x-claude-code-session-id", "session_id", "session-id", "conversation_id", "conversation-id")
_LEGACY_CLAUDE_USER = re.compile(r"^user_(?P<user>[^_]*)_account_(?P<account>[^_]*)_session_(?P<session>[^_]+)$")


def header_task(headers: dict[str, str]) -> str | None:
    """The task the headers name: `x-thrifty-task`, else an agent's session header."""
    for name in ("x-thrifty-task", *_SESSION_HEADERS):
        value = headers.get(name)
        if value:
            return value
    return None


def agent_user(user: str) -> tuple[str, str | None]:
    """The user and session inside a coding agent's user string; a plain user string is kept."""
    if user.startswith("{"):
        try:
            meta = orjson.loads(user)
        except orjson.JSONDecodeError:
            return user, None
        if isinstance(meta, dict) and isinstance(meta.get("session_id"), str):
            who = next((meta[k] for k in ("account_uuid", "device_id")
                        if isinstance(meta.get(k), str) and meta[k]), None)
            return who or user, meta["session_id"] or None
        return user, None
    m = _LEGACY_CLAUDE_USER.match(user)
    if m:
        return m["account"] or m["user"] or user, m["session"]
    return user, None


def attribute(user: str | None, task: str | None, body_user: str | None, headers: dict[str, str],
              body: dict[str, Any]) -> tuple[str | None, str | None]:
    """The call's (user, task): `user`/`task` as the headers set them (None where they did not),
    completed from the user the body names and, for Codex, its `prompt_cache_key`."""
    session = None
    if body_user is not None:
        parsed_user, session = agent_user(body_user)
        user = user if user is not None else parsed_user
    if task is None:
        task = session
    if task is None and headers.get("originator", "").startswith("codex"):
        key = body.get("prompt_cache_key")
        task = key if isinstance(key, str) and key else None
    return user, task
