"""`thrifty serve`: run the gateway."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os

from thrifty.errors import ThriftyError

SERVERS = ("uvicorn", "granian")
# `python bench/overhead.py --servers uvicorn granian` (gateway pinned to one core): uvicorn served
# 8-11% more req/s at c=16 and c=64 and the same at c=1. Under granian every request crosses from its
# Rust I/O thread to the Python event-loop thread and back, which costs on one core.
DEFAULT_SERVER = "uvicorn"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the gateway",
                       description="Run the Thrifty gateway: an OpenAI-compatible /v1/chat/completions "
                                   "and an Anthropic-compatible /v1/messages in front of the providers "
                                   "named in the config file.")
    p.add_argument("--config", required=True, metavar="FILE", help="YAML config file (see README)")
    p.add_argument("--host", help="listen address (default: server.host in the config)")
    p.add_argument("--port", type=int, help="listen port (default: server.port in the config)")
    p.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER,
                   help=f"HTTP server: uvicorn (httptools + uvloop, with the header size and "
                        f"header-read time limits of server:) or granian (Rust, hyper; uvloop); "
                        f"one worker either way (default: {DEFAULT_SERVER})")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes on one port (uvicorn). Each has its own in-process caches "
                        "and budget counters: with N > 1 use the redis backends to act as one gateway "
                        "(/metrics adds up all the workers by itself)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from thrifty.api.factory import build_app
    from thrifty.api.server import PROTOCOL

    # Built here under either server, so a config mistake stops the process (exit 2) before any
    # socket is bound. Building opens nothing: the ledger and upstream sessions start with the
    # ASGI lifespan, in the process that serves.
    app = build_app(args.config)
    # Everything built so far lives as long as the process: keep it out of the garbage
    # collector's full scans, which otherwise pause the event loop for tens of milliseconds.
    gc.collect()
    gc.freeze()
    config = app.gateway.config
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    print(f"thrifty: gateway listening on http://{host}:{port} (config {args.config}, {args.server})",
          flush=True)
    if args.workers < 1:
        raise ThriftyError("--workers must be at least 1")
    if args.server == "granian":
        if args.workers != 1:
            raise ThriftyError("--workers applies to --server uvicorn")
        del app  # granian builds its own in the worker process, through the factory
        _run_granian(args.config, host, port, args.log_level)
    elif args.workers > 1:
        import uvicorn

        from thrifty.api.factory import CONFIG_ENV, TARGET
        from thrifty.observe.workers import shared_metrics_dir

        _warn_per_worker_state(config, args.workers)
        del app  # each worker process builds its own through the factory
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
        # /metrics adds up the workers' values (observe/workers.py); the spawned workers inherit it.
        with shared_metrics_dir() if config.observe.metrics.enabled else contextlib.nullcontext():
            uvicorn.run(TARGET, factory=True, workers=args.workers, host=host, port=port, loop="uvloop",
                        http=PROTOCOL, lifespan="on", access_log=False, log_level=args.log_level,
                        timeout_graceful_shutdown=10, timeout_keep_alive=config.server.keep_alive_timeout_s)
    else:
        import uvicorn

        uvicorn.run(app, host=host, port=port, loop="uvloop", http=PROTOCOL, lifespan="on",
                    access_log=False, log_level=args.log_level, timeout_graceful_shutdown=10,
                    timeout_keep_alive=config.server.keep_alive_timeout_s)
    return 0


def _run_granian(config_path: str, host: str, port: int, log_level: str) -> None:
    try:
        from granian import Granian
        from granian.constants import HTTPModes, Interfaces, Loops
        from granian.log import LogLevels
    except ImportError:
        raise ThriftyError("--server granian needs the granian package (pip install granian)") from None

    from thrifty.api.factory import CONFIG_ENV, TARGET

    # The worker process imports TARGET and calls it; the config path reaches it through the
    # environment (inherited by the worker, whether it is forked or spawned).
    os.environ[CONFIG_ENV] = os.path.abspath(config_path)
    # Interfaces.ASGI (not ASGINL) runs the lifespan protocol in the worker: startup before the
    # first request, shutdown (ledger flush) when the main process gets SIGINT/SIGTERM and stops
    # the worker with SIGTERM. No kill timeout: a killed worker would lose unflushed ledger rows.
    Granian(TARGET, factory=True, address=host, port=port, interface=Interfaces.ASGI, workers=1,
            runtime_threads=1, loop=Loops.uvloop, http=HTTPModes.http1, websockets=False,
            log_level=LogLevels(log_level), log_access=False).serve()


def _warn_per_worker_state(config, workers: int) -> None:  # type: ignore[no-untyped-def]
    import logging

    log = logging.getLogger("thrifty.serve")
    if (config.budgets.budgets or config.budgets.rate_limits) and config.budgets.backend.kind == "memory":
        log.warning("%d workers with in-process budget counters: each worker enforces the limits on "
                    "its own; set budgets.backend.kind: redis to share them", workers)
    if config.levers.exact_cache.enabled and config.levers.exact_cache.backend == "memory":
        log.warning("%d workers with an in-process exact cache: entries are not shared between "
                    "workers; set levers.exact_cache.backend: redis (or sqlite) to share them", workers)
