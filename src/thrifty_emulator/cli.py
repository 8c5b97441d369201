"""`python -m thrifty_emulator` / `thrifty emulate`: serve the emulator with uvicorn."""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from thrifty_emulator.errors import EmulatorConfigError

DESCRIPTION = """\
Run a local stand-in for the OpenAI and Anthropic APIs. The official SDKs work against it
unchanged: point OpenAI(base_url="http://HOST:PORT/v1") or Anthropic(base_url="http://HOST:PORT")
at it with the API key "emulator-key" (a config's `keys:` list replaces it; each key has
rpm/tpm limits, reported in the providers' rate-limit headers). It validates requests as the
providers do (docs/emulator.md): unknown parameters, reasoning-model rules, output maxima,
context windows and Anthropic extended thinking are refused with their 400s.

Endpoints: POST /v1/chat/completions (OpenAI), POST /v1/messages (Anthropic),
POST /v1/embeddings, POST /v1/messages/count_tokens, GET /v1/models, GET /health,
the batch APIs (OpenAI: /v1/files, /v1/batches; Anthropic: /v1/messages/batches; a batch ends
--batch-seconds after it was created, its lines billed at the batch price), Azure OpenAI's,
Gemini's, Vertex AI's and Bedrock's URL forms (docs/emulator.md),
GET /_emulator/billing (what each model would have billed; batch lines under `batch`),
POST /_emulator/reset (clear billing, batches and prompt caches).

Models: gpt-4o, gpt-4o-mini, gpt-5-nano, gpt-5-mini, llama-3.1-8b-instant (OpenAI wire);
claude-sonnet-4-5, claude-haiku-4-5, claude-opus-4-1 (Anthropic wire). A --config file
(YAML or JSON) adds or overrides models, latencies and fault rates, and `recorded:` replays
answers of known prompts per model from a routing outcomes JSONL file.

Faults per request: header x-emulator-fault: 429|500|503|529|timeout|drop
(x-emulator-fault-delay: seconds a `timeout` holds the request, default 30)."""


class _DropNoise(logging.Filter):
    """A `drop` fault ends a response on purpose; uvicorn would log each one as an app error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, not {port}")
    return port


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="thrifty emulate", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8001,
                   help="port to listen on (default: 8001; 0 picks a free one and prints it)")
    p.add_argument("--config", metavar="FILE", help="YAML/JSON file adding or overriding models, latency, faults")
    p.add_argument("--latency-scale", type=float, metavar="FLOAT",
                   help="multiply every model latency by this (0 = answer at once; default 1.0 or the config's)")
    p.add_argument("--seed", type=int, help="seed for answers and config-driven faults (default 0)")
    p.add_argument("--key", action="append", default=[], metavar="KEY",
                   help="also accept this API key, with the default limits (repeatable)")
    p.add_argument("--batch-seconds", type=float, metavar="S",
                   help="how long a batch job (OpenAI Batch, Anthropic Message Batches) takes from "
                        "creation to its end (default 2, or the config's)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from thrifty_emulator.app import build_app
    from thrifty_emulator.keys import KeySpec
    from thrifty_emulator.models import default_config, load_config

    try:
        config = load_config(args.config) if args.config else default_config()
    except EmulatorConfigError as exc:
        print(f"thrifty emulate: config error: {exc}", file=sys.stderr)
        return 2
    if args.latency_scale is not None:
        if args.latency_scale < 0:
            print("thrifty emulate: --latency-scale must not be negative", file=sys.stderr)
            return 2
        config = config.replace(latency_scale=args.latency_scale)
    if args.seed is not None:
        config = config.replace(seed=args.seed)
    if args.batch_seconds is not None:
        if args.batch_seconds < 0:
            print("thrifty emulate: --batch-seconds must not be negative", file=sys.stderr)
            return 2
        config = config.replace(batch_seconds=args.batch_seconds)
    extra = [KeySpec(k) for k in dict.fromkeys(args.key) if k.strip() and config.key(k) is None]
    if extra:
        config = config.replace(keys=(*config.keys, *extra))

    import uvicorn

    app = build_app(config)
    try:
        sock = socket.create_server((args.host, args.port), family=_family(args.host), backlog=2048)
    except OSError as exc:
        print(f"thrifty emulate: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"thrifty emulator listening on http://{host}:{port} ({len(config.models)} models, "
          f"latency x{config.latency_scale:g})", flush=True)
    logging.getLogger("uvicorn.error").addFilter(_DropNoise())
    server = uvicorn.Server(uvicorn.Config(app, loop="uvloop", http="httptools", access_log=False,
                                           log_level="warning", lifespan="on", timeout_keep_alive=30))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    return 0


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
