"""What the HTTP side knows of one call, handed with the call and its answer to the recorder.

Lives on the ground floor because more than one caller writes ledger rows through the recorder:
the HTTP exchange of an interactive call (api/chat.py), and the batch lane for the lines it
answers later (thrifty.batch).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Exchange:
    """What the HTTP side knows of one call."""

    request_id: str
    started_at: float
    tenant: str
    surface: str  # the client's wire format, by name
    feature: str | None = None
    user: str | None = None
    task: str | None = None
    call_site: str | None = None
    requested_model: str | None = None
    stream: bool = False
    request_hash: str | None = None
    request_body: str | None = None
    response_body: str | None = None
    status: int = 0
    error_type: str | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    finished_at: float = 0.0
    lane: str = "interactive"  # see LedgerRow.lane
    # The provider documents that it bills nothing for this failed call (a batch line that
    # errored, expired or was cancelled): its cost is 0, not unknown.
    not_billed: bool = False
