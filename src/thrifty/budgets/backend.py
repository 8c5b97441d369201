"""What a budget store does, whatever holds the counters: reserve, settle, read, claim.

Counters hold integers: nano-dollars (USD x 10^9) and tokens. Integers make every backend exact
and the same (Redis' Lua has only doubles, exact up to 2**53). USD is converted at the edge,
rounded up, so a counter over-counts a call by less than one nano-dollar and never under-counts.

Each counter is one budget for one scope value and one window. It keeps what is spent (settled)
and what is held by calls in flight, each hold with an expiry so that a replica that dies
mid-call stops holding budget once `reservation_ttl_s` (the `ttl` below) has passed.

Settling is idempotent without a marker per call: a settle counts only if it finds the call's
hold, which it then removes. A hold that expired is kept as a bare record for one more `ttl`,
so that a call that was slow rather than dead still has its spend counted, once.

A store made with `require_seed` knows whether its counters were seeded from the ledger (Redis: a
marker key holding the seeding's epoch, written in the same step as the counters). While it was
not (a new store, a Redis restarted without persistence, a FLUSHDB), reserve and read raise
BudgetStoreNotSeeded, and the enforcer re-seeds the current windows from the ledger (reseed.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Sequence


NANO = Decimal(10**9)
UNLIMITED = -1

# How a hold takes part in the all-or-nothing check.
TRACK, BLOCK, SOFT = 0, 1, 2  # count only; refuse the call; let it through marked "downgrade"


def to_nano(usd: Decimal) -> int:
    return int((usd * NANO).to_integral_value(rounding=ROUND_CEILING))


def from_nano(n: int) -> Decimal:
    return Decimal(n) / NANO if n else Decimal(0)


@dataclass(frozen=True, slots=True)
class HoldSpec:
    key: str  # counter id, without the store's prefix
    mode: int  # TRACK, BLOCK or SOFT
    limit_usd: int  # nano-dollars, UNLIMITED for none
    limit_tokens: int
    usd: int  # the worst case held, nano-dollars
    tokens: int
    expire_at: float  # unix time after which the counter may be dropped


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """A token bucket: `capacity` units, refilled at `rate` per second (rpm and tpm limits)."""

    key: str
    capacity: int
    rate: float
    take: int
    refund_unused: bool  # tpm gives back what the call did not use; rpm keeps the request counted


@dataclass(frozen=True, slots=True)
class Seed:
    """What a counter holds when re-seeded: the spend the ledger has for its window."""

    key: str  # counter id, without the store's prefix
    usd: int  # nano-dollars
    tokens: int
    expire_at: float  # as HoldSpec.expire_at


@dataclass(slots=True)
class ReserveResult:
    ok: bool
    # Per hold, before this call: (spent usd, spent tokens, held usd, held tokens) by other calls.
    totals: list[tuple[int, int, int, int]]
    failed: list[int]  # indexes of BLOCK/SOFT holds with no room for the call
    waits: list[float | None]  # per bucket: None when it had room, else seconds until it would (inf: never)


class BudgetStore(ABC):
    name: str = "store"
    where: str = ""  # for messages: "in-process", or the Redis URL without its password
    require_seed: bool = False  # refuse reserve/read (BudgetStoreNotSeeded) until seed() ran

    @abstractmethod
    async def reserve(self, rid: str, holds: Sequence[HoldSpec], buckets: Sequence[BucketSpec],
                      now: float, ttl: float) -> ReserveResult:
        """All-or-nothing: hold every counter until `now + ttl` and take from every bucket, unless
        a BLOCK hold or a bucket has no room, in which case nothing is held. SOFT holds without
        room are held anyway and listed in `failed`. Expired holds are dropped first."""

    @abstractmethod
    async def settle(self, rid: str, holds: Sequence[HoldSpec], actual: Sequence[tuple[int, int]],
                     buckets: Sequence[BucketSpec], refunds: Sequence[int],
                     now: float) -> list[tuple[int, int]] | None:
        """Replace the call's holds by what it actually used; give `refunds` back to buckets.

        Returns the spent (usd, tokens) of each counter afterwards, or None when no counter had a
        hold (or expired-hold record) of this call left: it was settled or released already, and
        nothing changes. (A call under rate limits only has no holds; a repeated settle of it
        can refund its unused tokens twice.)
        """

    @abstractmethod
    async def read(self, keys: Sequence[str], now: float) -> list[tuple[int, int, int, int]]:
        """(spent usd, spent tokens, held usd, held tokens) of each counter, expired holds dropped."""

    @abstractmethod
    async def claim(self, marker: str, until: float, now: float) -> bool:
        """True for the first caller to claim `marker` before `until` (alerts fire once)."""

    @abstractmethod
    async def seeded(self) -> bool:
        """Whether seed() ran on this store since it was last empty (always True without
        `require_seed`)."""

    @abstractmethod
    async def seed(self, seeds: Sequence[Seed], now: float) -> bool:
        """Set each counter's spend to its seed and mark the store seeded, in one step, unless it
        is seeded already (another replica was first): then nothing changes and it returns False."""

    async def close(self) -> None:
        return None
