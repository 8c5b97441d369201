"""Coding agents' session ids become the call's task; the user stays the user (api/attribution.py)."""

from __future__ import annotations

import json

import pytest

from thrifty.api.attribution import agent_user, attribute, header_task

SESSION = "235d897e-4d3c-4e9a-b533-8cb7ee8fc394"
DEVICE = "90e77e07cacf247140c12510aaa3f14f7c6b9c2ce51a12d4777d61f774607959"
# What Claude Code 2.1 sends as Anthropic metadata.user_id (seen through the gateway).
CLAUDE_2 = json.dumps({"device_id": DEVICE, "account_uuid": "", "session_id": SESSION}, separators=(",", ":"))


@pytest.mark.parametrize(("user", "expected"), [
    (CLAUDE_2, (DEVICE, SESSION)),
    (json.dumps({"device_id": DEVICE, "account_uuid": "acct-1", "session_id": SESSION}), ("acct-1", SESSION)),
    (f"user_{DEVICE}_account_acct-1_session_{SESSION}", ("acct-1", SESSION)),  # Claude Code 1.x
    (f"user_{DEVICE}_account__session_{SESSION}", (DEVICE, SESSION)),
    ("alice", ("alice", None)),
    ("user_alice", ("user_alice", None)),
    ('{"not": "an agent"}', ('{"not": "an agent"}', None)),
    ("{broken json", ("{broken json", None)),
    ('{"session_id": ""}', ('{"session_id": ""}', None)),
])
def test_agent_user(user, expected):
    assert agent_user(user) == expected


def test_claude_code_body_gives_task_and_user():
    assert attribute(None, None, CLAUDE_2, {}, {}) == (DEVICE, SESSION)


def test_explicit_headers_win():
    headers = {"x-thrifty-task": "ticket-42", "x-claude-code-session-id": SESSION}
    task = header_task(headers)
    assert task == "ticket-42"
    assert attribute("bob", task, CLAUDE_2, headers, {}) == ("bob", "ticket-42")


@pytest.mark.parametrize("name", ["x-claude-code-session-id", "session_id", "conversation_id"])
def test_session_headers_name_the_task(name):
    assert header_task({name: SESSION}) == SESSION
    assert header_task({name: ""}) is None


def test_no_attribution_at_all():
    assert header_task({}) is None
    assert attribute(None, None, None, {}, {"model": "gpt-4o"}) == (None, None)
    assert attribute(None, None, "carol", {}, {}) == ("carol", None)


def test_codex_prompt_cache_key_only_from_codex():
    body = {"model": "gpt-5", "prompt_cache_key": SESSION}
    assert attribute(None, None, None, {"originator": "codex_cli_rs"}, body) == (None, SESSION)
    # Another client's cache key is its own business, not a task.
    assert attribute(None, None, None, {}, body) == (None, None)
    assert attribute(None, "t", None, {"originator": "codex_cli_rs"}, body) == (None, "t")


# -- through the gateway ------------------------------------------------------------------------

def _rows_of_task(stack, task: str, timeout: float = 10.0):
    import time

    from thrifty.ledger import RowFilter, SQLiteLedger

    deadline = time.monotonic() + timeout
    while True:
        rows = SQLiteLedger(str(stack.ledger_path)).rows(RowFilter(task=task))
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_gateway_records_agent_sessions_as_tasks(stack):
    import uuid

    import httpx

    codex, claude = str(uuid.uuid4()), str(uuid.uuid4())
    r = httpx.post(f"{stack.url}/v1/chat/completions", timeout=30,
                   headers={"authorization": f"Bearer {stack.key}", "session_id": codex},
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    meta = json.dumps({"device_id": DEVICE, "account_uuid": "", "session_id": claude})
    r = httpx.post(f"{stack.url}/v1/messages", timeout=30,
                   headers={"x-api-key": stack.key, "anthropic-version": "2023-06-01", "x-thrifty-user": "dev-7"},
                   json={"model": "claude-haiku-4-5", "max_tokens": 20, "metadata": {"user_id": meta},
                         "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    (row,) = _rows_of_task(stack, codex)
    assert (row.task, row.user) == (codex, None)
    (row,) = _rows_of_task(stack, claude)
    assert (row.task, row.user) == (claude, "dev-7")  # the explicit header wins over the body's user
