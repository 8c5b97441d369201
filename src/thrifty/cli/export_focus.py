"""`thrifty export focus --ledger URL --out FILE.csv`: the ledger as a FinOps FOCUS 1.2 cost and
usage dataset, so the AI bill joins the rest of the cloud bill in any FOCUS tool.

One row per call per token kind (uncached input, cache read, cache write 5m / 1h, output): FOCUS
prices a charge by its SKU (`SkuId`, `ListUnitPrice`, `PricingQuantity`), and each token kind is
a SKU of its own with a price of its own. A call that consumed no tokens but was billed gets one
row in requests. The kinds of one call add up exactly to the call's ledger row:

- BilledCost = EffectiveCost: what was paid (the ledger's cost_usd), split over the kinds in
  proportion to their contracted price (the remainder on the last kind, so the sum is exact).
  Nothing is amortised, so the two are equal.
- ListUnitPrice: the served model's published price per million tokens of the kind (genai-prices
  via PriceBook; a long-context tier's price when the prompt is past it). ListCost =
  ListUnitPrice x PricingQuantity, as FOCUS requires (a MUST of its ListCost column), so
  ListCost - EffectiveCost is the price-level saving: batch discounts and response-cache hits
  (billed 0, listed at the cached answer's tokens).
- ContractedUnitPrice: the list price with the lane's batch discount; ContractedCost =
  ContractedUnitPrice x PricingQuantity. PricingUnit is "1M Tokens"; ConsumedUnit is "Tokens".
- x_BaselineCost: the call's counterfactual (the request exactly as the client sent it, sent
  directly; docs/savings.md), split like BilledCost; x_Saved = x_BaselineCost - BilledCost is
  Thrifty's whole saving, routing to a cheaper model included. It cannot be ListCost: the
  baseline may price another model, and FOCUS ties ListCost to the row's own SKU and quantity.
- ChargePeriod is the UTC hour the call started in, BillingPeriod its UTC calendar month.
- A call with no known cost keeps BilledCost/EffectiveCost empty and x_PriceKnown false (FOCUS
  wants a number there; an invented 0 would be wrong), so it is easy to find and price.

Rows are read from the ledger in pages (by start time, then id) and written as they come: memory
stays bounded however large the ledger is.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from datetime import datetime, timezone
from operator import itemgetter
from decimal import Decimal
from typing import IO, Any, Iterable, Iterator, Mapping

from thrifty import jsonutil
from thrifty.ledger import LedgerRow

# FOCUS 1.2 columns and their data types, in the specification's (alphabetical) order; the
# columns Thrifty cannot know (commitments, capacity reservations, zones) are present and null.
FOCUS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("AvailabilityZone", "String"), ("BilledCost", "Decimal"), ("BillingAccountId", "String"),
    ("BillingAccountName", "String"), ("BillingAccountType", "String"), ("BillingCurrency", "String"),
    ("BillingPeriodEnd", "DateTime"), ("BillingPeriodStart", "DateTime"), ("CapacityReservationId", "String"),
    ("CapacityReservationStatus", "String"), ("ChargeCategory", "String"), ("ChargeClass", "String"),
    ("ChargeDescription", "String"), ("ChargeFrequency", "String"), ("ChargePeriodEnd", "DateTime"),
    ("ChargePeriodStart", "DateTime"), ("CommitmentDiscountCategory", "String"),
    ("CommitmentDiscountId", "String"), ("CommitmentDiscountName", "String"),
    ("CommitmentDiscountQuantity", "Decimal"), ("CommitmentDiscountStatus", "String"),
    ("CommitmentDiscountType", "String"), ("CommitmentDiscountUnit", "String"), ("ConsumedQuantity", "Decimal"),
    ("ConsumedUnit", "String"), ("ContractedCost", "Decimal"), ("ContractedUnitPrice", "Decimal"),
    ("EffectiveCost", "Decimal"), ("InvoiceId", "String"), ("InvoiceIssuerName", "String"),
    ("ListCost", "Decimal"), ("ListUnitPrice", "Decimal"), ("PricingCategory", "String"),
    ("PricingCurrency", "String"), ("PricingCurrencyContractedUnitPrice", "Decimal"),
    ("PricingCurrencyEffectiveCost", "Decimal"), ("PricingCurrencyListUnitPrice", "Decimal"),
    ("PricingQuantity", "Decimal"), ("PricingUnit", "String"), ("ProviderName", "String"),
    ("PublisherName", "String"), ("RegionId", "String"), ("RegionName", "String"), ("ResourceId", "String"),
    ("ResourceName", "String"), ("ResourceType", "String"), ("ServiceCategory", "String"),
    ("ServiceName", "String"), ("ServiceSubcategory", "String"), ("SkuId", "String"), ("SkuMeter", "String"),
    ("SkuPriceDetails", "JSON"), ("SkuPriceId", "String"), ("SubAccountId", "String"),
    ("SubAccountName", "String"), ("SubAccountType", "String"), ("Tags", "JSON"),
)
# Thrifty's own columns: FOCUS reserves the `x_` prefix for columns a data generator adds.
EXTRA_COLUMNS: tuple[str, ...] = (
    "x_RequestId", "x_TokenKind", "x_Tenant", "x_Feature", "x_CallSite", "x_Tier", "x_Lane", "x_Cache",
    "x_RequestedModel", "x_ServedModel", "x_BaselineModel", "x_BaselineCost", "x_Saved",
    "x_ProviderDiscount", "x_Status", "x_PriceKnown",
)
COLUMNS: tuple[str, ...] = tuple(name for name, _ in FOCUS_COLUMNS) + EXTRA_COLUMNS

MILLION = Decimal(1_000_000)
PLACES = Decimal("1e-12")  # the ledger's money precision (DECIMAL(38,12))
SELF = "Thrifty"  # the provider of answers served from Thrifty's own response caches
# token kind -> (LedgerRow field or None for derived, PriceCard field, SKU meter)
_KINDS: tuple[tuple[str, str, str], ...] = (
    ("input", "input", "Input Tokens"),
    ("cache_read", "cache_read", "Cached Input Tokens"),
    ("cache_write_5m", "cache_write_5m", "Cache Write Tokens (5 min)"),
    ("cache_write_1h", "cache_write_1h", "Cache Write Tokens (1 h)"),
    ("output", "output", "Output Tokens"),
)
PAGE = 1000


def token_counts(row: LedgerRow) -> dict[str, int]:
    """Tokens of each kind the call was billed for (cache_write_tokens holds 5m + 1h)."""
    return {"input": row.prompt_tokens, "cache_read": row.cached_tokens,
            "cache_write_5m": row.cache_write_tokens - row.cache_write_1h_tokens,
            "cache_write_1h": row.cache_write_1h_tokens, "output": row.completion_tokens}


def _unit_price(card: Any, field: str, prompt_tokens: int) -> Decimal | None:
    """USD per 1M tokens of a kind: a cache price the card lacks is billed as input, and a
    long-context tier replaces the base price once the prompt (all input) is past its start."""
    if card is None:
        return None
    price = getattr(card, field)
    if price is None:
        field, price = "input", card.input
    past = [(start, p) for kind, start, p in card.tiers if kind == field and prompt_tokens > start]
    return max(past)[1] if past else price


def _split(total: Decimal | None, weights: list[Decimal]) -> list[Decimal | None]:
    """`total` split in proportion to `weights`, to 12 places, the remainder on the last part:
    the parts add up to `total` exactly."""
    if total is None:
        return [None] * len(weights)
    w = sum(weights)
    if w == 0:
        weights, w = [Decimal(1)] * len(weights), Decimal(len(weights))
    parts = [(total * x / w).quantize(PLACES) for x in weights[:-1]]
    return parts + [total - sum(parts, Decimal(0))]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _periods(t: float) -> tuple[str, str, str, str]:
    """(charge start, charge end, billing start, billing end): the UTC hour and month of `t`."""
    start = datetime.fromtimestamp(t, timezone.utc).replace(minute=0, second=0, microsecond=0)
    month = start.replace(day=1, hour=0)
    next_month = month.replace(year=month.year + 1, month=1) if month.month == 12 else month.replace(month=month.month + 1)
    hour = start.timestamp()
    return _iso(hour), _iso(hour + 3600), _iso(month.timestamp()), _iso(next_month.timestamp())


def _money(d: Decimal | None) -> str:
    return "" if d is None else format(d.normalize() if d != 0 else Decimal(0), "f")


def focus_rows(row: LedgerRow, prices: Any, *, billing_account: str = "thrifty",
               price_providers: Mapping[str, str | None] | None = None) -> Iterator[dict[str, str]]:
    """The FOCUS rows of one ledger row (none when it consumed and cost nothing)."""
    model = row.served_model or row.requested_model or ""
    price_provider = (price_providers or {}).get(model)
    card = prices.card(model, price_provider) if model else None
    discount = card.batch_discount if card is not None and row.lane in ("batch", "deferred") else Decimal(1)
    counts = token_counts(row)
    kinds = [(k, f, meter, counts[k]) for k, f, meter in _KINDS if counts[k] > 0]
    if not kinds:
        if not row.cost_usd:
            return
        kinds = [("request", "", "Requests", 1)]
    prompt = row.prompt_tokens + row.cached_tokens + row.cache_write_tokens
    list_prices = [(_unit_price(card, f, prompt) if f else None) for _, f, _, _ in kinds]
    weights = [(p * n * discount if p is not None else Decimal(n)) for p, (_, _, _, n) in zip(list_prices, kinds)]
    billed = _split(row.cost_usd, weights)
    baseline = _split(row.baseline_cost_usd, weights)
    discounts = _split(row.provider_discount_usd, weights)
    provider = row.provider or SELF
    charge_start, charge_end, bill_start, bill_end = _periods(row.started_at)
    publisher = (card.provider if card is not None and card.provider else None) or row.provider or ""
    tags = {k: v for k, v in (("tenant", row.tenant), ("feature", row.feature), ("call_site", row.call_site),
                              ("tier", row.tier), ("lane", row.lane), ("cache", row.cache)) if v}
    tags_json = jsonutil.dumps(tags).decode()
    for i, (kind, _, meter, n) in enumerate(kinds):
        unit = kind != "request"
        quantity = Decimal(n) / MILLION if unit else Decimal(n)
        list_price = list_prices[i]
        contracted_price = None if list_price is None else list_price * discount
        # FOCUS: with a unit price, cost = unit price x PricingQuantity; without, it matches BilledCost.
        contracted = billed[i] if contracted_price is None else contracted_price * quantity
        list_cost = billed[i] if list_price is None else list_price * quantity
        sku = f"{publisher or provider}/{model}/{kind}"
        yield {
            "BilledCost": _money(billed[i]), "EffectiveCost": _money(billed[i]),
            "PricingCurrencyEffectiveCost": _money(billed[i]),
            "ListCost": _money(list_cost), "ListUnitPrice": _money(list_price),
            "PricingCurrencyListUnitPrice": _money(list_price),
            "ContractedCost": _money(contracted), "ContractedUnitPrice": _money(contracted_price),
            "PricingCurrencyContractedUnitPrice": _money(contracted_price),
            "BillingCurrency": "USD", "PricingCurrency": "USD",
            "BillingAccountId": billing_account, "BillingAccountName": billing_account,
            "BillingAccountType": "Thrifty gateway",
            "SubAccountId": row.tenant or "", "SubAccountName": row.tenant or "",
            "SubAccountType": "Tenant" if row.tenant else "",
            "BillingPeriodStart": bill_start, "BillingPeriodEnd": bill_end,
            "ChargePeriodStart": charge_start, "ChargePeriodEnd": charge_end,
            "ChargeCategory": "Usage", "ChargeFrequency": "Usage-Based",
            "ChargeDescription": f"{n} {meter.lower()} of {model or 'an unknown model'} via Thrifty"
                                 f" ({row.lane}{', ' + row.cache + ' cache hit' if row.provider is None else ''})",
            "PricingCategory": "Standard", "PricingQuantity": _money(quantity),
            "PricingUnit": "1M Tokens" if unit else "Requests",
            "ConsumedQuantity": str(n), "ConsumedUnit": "Tokens" if unit else "Requests",
            "ServiceCategory": "AI and Machine Learning", "ServiceSubcategory": "Generative AI",
            "ServiceName": f"{provider} {'inference' if row.provider else 'response cache'}",
            "ProviderName": provider, "PublisherName": publisher or provider, "InvoiceIssuerName": provider,
            "ResourceId": f"{provider}/{model}", "ResourceName": model, "ResourceType": "Model",
            "SkuId": sku, "SkuMeter": meter, "SkuPriceId": f"{sku}/{row.lane}" if discount != 1 else sku,
            "SkuPriceDetails": jsonutil.dumps({"unit": "1M tokens" if unit else "request",
                                               "batch_discount": str(discount)} if unit else {}).decode(),
            "Tags": tags_json,
            "x_RequestId": row.request_id, "x_TokenKind": kind, "x_Tenant": row.tenant or "",
            "x_Feature": row.feature or "", "x_CallSite": row.call_site or "", "x_Tier": row.tier or "",
            "x_Lane": row.lane, "x_Cache": row.cache, "x_RequestedModel": row.requested_model or "",
            "x_ServedModel": row.served_model or "", "x_BaselineModel": row.baseline_model or "",
            "x_BaselineCost": _money(baseline[i]),
            "x_Saved": "" if baseline[i] is None or billed[i] is None else _money(baseline[i] - billed[i]),
            "x_ProviderDiscount": _money(discounts[i]), "x_Status": str(row.status),
            "x_PriceKnown": "true" if row.cost_usd is not None else "false",
        }


def ledger_pages(ledger: Any, since: float | None = None, until: float | None = None,
                 page: int = PAGE) -> Iterator[LedgerRow]:
    """Every row of `ledger` started in [since, until), oldest first, read `page` rows at a
    time (keyset pagination on (started_at, request_id)): bounded memory on any ledger size.
    Bodies and levers are not read (FOCUS needs neither)."""
    from thrifty.ledger.codec import row_from_db
    from thrifty.ledger.queries import RowFilter, compile_where
    from thrifty.ledger.schema import CALL_COLUMNS

    driver = ledger.driver
    mark, order = driver.dialect.mark, driver.dialect.text_order
    cond, params = compile_where(RowFilter(since=since, until=until), driver.dialect)
    cols = ", ".join(col for _, col in CALL_COLUMNS)
    names = [col for _, col in CALL_COLUMNS]
    i_started, i_id = names.index("started_at"), names.index("request_id")
    after: tuple[float, str] | None = None
    while True:
        where, args = cond, list(params)
        if after is not None:
            key = f"(started_at > {mark} OR (started_at = {mark} AND request_id{order} > {mark}))"
            where = f"{where} AND {key}" if where else f" WHERE {key}"
            args += [after[0], after[0], after[1]]
        sql = f"SELECT {cols} FROM calls{where} ORDER BY started_at, request_id{order} LIMIT {int(page)}"
        with driver.reader() as conn:
            found = conn.execute(sql, args).fetchall()
        for values in found:
            yield row_from_db(values)
        if len(found) < page:
            return
        after = (found[-1][i_started], found[-1][i_id])


def write_focus(rows: Iterable[LedgerRow], out: IO[str], prices: Any, *, billing_account: str = "thrifty",
                price_providers: Mapping[str, str | None] | None = None,
                progress: Any = None) -> dict[str, Any]:
    """Write the FOCUS CSV of `rows` to `out`; return counts and totals (money as Decimal)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    in_order = itemgetter(*COLUMNS)
    empty = dict.fromkeys(COLUMNS, "")
    prices = _CardMemo(prices)
    calls = written = unpriced = 0
    billed = listed = baseline = Decimal(0)
    for row in rows:
        calls += 1
        for f in focus_rows(row, prices, billing_account=billing_account, price_providers=price_providers):
            writer.writerow(in_order({**empty, **f}))
            written += 1
            billed += Decimal(f["BilledCost"] or 0)
            listed += Decimal(f["ListCost"] or 0)
            baseline += Decimal(f["x_BaselineCost"] or 0)
        if row.cost_usd is None:
            unpriced += 1
        if progress is not None and calls % 1000 == 0:
            progress(calls)
    return {"calls": calls, "rows": written, "unpriced_calls": unpriced, "billed_usd": billed, "list_usd": listed,
            "baseline_usd": baseline}


