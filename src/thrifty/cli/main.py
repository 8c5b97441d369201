"""`thrifty` command line: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import logging
import sys

from thrifty import __version__
from thrifty.errors import ConfigError, ThriftyError


def build_parser() -> argparse.ArgumentParser:
    from thrifty.cli import (
        advise, analyze, demo, emulate, eval_cache, eval_router, eval_typing, export, import_litellm, prices, serve,
        simulate, train_router,
    )

    parser = argparse.ArgumentParser(
        prog="thrifty",
        description="Thrifty: a cost gateway for LLM applications. Point your OpenAI or Anthropic "
                    "SDK at it; every call is priced exactly and recorded in a ledger.")
    parser.add_argument("--version", action="version", version=f"thrifty {__version__}")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="logging level (default: warning)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (serve, emulate, demo, prices, eval_cache, eval_router, eval_typing, import_litellm, export, analyze,
                   simulate, advise, train_router):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["emulate"]:
        # The emulator owns its options; argparse cannot hand leading options to a sub-command.
        from thrifty_emulator import main as emulate

        return emulate(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except ConfigError as exc:
        print(f"thrifty: config error: {exc}", file=sys.stderr)
        return 2
    except ThriftyError as exc:
        print(f"thrifty: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
