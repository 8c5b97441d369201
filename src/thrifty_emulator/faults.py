"""Fault injection: chosen per request by header, or by dice thrown with per-model probabilities.

`x-emulator-fault: 429|500|502|503|529|timeout|drop`
  - 429/500/502/503/529 answer that status in the wire format's own error shape (OpenAI: 500,
    502 `cf_bad_gateway`, 503 overloaded; Anthropic: 500 `api_error`, 529 `overloaded_error`);
    the model never runs, so nothing is billed or cached. A 429 carries a `retry-after` of whole
    seconds drawn from [retry_after_s, 4 * retry_after_s] by the model's seeded dice, as a
    provider's varies with how far its limit is exceeded (see `retry_after`).
  - `timeout` generates the answer, then holds it `x-emulator-fault-delay` seconds (default: the
    config's `fault_delay_s`, 30) before sending it. The provider did the work, so the answer is
    billed whether or not the client waited for it.
  - `drop` starts the answer (the SSE stream, or a non-streaming body with its full
    content-length) and closes the connection half-way. What was generated up to the cut is
    billed (all of a non-streaming answer; for a stream, the events that went out).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping

FAULT_HEADER = "x-emulator-fault"
FAULT_DELAY_HEADER = "x-emulator-fault-delay"

ERROR_FAULTS = {"429": 429, "500": 500, "502": 502, "503": 503, "529": 529}
RETRY_AFTER_SPREAD = 4  # the longest injected retry-after, as a multiple of the shortest
FAULT_KINDS = (*ERROR_FAULTS, "timeout", "drop")


class BadFaultHeader(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    delay_s: float = 0.0

    @property
    def status(self) -> int | None:
        """The HTTP status this fault answers with, or None for timeout/drop."""
        return ERROR_FAULTS.get(self.kind)


def fault_from_headers(headers: Mapping[str, str], default_delay_s: float) -> Fault | None:
    kind = headers.get(FAULT_HEADER, "").strip().lower()
    if not kind:
        return None
    if kind not in FAULT_KINDS:
        raise BadFaultHeader(f"{FAULT_HEADER} must be one of {', '.join(FAULT_KINDS)}, not {kind!r}")
    raw_delay = headers.get(FAULT_DELAY_HEADER)
    delay = default_delay_s
    if raw_delay is not None:
        try:
            delay = float(raw_delay)
        except ValueError:
            raise BadFaultHeader(f"{FAULT_DELAY_HEADER} must be a number of seconds") from None
        if not delay >= 0:
            raise BadFaultHeader(f"{FAULT_DELAY_HEADER} must not be negative")
    return Fault(kind, delay)


def roll_fault(rates: Mapping[str, float], rng: random.Random, delay_s: float) -> Fault | None:
    """One throw of the dice: at most one fault, each kind with its own probability."""
    if not rates:
        return None
    x = rng.random()
    for kind, p in rates.items():
        if x < p:
            return Fault(kind, delay_s)
        x -= p
    return None


def retry_after(rng: random.Random, base_s: int) -> int:
    """Whole seconds for an injected 429's `retry-after`: varied, never below `base_s` (nor 1)."""
    low = max(1, base_s)
    return rng.randint(low, low * RETRY_AFTER_SPREAD)
