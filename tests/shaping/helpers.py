"""Shared bits of the shaping tests: long texts of known size, a fake clock, request bodies."""

from __future__ import annotations

from typing import Any

# One sentence of 29 o200k tokens (the emulator tests use the same filler).
FILLER = ("Policies for the support team cover refunds, shipping delays, account security, billing "
          "disputes and escalation paths for enterprise customers in every region we serve. ")


def long_text(approx_tokens: int, tag: str = "") -> str:
    return tag + FILLER * max(1, approx_tokens // 29)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def tool(name: str, description: str = "") -> dict[str, Any]:
    return {"name": name, "description": description or f"the {name} tool",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}


def anthropic_body(system: Any = None, messages: list[Any] | None = None, tools: list[Any] | None = None,
                   **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 50,
                            "messages": messages or [{"role": "user", "content": "What is the refund window?"}]}
    if system is not None:
        body["system"] = system
    if tools is not None:
        body["tools"] = tools
    body.update(extra)
    return body


def agent_messages(turns: int = 2) -> list[dict[str, Any]]:
    """An agent loop: user asks, assistant calls a tool, the tool answers, ... ending on a user turn."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Find the order status for #1234."}]
    for t in range(turns):
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": f"Looking it up (step {t})."},
            {"type": "tool_use", "id": f"toolu_{t:02d}", "name": "lookup", "input": {"q": f"order 1234 step {t}"}},
        ]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{t:02d}", "content": f"status at step {t}: shipped"},
        ]})
    return messages
