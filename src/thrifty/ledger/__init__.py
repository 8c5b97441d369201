"""The call ledger: one row per call that reached the gateway with a valid key.

`record()` is a non-blocking enqueue; a background thread writes batches. The schema is defined
once (schema.py) for every backend and changed only by appended migrations.
"""

from thrifty.ledger.base import BufferedLedger, Ledger, open_ledger, read_spill
from thrifty.ledger.schema import MIGRATIONS, LedgerRow, Migration
from thrifty.ledger.sqlite import SQLiteLedger, apply_migrations

__all__ = ["BufferedLedger", "Ledger", "LedgerRow", "MIGRATIONS", "Migration", "SQLiteLedger",
           "apply_migrations", "open_ledger", "read_spill"]
