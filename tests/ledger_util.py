"""Read the gateway's ledger from tests: rows are written off the request path, so wait for them."""

from __future__ import annotations

import time
from pathlib import Path

from thrifty.ledger import LedgerRow, SQLiteLedger


def wait_rows(ledger_path: Path, request_ids: list[str], timeout: float = 10.0) -> dict[str, LedgerRow]:
    ledger = SQLiteLedger(str(ledger_path))
    deadline = time.monotonic() + timeout
    wanted = set(request_ids)
    while True:
        marks = ",".join("?" * len(wanted))
        found = {r.request_id: r for r in ledger.rows(f"request_id IN ({marks})", tuple(wanted))} if ledger_path.exists() else {}
        if len(found) == len(wanted) or time.monotonic() > deadline:
            missing = wanted - set(found)
            assert not missing, f"no ledger row for {sorted(missing)} after {timeout}s"
            return found
        time.sleep(0.05)


def wait_row(ledger_path: Path, request_id: str, timeout: float = 10.0) -> LedgerRow:
    return wait_rows(ledger_path, [request_id], timeout)[request_id]
