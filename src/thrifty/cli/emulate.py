"""`thrifty emulate`: the provider emulator (see thrifty.providers.emulator)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("emulate", help="run the OpenAI/Anthropic provider emulator", add_help=False,
                       description="Run the provider emulator (all options after 'emulate' are its own; "
                                   "see 'thrifty emulate --help').")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from thrifty.providers.emulator import main

    return main(args.rest)
