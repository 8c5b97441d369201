"""What `bench/peers.py` runs: the emulator, Thrifty and the LiteLLM proxy as child processes,
their configs, the LiteLLM venv, and the resident memory of a process tree.

Kept free of Thrifty imports: the proxies under test are started as commands (`python -m thrifty
serve`, `litellm --config`), so the benchmark can measure any checkout (`--thrifty-src`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

PAGE = os.sysconf("SC_PAGE_SIZE")
LITELLM_SPEC = "litellm[proxy]"
# Any client that ignores the config and heads for the internet (cost map, telemetry, tokenizer
# downloads) hits this dead proxy instead; loopback, where the emulator lives, is exempt.
NO_INTERNET = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
               "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
               "ALL_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost",
               "no_proxy": "127.0.0.1,localhost"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A server started as `taskset -c CPU CMD...` (taskset execs, so the pid is the server's)."""

    def __init__(self, name: str, cmd: list[str], *, port: int, health: str, log_path: Path,
                 cpu: int, env: dict[str, str] | None = None, cwd: str | None = None,
                 drop_env: tuple[str, ...] = ()) -> None:
        self.name, self.port, self.log_path = name, port, log_path
        full_env = {k: v for k, v in os.environ.items() if k not in drop_env}
        full_env.update(env or {})
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(["taskset", "-c", str(cpu), *cmd], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                                     stdin=subprocess.DEVNULL)
        self.health_url = self.url + health

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float) -> float:
        """Seconds until the health URL answered 200; raises with the log's tail otherwise."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode} before it was "
                                   f"ready; log {self.log_path}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.health_url, timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready within {timeout:g}s; log {self.log_path}:\n{self.tail()}")

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGINT (Thrifty flushes its ledger on it), then SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def __enter__(self) -> "Proc":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- memory -------------------------------------------------------------------------------------

def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants (a LiteLLM with workers forks; Thrifty with one does not)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def hwm_bytes(pid: int) -> int:
    """The kernel's own peak resident size of one process (VmHWM), over its whole life."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(root: int) -> int:
    return sum(rss_bytes(p) for p in tree_pids(root))


def tree_hwm(root: int) -> int:
    return sum(hwm_bytes(p) for p in tree_pids(root))


class RssSampler:
    """Peak of the tree's summed RSS, sampled every `interval` s while the `with` block runs."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root, self.interval = root, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.root))
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.root))


class CoreShare:
    """How busy core `cpu` was during the `with` block, and how much of that was not `root`'s tree.

    `others_pct` is the noise indicator: another process running on the proxy's core.
    """

    def __init__(self, cpu: int, root: int) -> None:
        self.cpu, self.root = cpu, root
        self.busy_pct = self.proxy_pct = self.others_pct = 0.0

    def _core(self) -> tuple[int, int]:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{self.cpu} "):
                    v = [int(x) for x in line.split()[1:]]
                    idle = v[3] + v[4]
                    return sum(v[:8]) - idle, sum(v[:8])
        return 0, 0

    def _proxy(self) -> int:
        total = 0
        for pid in tree_pids(self.root):
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(b")") + 2:].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        return total

    def __enter__(self) -> "CoreShare":
        self._b0, self._t0 = self._core()
        self._p0 = self._proxy()
        return self

    def __exit__(self, *exc: object) -> None:
        b1, t1 = self._core()
        p1 = self._proxy()
        span = max(t1 - self._t0, 1)
        self.busy_pct = 100 * (b1 - self._b0) / span
        self.proxy_pct = 100 * (p1 - self._p0) / span
        self.others_pct = max(0.0, self.busy_pct - self.proxy_pct)


# --- configs ------------------------------------------------------------------------------------

def thrifty_config(emulator_url: str, ledger_path: Path, key: str, *, production: bool) -> dict[str, Any]:
    """One OpenAI-kind provider (the emulator), one deployment, one key.

    pass-through: every lever off (prompt cache, exact and semantic cache), no budgets, no rate
    limits. The ledger cannot be switched off in config, so it stays on in both (SQLite).
    production-like: the levers as shipped (prompt-cache keys and the exact cache on, in memory),
    a monthly USD budget per tenant and a per-tenant rpm limit, both far above what a run spends.
    """
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1"},
        "ledger": {"url": f"sqlite:///{ledger_path}"},
        "providers": {"openai": {"kind": "openai", "base_url": f"{emulator_url}/v1",
                                 "api_key": "emulator-key"}},
        "deployments": {"gpt-4o-mini": {"provider": "openai", "model": "gpt-4o-mini", "tier": "fast"}},
        "keys": {key: {"tenant": "bench"}},
    }
    if production:
        config["levers"] = {"exact_cache": {"enabled": True, "backend": "memory"}}
        config["budgets"] = {
            "budgets": [{"name": "tenant-monthly", "scope": "tenant", "limit_usd": 1_000_000,
                         "window": "month", "action": "block"}],
            "rate_limits": [{"name": "tenant-rpm", "scope": "tenant", "rpm": 1_000_000_000}],
        }
    else:
        config["levers"] = {"prompt_cache": {"enabled": False}, "exact_cache": {"enabled": False},
                            "semantic_cache": {"enabled": False}}
    return config


def litellm_config(emulator_url: str, key: str) -> dict[str, Any]:
    """One model on the emulator's OpenAI-compatible endpoint; master key only, no database."""
    return {
        "model_list": [{"model_name": "gpt-4o-mini",
                        "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{emulator_url}/v1",
                                           "api_key": "emulator-key"}}],
        "general_settings": {"master_key": key},
    }


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- the LiteLLM venv ---------------------------------------------------------------------------

