"""`thrifty export focus`: FOCUS 1.2 columns and types, and amounts that add up to the ledger."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal

import pytest

from tests.ledger_util import make_row
from thrifty.cli.export_focus import focus_rows, ledger_pages, write_focus
from thrifty.cli.main import main
from thrifty.contract import LeverSaving
from thrifty.ledger import SQLiteLedger
from thrifty.pricing import PriceBook

# The FOCUS 1.2 column list and data types, as the specification lists them (FinOps Foundation,
# "FOCUS Specification v1.2", Columns, https://focus.finops.org/focus-specification/v1-2/;
# cross-checked against Microsoft's FocusCost 1.2-preview column list,
# https://learn.microsoft.com/cloud-computing/finops/focus/metadata). Written out here on
# purpose, apart from the exporter's own list, so the two check each other.
FOCUS_1_2 = {
    "AvailabilityZone": "String", "BilledCost": "Decimal", "BillingAccountId": "String",
    "BillingAccountName": "String", "BillingAccountType": "String", "BillingCurrency": "String",
    "BillingPeriodEnd": "DateTime", "BillingPeriodStart": "DateTime", "CapacityReservationId": "String",
    "CapacityReservationStatus": "String", "ChargeCategory": "String", "ChargeClass": "String",
    "ChargeDescription": "String", "ChargeFrequency": "String", "ChargePeriodEnd": "DateTime",
    "ChargePeriodStart": "DateTime", "CommitmentDiscountCategory": "String", "CommitmentDiscountId": "String",
    "CommitmentDiscountName": "String", "CommitmentDiscountQuantity": "Decimal",
    "CommitmentDiscountStatus": "String", "CommitmentDiscountType": "String", "CommitmentDiscountUnit": "String",
    "ConsumedQuantity": "Decimal", "ConsumedUnit": "String", "ContractedCost": "Decimal",
    "ContractedUnitPrice": "Decimal", "EffectiveCost": "Decimal", "InvoiceId": "String",
    "InvoiceIssuerName": "String", "ListCost": "Decimal", "ListUnitPrice": "Decimal",
    "PricingCategory": "String", "PricingCurrency": "String", "PricingCurrencyContractedUnitPrice": "Decimal",
    "PricingCurrencyEffectiveCost": "Decimal", "PricingCurrencyListUnitPrice": "Decimal",
    "PricingQuantity": "Decimal", "PricingUnit": "String", "ProviderName": "String", "PublisherName": "String",
    "RegionId": "String", "RegionName": "String", "ResourceId": "String", "ResourceName": "String",
    "ResourceType": "String", "ServiceCategory": "String", "ServiceName": "String",
    "ServiceSubcategory": "String", "SkuId": "String", "SkuMeter": "String", "SkuPriceDetails": "JSON",
    "SkuPriceId": "String", "SubAccountId": "String", "SubAccountName": "String", "SubAccountType": "String",
    "Tags": "JSON",
}
# Columns the specification says MUST NOT be null on a usage row we can fill.
NOT_NULL = ("BilledCost", "BillingAccountId", "BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart",
            "ChargeCategory", "ChargeDescription", "ChargePeriodEnd", "ChargePeriodStart", "ContractedCost",
            "EffectiveCost", "InvoiceIssuerName", "ListCost", "ProviderName", "PublisherName",
            "ServiceCategory", "ServiceName", "PricingQuantity", "PricingUnit", "ConsumedQuantity",
            "ConsumedUnit", "SkuId")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
BOOK = PriceBook()
CARD = BOOK.card("gpt-4o-mini")
T0 = 1_767_225_600.0 + 3 * 3600 + 125  # 2026-01-01T03:02:05Z


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def export(rows, **kw) -> tuple[list[dict[str, str]], dict]:
    out = io.StringIO()
    summary = write_focus(rows, out, BOOK, **kw)
    return rows_of(out.getvalue()), summary


def routed_call(**kw):
    """1M uncached input + 0.5M output tokens of gpt-4o-mini; its baseline twice its cost."""
    cost = CARD.input + CARD.output / 2
    base = dict(started_at=T0, finished_at=T0 + 1, prompt_tokens=1_000_000, cached_tokens=0, cache_write_tokens=0,
                cache_write_1h_tokens=0, completion_tokens=500_000, reasoning_tokens=0, cost_usd=cost,
                baseline_cost_usd=cost * 2, baseline_model="gpt-4o",
                levers=(LeverSaving("routing", cost),))
    base.update(kw)
    return make_row("thr_a", **base)


def test_columns_and_types_follow_focus_1_2():
    found, _ = export([routed_call(), make_row("thr_b", started_at=T0)])
    header = list(found[0])
    focus = [c for c in header if not c.startswith("x_")]
    assert set(focus) == set(FOCUS_1_2)  # every FOCUS 1.2 column, and no other unprefixed one
    assert all(c.startswith("x_") for c in header if c not in FOCUS_1_2)
    for r in found:
        for col, kind in FOCUS_1_2.items():
            value = r[col]
            if value == "":
                assert col not in NOT_NULL, f"{col} is empty"
            elif kind == "Decimal":
                Decimal(value)
            elif kind == "DateTime":
                assert DATETIME.match(value), (col, value)
            elif kind == "JSON":
                assert isinstance(json.loads(value), dict)
        # FOCUS 1.2, ListCost / ContractedCost: unit price x PricingQuantity when the unit
        # price is not null, else the BilledCost.
        for cost, unit in (("ListCost", "ListUnitPrice"), ("ContractedCost", "ContractedUnitPrice")):
            expected = (Decimal(r[unit]) * Decimal(r["PricingQuantity"]) if r[unit] else Decimal(r["BilledCost"]))
            assert Decimal(r[cost]) == expected, (cost, r)
        assert r["BillingCurrency"] == r["PricingCurrency"] == "USD"
        assert (r["ServiceCategory"], r["ServiceSubcategory"]) == ("AI and Machine Learning", "Generative AI")
        assert r["ChargeCategory"] == "Usage" and r["ConsumedUnit"] == "Tokens"
        assert r["ChargePeriodStart"] == "2026-01-01T03:00:00Z" and r["ChargePeriodEnd"] == "2026-01-01T04:00:00Z"
        assert r["BillingPeriodStart"] == "2026-01-01T00:00:00Z" and r["BillingPeriodEnd"] == "2026-02-01T00:00:00Z"


def test_one_row_per_token_kind_with_known_amounts():
    found, summary = export([routed_call()])
    by_kind = {r["x_TokenKind"]: r for r in found}
    assert set(by_kind) == {"input", "output"}
    i, o = by_kind["input"], by_kind["output"]
    assert (i["SkuId"], o["SkuId"]) == ("openai/gpt-4o-mini/input", "openai/gpt-4o-mini/output")
    assert (i["ConsumedQuantity"], o["ConsumedQuantity"]) == ("1000000", "500000")
    assert (Decimal(i["PricingQuantity"]), Decimal(o["PricingQuantity"])) == (1, Decimal("0.5"))
    assert Decimal(i["ListUnitPrice"]) == CARD.input and Decimal(o["ListUnitPrice"]) == CARD.output
    # Paid: each kind's price share of the call's cost, here exactly its price x quantity.
    assert Decimal(i["BilledCost"]) == Decimal(i["EffectiveCost"]) == CARD.input
    assert Decimal(o["BilledCost"]) == CARD.output / 2
    assert Decimal(i["ContractedCost"]) == CARD.input
    # List: the tokens at list price (no discount on this call); the baseline (twice the cost),
    # split the same way, in x_BaselineCost, and the saving is the difference.
    assert Decimal(i["ListCost"]) == CARD.input and Decimal(o["ListCost"]) == CARD.output / 2
    assert Decimal(i["x_BaselineCost"]) == 2 * CARD.input and Decimal(o["x_BaselineCost"]) == CARD.output
    assert Decimal(i["x_Saved"]) == CARD.input
    assert json.loads(i["Tags"]) == {"tenant": "acme", "feature": "search", "tier": "small", "lane": "interactive",
                                     "cache": "miss"}
    assert (i["ProviderName"], i["SubAccountId"], i["x_Feature"]) == ("openai", "acme", "search")
    assert summary["billed_usd"] == CARD.input + CARD.output / 2 and summary["rows"] == 2


def test_amounts_add_up_exactly_to_the_ledger():
    odd = make_row("thr_c", started_at=T0, cost_usd=Decimal("0.000123456789017"),
                   baseline_cost_usd=Decimal("0.000333333333333"), provider_discount_usd=Decimal("0.00001"))
    found, _ = export([odd])
    assert len(found) == 5  # input, cache read, cache write 5m and 1h, output
    assert sum(Decimal(r["BilledCost"]) for r in found) == odd.cost_usd
    assert sum(Decimal(r["x_BaselineCost"]) for r in found) == odd.baseline_cost_usd
    assert sum(Decimal(r["x_Saved"]) for r in found) == odd.baseline_cost_usd - odd.cost_usd
    assert sum(Decimal(r["x_ProviderDiscount"]) for r in found) == odd.provider_discount_usd
    assert sum(int(r["ConsumedQuantity"]) for r in found) == 100 + 20 + 5 + 50


def test_cache_hits_batch_lines_errors_and_unknown_prices():
    hit = routed_call(provider=None, cache="exact", cost_usd=Decimal(0), levers=())
    batch = routed_call(lane="batch", cost_usd=(CARD.input + CARD.output / 2) * CARD.batch_discount)
    failed = make_row("thr_e", status=502, error_type="upstream_error", prompt_tokens=0, cached_tokens=0,
                      cache_write_tokens=0, cache_write_1h_tokens=0, completion_tokens=0, cost_usd=None)
    unpriced = make_row("thr_f", served_model="not-a-model", cost_usd=None, cached_tokens=0,
                        cache_write_tokens=0, cache_write_1h_tokens=0)
    assert list(focus_rows(failed, BOOK)) == []  # nothing consumed, nothing billed
    h = [r for r in focus_rows(hit, BOOK)]
    assert {r["ProviderName"] for r in h} == {"Thrifty"} and {r["BilledCost"] for r in h} == {"0"}
    assert sum(Decimal(r["x_BaselineCost"]) for r in h) == hit.baseline_cost_usd  # the whole call saved
    assert sum(Decimal(r["ListCost"]) for r in h) == CARD.input + CARD.output / 2  # its tokens at list
    b = {r["x_TokenKind"]: r for r in focus_rows(batch, BOOK)}
    assert Decimal(b["input"]["ContractedUnitPrice"]) == CARD.input * CARD.batch_discount
    assert b["input"]["SkuPriceId"].endswith("/batch") and b["input"]["ListUnitPrice"] == str(CARD.input.normalize())
    u = list(focus_rows(unpriced, BOOK))
    assert u and all(r["x_PriceKnown"] == "false" and r["BilledCost"] == "" and r["ListUnitPrice"] == ""
                     for r in u)


@pytest.fixture
def ledger_file(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = SQLiteLedger(str(path), journal=False)
    ledger.start()
    for i in range(5):
        ledger.record(make_row(f"thr_{i}", started_at=T0 + i * 86_400, cost_usd=Decimal("0.001") * (i + 1)))
    ledger.record(make_row("thr_same_time", started_at=T0, cost_usd=Decimal("0.01")))
    ledger.flush()
    ledger.close()
    return path


def test_pages_stream_every_row_once_in_order(ledger_file):
    ledger = SQLiteLedger(str(ledger_file), journal=False)
    got = [r.request_id.removeprefix("req-") for r in ledger_pages(ledger, page=2)]
    assert got == ["thr_0", "thr_same_time", "thr_1", "thr_2", "thr_3", "thr_4"]
    assert [r.request_id for r in ledger_pages(ledger, since=T0 + 86_400, until=T0 + 3 * 86_400, page=1)] == \
        ["req-thr_1", "req-thr_2"]


def test_command_writes_csv_and_json(ledger_file, tmp_path, capsys):
    out = tmp_path / "focus.csv"
    assert main(["export", "focus", "--ledger", f"sqlite:///{ledger_file}", "--out", str(out),
                 "--since", "2026-01-02", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["calls"] == 4 and summary["rows"] == 4 * 5
    assert summary["billed_usd"] == pytest.approx(0.002 + 0.003 + 0.004 + 0.005)
    found = rows_of(out.read_text())
    assert len(found) == 20 and sum(Decimal(r["BilledCost"]) for r in found) == Decimal("0.014")


def test_command_refuses_bad_input(tmp_path, capsys):
    assert main(["export", "focus", "--ledger", str(tmp_path / "none.db"), "--out", str(tmp_path / "x.csv")]) != 0
    assert main(["export", "focus", "--ledger", str(tmp_path / "none.db"), "--out", str(tmp_path / "x.csv"),
                 "--since", "2026-02-01", "--until", "2026-01-01"]) == 2
    assert main(["export", "focus", "--ledger", str(tmp_path / "none.db"), "--out", str(tmp_path / "x.csv"),
                 "--since", "yesterday-ish"]) != 0
    assert list(tmp_path.iterdir()) == []  # no half-written file left behind
    err = capsys.readouterr().err
    assert "--until must be after --since" in err and "yesterday-ish" in err


def test_long_context_tier_price_applies_past_its_start():
    import dataclasses

    from thrifty.cli.export_focus import _unit_price

    card = dataclasses.replace(CARD, tiers=(("input", 200_000, Decimal(9)), ("input", 500_000, Decimal(12))))
    assert _unit_price(card, "input", 100_000) == CARD.input
    assert _unit_price(card, "input", 300_000) == 9 and _unit_price(card, "input", 600_000) == 12
    assert _unit_price(card, "output", 600_000) == CARD.output
