"""Start Thrifty servers (emulator, gateway) as child processes on loopback and wait until ready.

Used by `thrifty demo`, the tests and the benchmarks, so each talks to real servers over HTTP.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen
    log_path: str | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGINT lets the gateway flush its ledger), then kill if it hangs."""
        if self._stopped:
            return
        self._stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(name: str, args: list[str], port: int, *, log_path: str | None = None,
                 env: dict[str, str] | None = None, cpu: int | None = None,
                 ready_timeout: float = 30.0) -> Server:
    """Run `python -m thrifty ARGS` and wait until GET /health answers 200."""
    cmd = [sys.executable, "-m", "thrifty", *args]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    server = Server(name, port, proc, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = ""
            if log_path:
                with open(log_path, "rb") as f:
                    tail = f.read()[-2000:].decode("utf-8", "replace")
            raise RuntimeError(f"{name} exited with code {proc.returncode} before it was ready\n{tail}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=1) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{name} did not become ready within {ready_timeout:g}s")


def start_emulator(*, latency_scale: float = 0.0, log_path: str | None = None, cpu: int | None = None,
                   extra: list[str] | None = None) -> Server:
    port = free_port()
    return start_server("emulator", ["emulate", "--host", "127.0.0.1", "--port", str(port),
                                     "--latency-scale", str(latency_scale), *(extra or [])],
                        port, log_path=log_path, cpu=cpu)


def start_gateway(config_path: str, *, log_path: str | None = None, cpu: int | None = None,
                  env: dict[str, str] | None = None, extra: list[str] | None = None) -> Server:
    port = free_port()
    return start_server("gateway", ["serve", "--config", config_path, "--port", str(port), *(extra or [])],
                        port, log_path=log_path, cpu=cpu, env=env)
