"""Fixtures for the emulator tests: real emulator processes on loopback, SDK clients, the OpenAI spec."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import anthropic
import httpx
import openai
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


class Emulator:
    """One `python -m thrifty_emulator` process."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "thrifty_emulator", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"emulator did not start: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.url = line.split("listening on ", 1)[1].split()[0]
        self.http = httpx.Client(base_url=self.url, timeout=10)
        deadline = time.monotonic() + 10
        while True:  # the socket is bound before the line is printed; wait until uvicorn serves it
            try:
                if self.http.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def openai(self, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(**{"base_url": f"{self.url}/v1", "api_key": "emulator-key", "max_retries": 0, **kw})

    def async_openai(self, **kw: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(**{"base_url": f"{self.url}/v1", "api_key": "emulator-key", "max_retries": 0, **kw})

    def anthropic(self, **kw: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(**{"base_url": self.url, "api_key": "emulator-key", "max_retries": 0, **kw})

    def async_anthropic(self, **kw: Any) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(**{"base_url": self.url, "api_key": "emulator-key", "max_retries": 0, **kw})

    def billing(self) -> dict[str, Any]:
        return self.http.get("/_emulator/billing").json()

    def reset(self) -> None:
        assert self.http.post("/_emulator/reset").status_code == 200

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


@pytest.fixture(scope="session")
def start_emulator() -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def start(*args: str) -> Emulator:
        emu = Emulator(list(args))
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.http.close()
        emu.stop()


@pytest.fixture(scope="session")
def _shared_emulator(start_emulator: Callable[..., Emulator]) -> Emulator:
    return start_emulator("--latency-scale", "0", "--seed", "7")


@pytest.fixture
def emulator(_shared_emulator: Emulator) -> Emulator:
    """The shared zero-latency emulator, with billing and prompt caches cleared for this test."""
    _shared_emulator.reset()
    return _shared_emulator


# --- prompts ---------------------------------------------------------------------------------------

_FILLER = ("Policies for the support team cover refunds, shipping delays, account security, billing "
           "disputes and escalation paths for enterprise customers in every region we serve. ")


def _long_text(approx_tokens: int, tag: str = "") -> str:
    return tag + _FILLER * max(1, approx_tokens // 29)


@pytest.fixture(scope="session")
def long_text() -> Callable[..., str]:
    """`long_text(n, tag="")`: text of roughly n o200k tokens (the filler sentence is 29 tokens)."""
    return _long_text
