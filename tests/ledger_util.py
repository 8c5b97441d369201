"""Ledger helpers for tests: wait for the gateway's rows, make rows, watch a driver, and one set
of rows with levers whose savings are known (checked the same way on every backend)."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from thrifty.contract import LEVERS, LeverSaving
from thrifty.ledger import Driver, LedgerRow, RowFilter, SQLiteLedger


def wait_rows(ledger_path: Path, request_ids: list[str], timeout: float = 10.0) -> dict[str, LedgerRow]:
    ledger = SQLiteLedger(str(ledger_path))
    deadline = time.monotonic() + timeout
    wanted = set(request_ids)
    while True:
        found = ({r.request_id: r for r in ledger.rows(RowFilter(request_ids=tuple(wanted)))}
                 if ledger_path.exists() else {})
        if len(found) == len(wanted) or time.monotonic() > deadline:
            missing = wanted - set(found)
            assert not missing, f"no ledger row for {sorted(missing)} after {timeout}s"
            return found
        time.sleep(0.05)


def wait_row(ledger_path: Path, request_id: str, timeout: float = 10.0) -> LedgerRow:
    return wait_rows(ledger_path, [request_id], timeout)[request_id]


def make_row(i: int | str, **kw: Any) -> LedgerRow:
    base = dict(request_id=f"req-{i}", started_at=1_700_000_000.0 + (i if isinstance(i, int) else 0),
                finished_at=1_700_000_000.5, tenant="acme", feature="search", user="u1", task=None,
                call_site=None, surface="openai", provider="openai", requested_model="fast",
                served_model="gpt-4o-mini", tier="small", status=200, error_type=None,
                prompt_tokens=100, cached_tokens=20, cache_write_tokens=5, cache_write_1h_tokens=1,
                completion_tokens=50, reasoning_tokens=3, cost_usd=Decimal("0.000123"),
                latency_ms=12.5, ttft_ms=3.25, stream=True, retries=1, cache="miss",
                request_hash="abc")
    base.update(kw)
    return LedgerRow(**base)


class WatchedDriver(Driver):
    """A real driver, wrapped: remembers each write attempt's size and the ids of each batch it
    committed (in commit order); can hold a write at `gate`, or fail the first `fail` attempts
    with `error`."""

    def __init__(self, inner: Driver, *, fail: int = 0, error: Exception | None = None, gate=None) -> None:
        self.inner = inner
        self.dialect, self.name, self.target = inner.dialect, inner.name, inner.target
        self.fail, self.error, self.gate = fail, error, gate
        self.attempts: list[int] = []
        self.written: list[str] = []

    def migrate(self) -> None:
        self.inner.migrate()

    def connect(self):
        return self.inner.connect()

    def write_batch(self, conn, rows):
        self.attempts.append(len(rows))
        if self.gate is not None:
            self.gate.wait()
        if len(self.attempts) <= self.fail:
            raise self.error
        n = self.inner.write_batch(conn, rows)
        self.written.extend(r.request_id for r in rows)
        return n

    def is_transient(self, exc: Exception) -> bool:
        return self.inner.is_transient(exc)

    def disconnect(self, conn) -> None:
        self.inner.disconnect(conn)

    def reader(self):
        return self.inner.reader()


# -- one set of rows whose savings are known -------------------------------------------------

def _lever(name: str, saved: str | None, estimated: bool = False, note: str | None = None) -> LeverSaving:
    return LeverSaving(name, None if saved is None else Decimal(saved), estimated, note)


def savings_rows() -> list[LedgerRow]:
    """Rows of both accountings, priced and not, exact and estimated levers, a lever name
    Thrifty does not know, a negative saving and money at 18 decimals."""
    def row(i: int, feature: str, cost: str | None, baseline: str | None, levers=(), **kw) -> LedgerRow:
        return make_row(f"s{i}", feature=feature, started_at=1_700_000_000.0 + i,
                        cost_usd=None if cost is None else Decimal(cost),
                        baseline_cost_usd=None if baseline is None else Decimal(baseline),
                        baseline_model="gpt-4o", levers=tuple(levers), **kw)

    return [
        row(1, "search", "0.10", "0.30", [_lever("prompt_cache", "0.05"), _lever("routing", "0.15")],
            provider_discount_usd=Decimal("0.02")),
        row(2, "search", "0.000000000000000001", "0.000000000000000003",
            [_lever("shaping", "0.000000000000000002", estimated=True, note="max_tokens capped")]),
        row(3, "chat", "0", "0.5", [_lever("exact_cache", "0.5")], cache="exact"),
        row(4, "chat", None, "0.4", [_lever("routing", "0.1")]),  # unpriced: counted, not summed
        row(5, "chat", "0.2", "0.2", [_lever("shaping", None, note="stop sequence set")],
            provider_discount_usd=Decimal("0.0125")),
        row(6, "search", "0.5", "1.0", saved_prompt_cache_usd=Decimal("0.5"), accounting=None),  # legacy
        row(7, "batch-jobs", "0.7", "1.4", accounting=None),  # a group with legacy rows only
        row(8, "search", "0.10", "0.11", [_lever("custom_lever", "0.01")]),
        row(9, "search", "0.000000000000000001", "12345.678901234567890123",
            [_lever("routing", "12345.678901234567890122")]),
        row(10, "chat", "0.3", "0.1", [_lever("escalation", "-0.2")]),  # escalation cost more
    ]


def check_savings(ledger) -> None:
    """The savings of savings_rows(), as any backend must report them."""
    (everything,) = ledger.savings()
    assert everything["key"] is None
    assert everything["calls"] == 8 and everything["priced_calls"] == 7 and everything["legacy_calls"] == 2
    baseline = Decimal("0.30") + Decimal("3E-18") + Decimal("0.5") + Decimal("0.2") + Decimal("0.11") \
        + Decimal("12345.678901234567890123") + Decimal("0.1")
    actual = Decimal("0.10") + Decimal("1E-18") + Decimal("0") + Decimal("0.2") + Decimal("0.10") \
        + Decimal("1E-18") + Decimal("0.3")
    assert everything["baseline_usd"] == baseline == Decimal("12346.888901234567890126")
    assert everything["actual_usd"] == actual == Decimal("0.700000000000000002")
    assert everything["saved_usd"] == Decimal("12346.188901234567890124")
    assert everything["provider_discount_usd"] == Decimal("0.0325")
    assert all(isinstance(everything[k], Decimal) for k in ("baseline_usd", "actual_usd", "saved_usd"))
    levers = everything["levers"]
    assert list(levers) == [*LEVERS, "custom_lever"]  # every lever, in the order they act
    assert levers["routing"] == {"saved_usd": Decimal("12345.828901234567890122"),
                                 "estimated_usd": Decimal(0), "calls": 3}  # s4 counted, not summed
    assert levers["shaping"] == {"saved_usd": Decimal(0), "estimated_usd": Decimal("2E-18"), "calls": 2}
    assert levers["exact_cache"] == {"saved_usd": Decimal("0.5"), "estimated_usd": Decimal(0), "calls": 1}
    assert levers["escalation"]["saved_usd"] == Decimal("-0.2")
    assert levers["custom_lever"]["saved_usd"] == Decimal("0.01")
    assert levers["batch"] == {"saved_usd": Decimal(0), "estimated_usd": Decimal(0), "calls": 0}
    # Each priced row's levers add up to its saving, so the report's do too.
    assert sum((v["saved_usd"] + v["estimated_usd"] for v in levers.values()), Decimal(0)) == everything["saved_usd"]

    by_feature = {g["key"]: g for g in ledger.savings(group_by="feature")}
    assert [g["key"] for g in ledger.savings(group_by="feature")] == ["search", "chat", "batch-jobs"]
    assert by_feature["search"]["calls"] == 4 and by_feature["search"]["legacy_calls"] == 1
    assert by_feature["chat"]["saved_usd"] == Decimal("0.3")  # 0.5 + 0 - 0.2; s4 unpriced
    assert by_feature["chat"]["levers"]["routing"] == {"saved_usd": Decimal(0), "estimated_usd": Decimal(0),
                                                       "calls": 1}
    assert by_feature["batch-jobs"] == {**by_feature["batch-jobs"], "calls": 0, "priced_calls": 0,
                                        "legacy_calls": 1, "baseline_usd": Decimal(0), "saved_usd": Decimal(0)}
    (chat,) = ledger.savings(RowFilter(feature="chat", priced=True))
    assert chat["calls"] == chat["priced_calls"] == 3 and chat["levers"]["routing"]["calls"] == 0
    (empty,) = ledger.savings(RowFilter(tenant="nobody"))
    assert empty["calls"] == empty["legacy_calls"] == 0 and empty["saved_usd"] == Decimal(0)
    assert ledger.savings(RowFilter(tenant="nobody"), group_by="tier") == []