def litellm_env() -> dict[str, str]:
    # LITELLM_LOG=ERROR is LiteLLM's production advice; it also turns uvicorn's access log off,
    # which Thrifty never writes either.
    return {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION",
            **NO_INTERNET}


def check_litellm(python: Path) -> str:
    """LiteLLM's version if the proxy imports under `python`; raises RuntimeError naming what is missing."""
    code = ("import litellm.proxy.proxy_server, importlib.metadata as m; "
            "print(m.version('litellm'))")
    r = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **litellm_env()}, cwd="/")
    if r.returncode != 0:
        missing = [l for l in r.stderr.splitlines() if "ModuleNotFoundError" in l or "ImportError" in l]
        hint = ""
        if missing:
            what = ("'litellm[proxy]'" if "'litellm'" in missing[-1] else "the module it names (its PyPI name)")
            hint = f"\n  {missing[-1].strip()}\n  install {what} by hand: {python} -m pip install ..."
        raise RuntimeError(f"the LiteLLM proxy does not import under {python}:{hint}\n{r.stderr[-1500:]}")
    return r.stdout.strip().splitlines()[-1]


def ensure_litellm(python: str | None, venv: Path) -> tuple[Path, str]:
    """The python of a venv where `litellm[proxy]` imports, made (once, from PyPI) at `venv` if needed.

    Only this step reaches the network (pip); the benchmark itself talks to loopback only.
    """
    if python:
        py = Path(python)
        return py, check_litellm(py)
    py = venv / "bin" / "python"
    if not py.exists():
        print(f"peers: creating a venv for the LiteLLM proxy at {venv} (once; pip install '{LITELLM_SPEC}', "
              "a few minutes, ~800 MB)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", LITELLM_SPEC])
        if r.returncode != 0:
            raise RuntimeError(f"pip install '{LITELLM_SPEC}' failed in {venv} (exit {r.returncode}); fix it there "
                               f"by hand ({py} -m pip install ...) or pass --litellm-python")
    return py, check_litellm(py)


def litellm_command(python: Path, config: Path, port: int) -> list[str]:
    script = python.parent / "litellm"
    head = [str(script)] if script.exists() else [str(python), "-m", "litellm.proxy.proxy_cli"]
    return [*head, "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
