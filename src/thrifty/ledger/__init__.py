"""The call ledger: one row per call that reached the gateway with a valid key.

`record()` is a non-blocking enqueue; one buffered writer (writer.py) writes batches through a
driver per database (sqlite.py, postgres.py). The schema is defined once (schema.py) for every
backend and changed only by appended migrations, applied by one runner (migrate.py). Queries take
a typed RowFilter (queries.py); `savings()` reports each lever's part (savings.py).
"""

from thrifty.ledger.base import Ledger, open_ledger
from thrifty.ledger.driver import Dialect, Driver
from thrifty.ledger.migrate import apply_migrations
from thrifty.ledger.queries import NULL, RowFilter
from thrifty.ledger.schema import ACCOUNTING, MIGRATIONS, LedgerRow, Migration
from thrifty.ledger.sinks import Sink, SpillFile, read_spill
from thrifty.ledger.sqlite import SQLITE, SQLiteLedger
from thrifty.ledger.writer import BufferedLedger

__all__ = ["ACCOUNTING", "BufferedLedger", "Dialect", "Driver", "Ledger", "LedgerRow", "MIGRATIONS", "Migration",
           "NULL", "RowFilter", "SQLITE", "SQLiteLedger", "Sink", "SpillFile", "apply_migrations",
           "open_ledger", "read_spill"]
