"""Shared fixtures: a loopback-only network guard and a real emulator + gateway stack."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from thrifty.cli import localstack, processes

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("THRIFTY_DATA_DIR", REPO.parent / "shared" / "data"))

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address):  # type: ignore[no-untyped-def]
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = False
        if not ok:
            raise ConnectionRefusedError(f"tests may only reach loopback, not {host}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def _no_internet():
    socket.socket.connect = _loopback_only  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@dataclass
class Stack:
    emulator: processes.Server
    gateway: processes.Server
    ledger_path: Path
    config_path: Path
    key: str = localstack.DEMO_KEY

    @property
    def url(self) -> str:
        return self.gateway.url

    def billing(self) -> dict:
        """The emulator's billing counter (`/_emulator/billing`): what the provider would invoice."""
        with urllib.request.urlopen(f"{self.emulator.url}/_emulator/billing", timeout=5) as r:
            return json.load(r)


def start_stack(tmp: Path, *, edit=None, emulator_args: list[str] | None = None, **config_kw) -> Stack:
    """Emulator + gateway; `edit(config_dict)` may change the gateway's config before it starts,
    `emulator_args` are passed to `thrifty emulate`."""
    emu = processes.start_emulator(latency_scale=0.0, log_path=str(tmp / "emulator.log"), extra=emulator_args)
    ledger = tmp / "ledger.db"
    config = localstack.local_config(emu.url, f"sqlite:///{ledger}", **config_kw)
    if edit is not None:
        edit(config)
    cfg = localstack.write_config(str(tmp / "thrifty.yaml"), config)
    try:
        gw = processes.start_gateway(cfg, log_path=str(tmp / "gateway.log"))
    except Exception:
        emu.stop()
        raise
    return Stack(emu, gw, ledger, Path(cfg))


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("stack"), timeout_s=3.0)
    yield s
    s.gateway.stop()
    s.emulator.stop()


@pytest.fixture(scope="session")
def openai_spec():
    """OpenAI's OpenAPI spec as a validator; skips when the shared data folder is absent."""
    from tests.openapi_util import load_spec

    path = DATA_DIR / "specs" / "openai-openapi.yaml"
    if not path.is_file():
        pytest.skip(f"OpenAI OpenAPI spec not found at {path} (set THRIFTY_DATA_DIR to the shared data folder)")
    return load_spec(path)



def _redis_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The local Redis; skipped with a reason when it is down, except in CI
    (THRIFTY_REQUIRE_SERVICES=1), where that is a failure."""
    if not _redis_answers("127.0.0.1", 6379):
        reason = "Redis at 127.0.0.1:6379 is not reachable"
        if os.environ.get("THRIFTY_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} and THRIFTY_REQUIRE_SERVICES=1")
        pytest.skip(f"{reason} (start redis-server; THRIFTY_REQUIRE_SERVICES=1 turns this into a failure)")
    return "redis://127.0.0.1:6379/0"


def delete_redis_prefix(url: str, prefix: str) -> None:
    """Remove every key a test run wrote under its own unique prefix."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


CHROMIUM = "/usr/bin/chromium"  # Debian's package (DEVELOPERS.md), driven by Playwright's Python package
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium; skipped with a reason when it or Playwright is missing, except with
    THRIFTY_REQUIRE_SERVICES=1 (CI), where that is a failure."""
    import shutil

    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install playwright)"
    if reason is None and not shutil.which(CHROMIUM):
        reason = f"chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if reason:
        if os.environ.get("THRIFTY_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} and THRIFTY_REQUIRE_SERVICES=1")
        pytest.skip(reason)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
