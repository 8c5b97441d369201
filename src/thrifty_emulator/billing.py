"""What the emulated providers would invoice, per model: the ground truth a gateway's ledger is checked against.

A request is billed when the provider would bill it: a successful answer, or a streamed answer
that reached its end. Not billed, but counted:
  - `faults`: injected 429/5xx answers and `timeout` faults;
  - `dropped`: answers the emulator cut off on purpose (`drop` fault). The connection dies before
    the usage is delivered, so the client cannot know what it would owe; billing it would make the
    emulator's invoice unverifiable against any client-side ledger;
  - `cancelled`: answers the client walked away from before their end (seen only while the
    emulator is pacing output, i.e. with latency on).
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

    def _bill(self, model: str) -> ModelBill:
        bill = self._models.get(model)
        if bill is None:
            bill = self._models[model] = ModelBill()
        return bill

    def charge(self, model: str, usage: TokenCounts) -> None:
        bill = self._bill(model)
        bill.requests += 1
        bill.input_tokens += usage.input_tokens
        bill.cache_read_tokens += usage.cache_read_tokens
        bill.cache_write_5m_tokens += usage.cache_write_5m_tokens
        bill.cache_write_1h_tokens += usage.cache_write_1h_tokens
        bill.output_tokens += usage.output_tokens
        bill.reasoning_tokens += usage.reasoning_tokens

    def fault(self, model: str) -> None:
        self._bill(model).faults += 1

    def dropped(self, model: str) -> None:
        self._bill(model).dropped += 1

    def cancelled(self, model: str) -> None:
        self._bill(model).cancelled += 1

    def reset(self) -> None:
        self._models.clear()

    def snapshot(self) -> dict[str, Any]:
        """`{"models": {model: {field: int}}, "totals": {field: int}}`."""
        models = {name: bill.as_dict() for name, bill in sorted(self._models.items())}
        totals = ModelBill().as_dict()
        for counts in models.values():
            for k, v in counts.items():
                totals[k] += v
        return {"models": models, "totals": totals}
