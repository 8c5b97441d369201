"""What the emulated providers would invoice, per model: the ground truth a gateway's ledger is checked against.

A request is billed (`requests`, and its tokens) whenever the model ran, i.e. for what was
generated, whether or not the client received all of it:
  - a complete answer: its whole usage;
  - `dropped` (the `drop` fault): the input, and the output generated up to the cut (all of a
    non-streaming answer; for a stream, the events that went out, reasoning included);
  - `cancelled` (the client hung up mid-answer, seen while the emulator paces output): the input,
    and the output generated until the emulator noticed;
  - a `timeout` fault: the answer was generated and only its delivery held, so it is billed in
    full, and counted in `faults` too.
The providers do not document partial billing; billing what was generated is the conservative
assumption (docs/emulator.md, "Billing"), and it is what makes an invoice reconcilable at all.
Injected 429/5xx answers never run the model: counted in `faults`, not billed.

Batch jobs (batches.py) are billed apart, in `batch`: each line that succeeded, with the usage its
answer reported, at the provider's batch price (half the interactive one). Keeping them apart is
what lets a test price each side at its own rate; lines that errored, expired or were cancelled
bill nothing (OpenAI's and Anthropic's batch guides: only completed requests are charged).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from thrifty_emulator.usage import TokenCounts


@dataclass(slots=True)
class ModelBill:
    requests: int = 0
    input_tokens: int = 0  # uncached input
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0  # reasoning included
    reasoning_tokens: int = 0
    faults: int = 0
    dropped: int = 0
    cancelled: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Billing:
    def __init__(self) -> None:
        self._models: dict[str, ModelBill] = {}
        self._batch: dict[str, ModelBill] = {}  # batch lines, priced at batch rates

    def _bill(self, model: str, *, batch: bool = False) -> ModelBill:
        bills = self._batch if batch else self._models
        bill = bills.get(model)
        if bill is None:
            bill = bills[model] = ModelBill()
        return bill

    def charge(self, model: str, usage: TokenCounts, outcome: str = "ok", *, batch: bool = False) -> None:
        """Bill `usage`; `outcome` is "ok", "dropped", "cancelled" or "timeout" (also counted).
        `batch`: a batch line, billed in the separate batch section."""
        bill = self._bill(model, batch=batch)
        if outcome == "dropped":
            bill.dropped += 1
        elif outcome == "cancelled":
            bill.cancelled += 1
        elif outcome == "timeout":
            bill.faults += 1
        bill.requests += 1
        bill.input_tokens += usage.input_tokens
        bill.cache_read_tokens += usage.cache_read_tokens
        bill.cache_write_5m_tokens += usage.cache_write_5m_tokens
        bill.cache_write_1h_tokens += usage.cache_write_1h_tokens
        bill.output_tokens += usage.output_tokens
        bill.reasoning_tokens += usage.reasoning_tokens

    def fault(self, model: str, *, batch: bool = False) -> None:
        self._bill(model, batch=batch).faults += 1

    def reset(self) -> None:
        self._models.clear()
        self._batch.clear()

    def snapshot(self) -> dict[str, Any]:
        """`{"models": {model: {field: int}}, "totals": {field: int}, "batch": {"models", "totals"}}`:
        interactive calls at the top, batch lines under `batch`, each with its own totals."""
        return {**_section(self._models), "batch": _section(self._batch)}


def _section(bills: dict[str, ModelBill]) -> dict[str, Any]:
    models = {name: bill.as_dict() for name, bill in sorted(bills.items())}
    totals = ModelBill().as_dict()
    for counts in models.values():
        for k, v in counts.items():
            totals[k] += v
    return {"models": models, "totals": totals}
