"""`thrifty prices MODEL`: a model's price card from the bundled catalog."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prices", help="print a model's price card",
                       description="Print the price card of a model (USD per million tokens of each "
                                   "kind) from the bundled genai-prices catalog, or from a config's "
                                   "price overrides.")
    p.add_argument("model", help="model name, e.g. gpt-4o-mini or claude-sonnet-4-5")
    p.add_argument("--provider", help="catalog provider id (e.g. openai, anthropic, groq)")
    p.add_argument("--config", metavar="FILE", help="also consider this config's price overrides")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from thrifty import jsonutil
    from thrifty.pricing import PriceBook, card_as_dict, format_card

    overrides = {}
    if args.config:
        from thrifty.config import load_config

        overrides = load_config(args.config).prices
    card = PriceBook(overrides).card(args.model, args.provider)
    if card is None:
        print(f"thrifty: no price known for model {args.model!r}"
              + (f" at provider {args.provider!r}" if args.provider else ""), file=sys.stderr)
        return 1
    if args.json:
        print(jsonutil.dumps(card_as_dict(card)).decode())
    else:
        print(format_card(card))
    return 0
