"""Ledger rows and a watched ledger for the PostgreSQL tests."""

from __future__ import annotations

from thrifty.ledger.postgres import PostgresLedger

from tests.ledger_util import WatchedDriver, make_row

__all__ = ["Logged", "first_seen", "make_row"]


class Logged(PostgresLedger):
    """Remembers the request ids of every committed batch, in commit order; can hold a write
    at `gate` or fail the first `fail` of them (as a lost connection)."""

    def __init__(self, url, *, gate=None, fail: int = 0, **kw):
        import psycopg

        super().__init__(url, **kw)
        self.driver = WatchedDriver(self.driver, gate=gate, fail=fail,
                                    error=psycopg.OperationalError("server closed the connection unexpectedly"))

    @property
    def attempts(self) -> list[int]:
        return self.driver.attempts

    @property
    def written(self) -> list[str]:
        return self.driver.written


def first_seen(ids: list[str]) -> list[str]:
    """`ids` without repeats, in order of first appearance (a replay may repeat a batch)."""
    return list(dict.fromkeys(ids))
