"""`thrifty serve`: run the gateway."""

from __future__ import annotations

import argparse
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
                   help=f"HTTP server: uvicorn (httptools + uvloop) or granian (Rust, hyper; "
                        f"uvloop); one worker either way (default: {DEFAULT_SERVER})")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from thrifty.api.factory import build_app

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
    if args.server == "granian":
        del app  # granian builds its own in the worker process, through the factory
        _run_granian(args.config, host, port, args.log_level)
    else:
        import uvicorn

        uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", lifespan="on",
                    access_log=False, log_level=args.log_level, timeout_graceful_shutdown=10)
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