class _CardMemo:
    """A PriceBook's cards, each looked up once per export (a catalog lookup is far dearer than
    writing the rows it prices)."""

    def __init__(self, prices: Any) -> None:
        self._prices = prices
        self._cards: dict[tuple[str, str | None], Any] = {}

    def card(self, model: str, provider: str | None = None) -> Any:
        key = (model, provider)
        if key not in self._cards:
            self._cards[key] = self._prices.card(model, provider)
        return self._cards[key]


# --- the command ---------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Adds `focus` to the subcommands of `thrifty export`."""
    p = sub.add_parser(
        "focus", help="the ledger as a FinOps FOCUS 1.2 CSV (joins the rest of the cloud bill)",
        description="Write the ledger as a FinOps FOCUS 1.2 cost and usage CSV: one row per call and token "
                    "kind (a SKU each), BilledCost/EffectiveCost = what was paid, ListCost = the tokens at "
                    "the model's list price, and Thrifty's own columns prefixed x_: x_BaselineCost = what "
                    "the calls would have cost sent directly, x_Saved = the saving. Rows stream from the "
                    "ledger: any size fits.")
    p.add_argument("--ledger", required=True, metavar="URL",
                   help="the ledger: sqlite:///PATH, a file path, or postgresql://USER@HOST:PORT/DB")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="where the CSV goes (- for stdout)")
    p.add_argument("--since", help="calls started at or after this (ISO date/time, UTC, or unix seconds)")
    p.add_argument("--until", help="calls started before this (exclusive)")
    p.add_argument("--config", metavar="FILE",
                   help="a Thrifty config: its price overrides and deployments' price providers are used")
    p.add_argument("--billing-account", default="thrifty", metavar="ID",
                   help="BillingAccountId / BillingAccountName of every row (default: thrifty)")
    p.add_argument("--json", action="store_true", help="print counts and totals as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from thrifty.cli.analyze import parse_when
    from thrifty.ledger import open_ledger
    from thrifty.pricing import PriceBook

    since = parse_when(args.since, "--since") if args.since else None
    until = parse_when(args.until, "--until") if args.until else None
    if since is not None and until is not None and until <= since:
        print("thrifty: --until must be after --since", file=sys.stderr)
        return 2
    overrides, price_providers = {}, {}
    if args.config:
        from thrifty.config import load_config

        config = load_config(args.config)
        overrides = config.prices
        price_providers = {d.model: d.price_provider for d in config.deployments.values()}
    ledger = open_ledger(args.ledger, journal=False)  # read only: no journal, no writer thread
    tty = sys.stderr.isatty()

    def progress(n: int) -> None:
        print(f"\r  {n:,} calls exported", end="", file=sys.stderr, flush=True)

    # Written beside the target and renamed when complete: a failed export leaves no half file.
    partial = f"{args.out}.part"
    out = sys.stdout if args.out == "-" else open(partial, "w", newline="", encoding="utf-8")
    try:
        summary = write_focus(ledger_pages(ledger, since, until), out, PriceBook(overrides),
                              billing_account=args.billing_account, price_providers=price_providers,
                              progress=progress if tty else None)
    except BaseException:
        if out is not sys.stdout:
            out.close()
            os.unlink(partial)
        raise
    if out is not sys.stdout:
        out.close()
        os.replace(partial, args.out)
    if tty:
        print(file=sys.stderr)
    summary = {**summary, "out": args.out,
               **{k: float(summary[k]) for k in ("billed_usd", "list_usd", "baseline_usd")}}
    if args.json:
        print(jsonutil.dumps(summary).decode())
    elif args.out != "-":
        print(f"{summary['rows']:,} FOCUS rows from {summary['calls']:,} calls -> {args.out} "
              f"(billed ${summary['billed_usd']:.6f}, list ${summary['list_usd']:.6f}, "
              f"baseline ${summary['baseline_usd']:.6f})")
    return 0
