"""Ledger rows for the PostgreSQL tests."""

from __future__ import annotations

from decimal import Decimal

from thrifty.ledger import LedgerRow
from thrifty.ledger.postgres import PostgresLedger


def make_row(i: int | str, **kw) -> LedgerRow:
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


class Logged(PostgresLedger):
    """Remembers the request ids of every committed batch, in commit order; can hold a write
    at `gate` or fail the first `fail` of them."""

    def __init__(self, url, *, gate=None, fail: int = 0, **kw):
        super().__init__(url, **kw)
        self.gate, self.fail = gate, fail
        self.attempts: list[int] = []
        self.written: list[str] = []

    def _write_batch(self, conn, rows):
        self.attempts.append(len(rows))
        if self.gate is not None:
            self.gate.wait()
        if len(self.attempts) <= self.fail:
            import psycopg

            raise psycopg.OperationalError("server closed the connection unexpectedly")
        n = super()._write_batch(conn, rows)
        self.written.extend(r.request_id for r in rows)
        return n


def first_seen(ids: list[str]) -> list[str]:
    """`ids` without repeats, in order of first appearance (a replay may repeat a batch)."""
    return list(dict.fromkeys(ids))
