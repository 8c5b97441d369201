"""`thrifty export KIND`: the ledger and recorded traffic written out for other tools.

One module per kind, listed in `KINDS`; each has `add_parser(kinds)` exactly like a top-level
command module, so adding `export focus` or `export finetune` is one module and one line here.
"""

from __future__ import annotations

import argparse
import importlib

# Export kinds, in --help order: the modules that add them (imported when the parser is built).
KINDS: tuple[str, ...] = (
    "thrifty.cli.export_parquet",
    "thrifty.cli.export_focus",
    "thrifty.cli.export_finetune",
    "thrifty.cli.export_shadow",
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write the ledger or recorded traffic out for other tools",
                       description="Write the ledger or recorded traffic out for other tools. "
                                   "Run `thrifty export KIND --help` for each kind.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    for name in KINDS:
        importlib.import_module(name).add_parser(kinds)
