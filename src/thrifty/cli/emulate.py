"""`thrifty emulate`: the provider emulator (the separate `thrifty_emulator` package)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("emulate", help="run the OpenAI/Anthropic provider emulator", add_help=False,
                       description="Run the provider emulator (all options after 'emulate' are its own; "
                                   "see 'thrifty emulate --help').")
    # `thrifty emulate ...` is dispatched to the emulator's own parser before this one runs
    # (see cli/main.py); this entry exists so the command shows in `thrifty --help`.
