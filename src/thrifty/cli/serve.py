"""`thrifty serve`: run the gateway."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the gateway",
                       description="Run the Thrifty gateway: an OpenAI-compatible /v1/chat/completions "
                                   "and an Anthropic-compatible /v1/messages in front of the providers "
                                   "named in the config file.")
    p.add_argument("--config", required=True, metavar="FILE", help="YAML config file (see README)")
    p.add_argument("--host", help="listen address (default: server.host in the config)")
    p.add_argument("--port", type=int, help="listen port (default: server.port in the config)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from thrifty.api.app import GatewayApp
    from thrifty.config import load_config
    from thrifty.core.gateway import Gateway

    config = load_config(args.config)
    app = GatewayApp(Gateway(config, config_path=args.config))
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    print(f"thrifty: gateway listening on http://{host}:{port} (config {args.config})", flush=True)
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", lifespan="on",
                access_log=False, log_level=args.log_level, timeout_graceful_shutdown=10)
    return 0
