"""The batch lane: provider batch jobs at their batch price, for calls no user waits on.

`lane.BatchLane` does the work (intake through the levers, coalescing, submission, polling,
results, ledger rows); `store.BatchStore` keeps its state in the ledger's database;
`formats` shows a job as each client API does; the HTTP surfaces are thrifty.api.batches.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("thrifty.batch")


def open_lane(gateway: Any, flow: Any, stages: dict[str, Any]) -> Any:
    """The gateway's batch lane (None when `batch.enabled` is false). Its state lives in the
    ledger's database, reached through the ledger's own driver."""
    if not gateway.config.batch.enabled:
        return None
    from thrifty.batch.lane import BatchLane
    from thrifty.batch.store import BatchStore

    driver = getattr(gateway.ledger, "driver", None)
    if driver is None:
        log.warning("batch lane: off, the ledger (%r) has no database to keep jobs in", gateway.ledger)
        return None
    return BatchLane(gateway, flow, stages, BatchStore(driver))
