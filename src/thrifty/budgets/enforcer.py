"""The budget enforcer: reserve the worst case of a call before it goes out, settle it after.

    r = await enforcer.reserve(scopes, worst_usd, worst_tokens)   # BudgetExceeded (429) if no room
    ...call the provider...
    await enforcer.settle(r, actual_usd, actual_tokens)           # or: await enforcer.release(r)

A reservation holds the call's worst case on every counter the call belongs to (its tenant,
feature, user, key, task and global budgets, in their current windows) and takes from its rate
limit buckets, all at once or not at all. Spend past a hard limit is therefore impossible however
many calls run at once: each call only starts when its worst case fits beside what is spent and
what calls in flight hold. Settling replaces the hold by the actual cost; releasing drops it.
Both are idempotent, and a hold left behind by a crashed replica expires after
`reservation_ttl_s`; with the ledger's journal (`journal`), the replica's next start settles it at
its worst case first (settle_interrupted).

With a ledger to read back from, the store must be seeded: counters that come back empty (a new
process, a Redis restarted without persistence) are re-seeded from the ledger's spend in the
current windows (reseed.py) before any call is let through; until then calls fail closed as
when the store is unreachable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Sequence

from thrifty.budgets.alerts import Alerter
from thrifty.budgets.backend import (
    BLOCK, SOFT, TRACK, UNLIMITED, BucketSpec, BudgetStore, HoldSpec, from_nano, to_nano,
)
from thrifty.budgets.applied import Applied, AppliedRate
from thrifty.budgets.limits import BackendConfig, BudgetConfig, BudgetsConfig, RateLimitConfig
from thrifty.budgets.messages import alert_payload, budget_refusal, percent, rate_refusal
from thrifty.budgets.reseed import LedgerSpend
from thrifty.budgets.scopes import CallScopes, key_part
from thrifty.budgets.windows import SYSTEM_CLOCK, Clock, Windows, iso
from thrifty.errors import BudgetExceeded, BudgetStoreNotSeeded, BudgetStoreUnavailable, BudgetUnavailable
from thrifty.ids import RandomIds

log = logging.getLogger("thrifty.budgets")

_MODES = {"block": BLOCK, "downgrade": SOFT, "alert": TRACK}
_TENANT_QUALIFIED = ("feature", "user", "task")
_FAIL_OPEN_LOG_EVERY_S = 10.0


_RESEED_WAIT_S = 5.0  # how long a call waits for a re-seed under way before it is refused


def open_store(backend: BackendConfig, *, require_seed: bool = False) -> BudgetStore:
    if backend.kind == "redis":
        from thrifty.budgets.redis_backend import RedisStore

        return RedisStore(backend.redis_url, prefix=backend.key_prefix, timeout_s=backend.timeout_s,
                          max_connections=backend.max_connections, require_seed=require_seed)
    from thrifty.budgets.memory import MemoryStore

    return MemoryStore(require_seed=require_seed)


@dataclass(frozen=True, slots=True)
class _Plan:
    """The limits one set of scopes is under in the current windows, worked out once and reused
    for every call with the same scopes until one of those windows ends."""

    applied: tuple[Applied, ...]
    holds: tuple[tuple[str, int, int, int, int | None], ...]  # counter, mode, limit usd, limit tokens, end
    rates: tuple[AppliedRate, ...]
    buckets: tuple[tuple[str, int, float, bool], ...]  # key, capacity, rate per s, is tpm
    valid_from: float
    valid_until: float
    hard: bool  # a block/downgrade budget or a tpm limit applies: the worst case must be a bound

    @property
    def empty(self) -> bool:
        return not self.holds and not self.buckets


_PLANS_MAX = 10_000


@dataclass(eq=False, slots=True)
class Reservation:
    """A call's hold on its budgets; what settle and release act on.

    `downgrade` is True when a `downgrade` budget had no room: the call may go on, on a cheaper
    tier (`downgraded_by` names the budgets). `enforced` is False when the store was unreachable
    and `fail_open` let the call through.
    """

    id: str
    scopes: CallScopes
    worst_usd: Decimal
    worst_tokens: int
    at: float
    applied: tuple[Applied, ...] = ()
    holds: tuple[HoldSpec, ...] = ()
    rates: tuple[AppliedRate, ...] = ()
    buckets: tuple[BucketSpec, ...] = ()
    before: tuple[tuple[int, int, int, int], ...] = ()  # per hold: spent/held by others at reserve time
    downgrade: bool = False
    downgraded_by: tuple[str, ...] = ()
    enforced: bool = True
    state: str = "held"  # held | settled | released
    settled_usd: Decimal | None = field(default=None)

    @property
    def active(self) -> bool:
        return bool(self.holds or self.buckets)

    def remaining(self) -> list[dict[str, Any]]:
        """Per budget: what is left after this call's worst case, and when the window resets."""
        out = []
        for a, h, (su, st, hu, ht) in zip(self.applied, self.holds, self.before):
            out.append({
                "budget": a.budget.name,
                "remaining_usd": None if h.limit_usd == UNLIMITED
                else from_nano(max(0, h.limit_usd - su - hu - h.usd)),
                "remaining_tokens": None if h.limit_tokens == UNLIMITED
                else max(0, h.limit_tokens - st - ht - h.tokens),
                "resets_at": a.window_end,
            })
        return out

    def headers(self) -> dict[str, str]:
        """Response headers the gateway may send: the USD budget with the least room left."""
        usd = [r for r in self.remaining() if r["remaining_usd"] is not None]
        if not usd:
            return {}
        tight = min(usd, key=lambda r: r["remaining_usd"])
        out = {"x-thrifty-budget": tight["budget"],
               "x-thrifty-budget-remaining-usd": format(tight["remaining_usd"].normalize(), "f")}
        if tight["resets_at"] is not None:
            out["x-thrifty-budget-reset"] = iso(tight["resets_at"]) or ""
        if self.downgrade:
            out["x-thrifty-budget-downgrade"] = ",".join(self.downgraded_by)
        return out


class Enforcer:
    def __init__(self, config: BudgetsConfig, store: BudgetStore | None = None, *,
                 clock: Clock = SYSTEM_CLOCK, alerter: Alerter | None = None,
                 ledger: Any = None) -> None:
        self.config = config
        # `ledger` (a thrifty.ledger.Ledger): where an empty store's counters are re-seeded from.
        self._spend_source = LedgerSpend(ledger) if ledger is not None else None
        self._reseeding: asyncio.Task[bool] | None = None
        self.store = store if store is not None else open_store(config.backend, require_seed=ledger is not None)
        self._ids = RandomIds()
        self.clock = clock
        self.alerter = alerter if alerter is not None else Alerter(config.webhook_timeout_s)
        self._budgets = tuple(config.budgets)
        self._rates = tuple(config.rate_limits)
        self._ttl = config.backend.reservation_ttl_s
        self._fail_open = config.backend.fail_open
        self._windows = Windows()
        self._plans: dict[CallScopes, _Plan] = {}
        # Limits as integer nano-dollars, rounded down: a limit is never loosened.
        self._limit_nano = {b.name: UNLIMITED if b.limit_usd is None else int(b.limit_usd * 10**9)
                            for b in self._budgets}
        self._fail_open_logged = 0.0
        self._sent: dict[str, float] = {}  # alert markers this replica has claimed, until when
        # The ledger's journal (Ledger.hold / holds_settled), set by the gateway: each hold is
        # on disk until settled, so a crash mid-call leaves it for settle_interrupted().
        self.journal: Any = None
        if config.active:
            log.info("budgets: %d budget(s), %d rate limit(s), counters %s; if they cannot be reached, "
                     "calls are %s", len(self._budgets), len(self._rates), self.store.where,
                     "let through unenforced (fail_open: true)" if self._fail_open
                     else "refused with 503 (fail_open: false)")

    # --- changing the budgets at run time ------------------------------------------------

    @property
    def budgets(self) -> tuple[BudgetConfig, ...]:
        return self._budgets

    def replace_budgets(self, budgets: Sequence[BudgetConfig]) -> None:
        """Put `budgets` in place of the current list (the admin API's budgets beside the config
        file's). Raises ValueError (a pydantic ValidationError) when they are not valid together,
        e.g. two share a name, or one shares a rate limit's name; nothing changes then.

        Counters are keyed by budget name, so a budget whose limit changes keeps its spend in the
        current window. Reservations already made keep their own holds and settle as they were
        made; calls planned from now on see the new list.
        """
        config = BudgetsConfig(**{**dict(self.config), "budgets": list(budgets)})  # validates
        self.config = config
        self._budgets = tuple(config.budgets)
        self._limit_nano = {b.name: UNLIMITED if b.limit_usd is None else int(b.limit_usd * 10**9)
                            for b in self._budgets}
        self._plans.clear()

    # --- which limits a call is under ------------------------------------------------------

    def plan(self, scopes: CallScopes, now: float | None = None) -> _Plan:
        now = self.clock() if now is None else now
        plan = self._plans.get(scopes)
        if plan is not None and plan.valid_from <= now < plan.valid_until:
            return plan
        plan = self._make_plan(scopes, now)
        if len(self._plans) >= _PLANS_MAX:
            self._plans.clear()
        self._plans[scopes] = plan
        return plan

    def has_limits(self, scopes: CallScopes) -> bool:
        return not self.plan(scopes).empty

    def needs_bound(self, scopes: CallScopes) -> bool:
        """Whether a hard limit applies, so the call's worst case must really bound it."""
        return self.plan(scopes).hard

    def needs_estimate(self, scopes: CallScopes) -> bool:
        """Whether the call's worst case counts at all: a budget holds it (USD and tokens) or a
        tpm limit takes its tokens. A call under rpm limits only takes one request from each."""
        plan = self.plan(scopes)
        return bool(plan.holds) or any(tpm for *_, tpm in plan.buckets)

    # --- reserve / settle / release ---------------------------------------------------------

    async def reserve(self, scopes: CallScopes, worst_usd: Decimal | None, worst_tokens: int,
                      now: float | None = None, *, hold_s: float | None = None,
                      rate_limits: bool = True) -> Reservation:
        """Hold the call's worst case on all its budgets and rate limits, or raise.

        Raises BudgetExceeded (429) when a `block` budget or a rate limit has no room, and
        BudgetUnavailable (503) when the store cannot be reached and budgets fail closed.
        A `worst_usd` of None (a model without a price) holds only tokens.

        `hold_s`: a hold that must outlive `reservation_ttl_s` (a batch line waits up to a day
        for its provider batch). Such a hold is not journaled: its owner keeps `held()` durably
        and settles it with `settle_held()`, also after a restart. `rate_limits=False` leaves
        the rate limits out (a provider's batch API has limits of its own).
        """
        now = self.clock() if now is None else now
        usd = 0 if worst_usd is None else to_nano(worst_usd)
        plan = self.plan(scopes, now)
        buckets_planned = plan.buckets if rate_limits else ()
        if not plan.holds and not buckets_planned:
            return Reservation(self._ids.hex(), scopes, from_nano(usd), worst_tokens, now)
        ttl, idle = (self._ttl if hold_s is None else max(self._ttl, hold_s)), self.config.lifetime_idle_s
        holds = tuple(HoldSpec(key, mode, lu, lt, usd, worst_tokens,
                               (now + max(idle, ttl if hold_s is not None else 0)) if end is None else end + ttl)
                      for key, mode, lu, lt, end in plan.holds)
        buckets = tuple(BucketSpec(key, cap, rate, worst_tokens if tpm else 1, tpm)
                        for key, cap, rate, tpm in buckets_planned)
        r = Reservation(self._ids.hex(), scopes, from_nano(usd), worst_tokens, now,
                        plan.applied, holds, plan.rates if rate_limits else (), buckets)
        # Journaled before it is asked for: a crash after the store took it but before its answer
        # arrived still leaves it for settle_interrupted() (a no-op where the store never took it).
        journal = self.journal if r.holds and hold_s is None else None
        if journal is not None:
            journal.hold(r.id, self.held(r))
        try:
            try:
                result = await self.store.reserve(r.id, holds, buckets, now, ttl)
            except BudgetStoreNotSeeded as exc:
                if not await self._reseeded():
                    raise exc from None
                result = await self.store.reserve(r.id, holds, buckets, now, ttl)
        except BudgetStoreUnavailable as exc:
            if journal is not None:
                journal.holds_settled((r.id,))
            return self._unavailable(r, exc, now)
        r.before = tuple(result.totals)
        if not result.ok:
            if journal is not None:
                journal.holds_settled((r.id,))
            err = self._refusal(r, result.failed, result.waits, now)
            raise err
        soft = [i for i in result.failed if holds[i].mode == SOFT]
        if soft:
            r.downgrade = True
            r.downgraded_by = tuple(plan.applied[i].budget.name for i in soft)
            for i in soft:
                self._alert(r, i, "downgrade", None, now, result.totals[i][:2])
        return r

    async def settle(self, r: Reservation, actual_usd: Decimal | None, actual_tokens: int,
                     now: float | None = None) -> None:
        """Replace the hold by what the call actually cost. A repeat does nothing."""
        if r.state != "held":
            return
        r.state = "settled"
        usd = 0 if actual_usd is None else to_nano(actual_usd)
        r.settled_usd = from_nano(usd)
        refunds = [(b.take - actual_tokens) if b.refund_unused else 0 for b in r.buckets]
        await self._finish(r, usd, actual_tokens, refunds, now)

    async def release(self, r: Reservation, now: float | None = None) -> None:
        """Drop the hold without counting anything (the call never reached the provider)."""
        if r.state != "held":
            return
        r.state = "released"
        await self._finish(r, 0, 0, [b.take if b.refund_unused else 0 for b in r.buckets], now)

    async def _finish(self, r: Reservation, usd: int, tokens: int, refunds: list[int],
                      now: float | None) -> None:
        if not r.active:
            return
        now = self.clock() if now is None else now
        try:
            after = await self.store.settle(r.id, r.holds, [(usd, tokens)] * len(r.holds),
                                            r.buckets, refunds, now)
        except BudgetStoreUnavailable as exc:
            # The call is over; nothing to refuse. Its holds expire after reservation_ttl_s.
            log.error("budgets: could not %s reservation %s (%s); its spend of $%s is not counted",
                      "settle" if r.state == "settled" else "release", r.id, exc, from_nano(usd))
            return  # still journaled: the next start settles it at its worst case
        if self.journal is not None and r.holds:
            self.journal.holds_settled((r.id,))
        if after is None or not usd and not tokens:
            return
        for i, (u, t) in enumerate(after):
            a = r.applied[i]
            if a.budget.alert_at:
                self._thresholds(r, i, (u - usd, t - tokens), (u, t), now)

    async def settle_held(self, held: dict[str, Any], actual_usd: Decimal | None, actual_tokens: int,
                          now: float | None = None) -> bool | None:
        """Settle a reservation known only by its `held()` form (a batch line's, kept in the
        batch lane's tables across restarts) at what it actually cost; release it with
        `actual_usd=0, actual_tokens=0`. True when the store still held it, False when it did
        not (settled already, or expired), None when the store cannot be reached."""
        holds = tuple(HoldSpec(**h) for h in held["holds"])
        if not holds:
            return False
        usd = 0 if actual_usd is None else to_nano(actual_usd)
        now = self.clock() if now is None else now
        try:
            after = await self.store.settle(held["id"], holds, [(usd, actual_tokens)] * len(holds), (), (), now)
        except BudgetStoreUnavailable as exc:
            log.error("budgets: could not settle batch reservation %s (%s)", held["id"], exc)
            return None
        return after is not None

    # --- calls interrupted by a crash -----------------------------------------------------

    @staticmethod
    def held(r: Reservation) -> dict[str, Any]:
        """What settle_interrupted() needs of `r`, as JSON (the ledger journals it)."""
        return {"id": r.id, "holds": [dataclasses.asdict(h) for h in r.holds],
                "buckets": [dataclasses.asdict(b) for b in r.buckets]}

    async def settle_interrupted(self, held: dict[str, Any], now: float | None = None) -> bool | None:
        """Settle at its worst case a reservation (`held()`) whose process died mid-call: the
        provider may have billed it all, so it counts as if it had (fail closed, never under).

        True when the store still held it and counted it; False when it did not (settled or
        released before the crash, or gone: an in-process store does not outlive its process,
        and a hold not settled within `reservation_ttl_s` expires, its bare record kept one more
        ttl, so a restart later than about twice the ttl after the crash finds nothing to
        count); None when the store cannot be reached (try again at the next start).
        """
        rid = held["id"]
        holds = tuple(HoldSpec(**h) for h in held["holds"])
        buckets = tuple(BucketSpec(**b) for b in held.get("buckets", ()))
        now = self.clock() if now is None else now
        try:
            after = await self.store.settle(rid, holds, [(h.usd, h.tokens) for h in holds], buckets,
                                            [0] * len(buckets), now)
        except BudgetStoreUnavailable as exc:
            log.error("budgets: could not settle interrupted reservation %s (%s); tried again at "
                      "the next start", rid, exc)
            return None
        return after is not None

    # --- reading ------------------------------------------------------------------------

    async def spend(self, scope: str, value: str | None = None, *, tenant: str | None = None,
                    now: float | None = None) -> dict[str, Any]:
        """Spend of every budget on `scope` for `value` in its current window (the admin API).

        Budgets counted per tenant (feature, user, task) need `tenant`.
        """
        now = self.clock() if now is None else now
        if scope == "global":
            value, scopes = "*", CallScopes(tenant=tenant or "")
        elif value is None:
            raise ValueError(f"spend: reading {scope} budgets needs the {scope}")
        elif scope == "tenant":
            scopes = CallScopes(tenant=value)
        else:
            scopes = CallScopes(tenant=tenant or "", **{scope: value})
        found = []
        for b in self._budgets:
            if b.scope != scope or _value_for(b, scopes) != value:
                continue
            if b.scope in _TENANT_QUALIFIED and b.per_tenant and not tenant:
                raise ValueError(f"spend: budget {b.name!r} is counted per tenant; give the tenant")
            found.append(self._apply(b, scopes, value, now))
        keys = [a.counter for a in found]
        try:
            rows = await self.store.read(keys, now)
        except BudgetStoreNotSeeded:
            if not await self._reseeded():
                raise
            rows = await self.store.read(keys, now)
        budgets = []
        for a, (su, st, hu, ht) in zip(found, rows):
            b = a.budget
            budgets.append({
                "budget": b.name, "action": b.action, "window": b.window,
                "window_start": a.window_start, "resets_at": a.window_end,
                "limit_usd": b.limit_usd, "spent_usd": from_nano(su), "held_usd": from_nano(hu),
                "limit_tokens": b.limit_tokens, "spent_tokens": st, "held_tokens": ht,
            })
        return {"scope": scope, "value": value, "tenant": tenant, "budgets": budgets}

    async def close(self) -> None:
        if self._reseeding is not None and not self._reseeding.done():
            self._reseeding.cancel()
        await self.alerter.close()
        await self.store.close()

    # --- re-seeding an empty store --------------------------------------------------------

    async def reseed(self) -> bool:
        """Fill an unseeded store's current-window counters from the ledger; True when this
        call wrote them (False: seeded already, by this replica or another, or nothing to
        seed from). Raises BudgetStoreUnavailable when the store cannot be reached."""
        if self._spend_source is None or await self.store.seeded():
            return False
        now = self.clock()
        try:
            seeds = await asyncio.to_thread(self._spend_source.seeds, self._budgets, now, self._ttl,
                                            self.config.lifetime_idle_s)
        except Exception as exc:  # the ledger could not be read: stay closed, try again on the next call
            log.error("budgets: counters %s are empty and cannot be re-seeded from the ledger: %s",
                      self.store.where, exc)
            raise BudgetStoreUnavailable(f"{self.store.where}: re-seeding from the ledger failed") from exc
        wrote = await self.store.seed(seeds, now)
        if wrote:
            self._plans.clear()
            log.warning("budgets: counters %s were empty (new, restarted or wiped); re-seeded %d "
                        "counter(s) from the ledger's spend in their current windows",
                        self.store.where, len(seeds))
        return wrote

    async def _reseeded(self) -> bool:
        """Re-seed once for all the calls that find the store unseeded (they wait for the same
        task, up to a few seconds); True when the store is seeded afterwards."""
        if self._spend_source is None:
            return False
        task = self._reseeding
        if task is None or task.done():
            task = self._reseeding = asyncio.ensure_future(self.reseed())
        try:
            await asyncio.wait_for(asyncio.shield(task), _RESEED_WAIT_S)
        except asyncio.TimeoutError:
            return False
        except BudgetStoreUnavailable:
            return False
        return True

    # --- internals -----------------------------------------------------------------------

    def _apply(self, b: BudgetConfig, scopes: CallScopes, value: str, now: float) -> Applied:
        start, end = self._windows.bounds(b.window, now)
        qual = key_part(value)
        if b.scope in _TENANT_QUALIFIED and b.per_tenant:
            qual = key_part(scopes.tenant) + "/" + qual
        window = "L" if end is None else str(start)
        return Applied(b, value, f"{b.name}:{qual}:{window}", start, end)

    def _make_plan(self, scopes: CallScopes, now: float) -> _Plan:
        applied, holds = [], []
        valid_from, valid_until = -math.inf, math.inf
        hard = False
        for b in self._budgets:
            value = _value_for(b, scopes)
            if value is None:
                continue
            a = self._apply(b, scopes, value, now)
            applied.append(a)
            holds.append((a.counter, _MODES[b.action], self._limit_nano[b.name],
                          UNLIMITED if b.limit_tokens is None else b.limit_tokens, a.window_end))
            hard = hard or b.action != "alert"
            if a.window_end is not None:
                valid_from, valid_until = max(valid_from, a.window_start), min(valid_until, a.window_end)
        rates, buckets = [], []
        for r in self._rates:
            value = _value_for(r, scopes)
            if value is None:
                continue
            qual = key_part(value)
            if r.scope in _TENANT_QUALIFIED and r.per_tenant:
                qual = key_part(scopes.tenant) + "/" + qual
            if r.rpm is not None:
                rates.append(AppliedRate(r, value, "rpm"))
                buckets.append((f"{r.name}:rpm:{qual}", r.rpm, r.rpm / 60, False))
            if r.tpm is not None:
                rates.append(AppliedRate(r, value, "tpm"))
                buckets.append((f"{r.name}:tpm:{qual}", r.tpm, r.tpm / 60, True))
                hard = True
        return _Plan(tuple(applied), tuple(holds), tuple(rates), tuple(buckets), valid_from, valid_until, hard)

    def _unavailable(self, r: Reservation, exc: BudgetStoreUnavailable, now: float) -> Reservation:
        if not self._fail_open:
            log.error("budgets: refusing call, budget counters unreachable: %s (fail_open: false)", exc)
            raise BudgetUnavailable(
                f"budget limits cannot be checked: {exc}; calls are refused until it is back "
                "(budgets.backend.fail_open is false)") from None
        if now >= self._fail_open_logged + _FAIL_OPEN_LOG_EVERY_S:
            self._fail_open_logged = now
            log.warning("budgets: counters unreachable, letting calls through unenforced: %s "
                        "(budgets.backend.fail_open is true)", exc)
        r.enforced = False
        return r

    def _refusal(self, r: Reservation, failed: Sequence[int], waits: Sequence[float | None],
                 now: float) -> BudgetExceeded:
        blocked = [i for i in failed if r.holds[i].mode == BLOCK]
        if blocked:
            # Name the budget that frees up last: retrying before it resets cannot help.
            i = max(blocked, key=lambda i: math.inf if r.applied[i].window_end is None
                    else r.applied[i].window_end)
            self._alert(r, i, "blocked", None, now, r.before[i][:2])
            return self.exceeded(r, i, now)
        j = max((j for j, w in enumerate(waits) if w is not None), key=lambda j: waits[j] or 0.0)
        return rate_refusal(r.rates[j], r.worst_tokens, r.scopes, waits[j] or 0.0)

    def exceeded(self, r: Reservation, i: int, now: float | None = None,
                 reason: str = "has no room for this call") -> BudgetExceeded:
        """The 429 for hold `i` of a reservation (also used to refuse an impossible downgrade)."""
        before = r.before[i] if i < len(r.before) else (0, 0, 0, 0)
        return budget_refusal(r.applied[i], r.holds[i], before, r.scopes,
                              self.clock() if now is None else now, reason)

    # --- alerts --------------------------------------------------------------------------

    def _thresholds(self, r: Reservation, i: int, before: tuple[int, int], after: tuple[int, int],
                    now: float) -> None:
        h = r.holds[i]
        p0, p1 = _percent(h, before), _percent(h, after)
        for th in sorted(r.applied[i].budget.alert_at):
            if p0 < th <= p1:
                self._alert(r, i, "threshold", th, now, after)

    def _alert(self, r: Reservation, i: int, event: str, threshold: float | None, now: float,
               spent: tuple[int, int]) -> None:
        a = r.applied[i]
        marker = f"{a.counter}:{event}:{threshold if threshold is not None else ''}"
        if self._sent.get(marker, -math.inf) > now:
            return  # this replica already sent it (or saw another claim it) in this window
        until = (now + self.config.lifetime_idle_s) if a.window_end is None else a.window_end + self._ttl
        if len(self._sent) >= _PLANS_MAX:
            self._sent.clear()
        self._sent[marker] = until
        payload = alert_payload(event, threshold, a, r.holds[i], r.scopes, spent, now)
        webhook = a.budget.webhook

        async def send() -> None:
            try:
                first = await self.store.claim(marker, until, now)
            except BudgetStoreUnavailable as exc:
                log.warning("budgets: alert %s not sent, counters unreachable: %s", marker, exc)
                return
            if first:
                await self.alerter.deliver(payload, webhook)

        self.alerter.spawn(send())


def _value_for(limit: BudgetConfig | RateLimitConfig, scopes: CallScopes) -> str | None:
    if limit.tenant is not None and limit.tenant != scopes.tenant:
        return None
    value = scopes.value(limit.scope)
    if value is None or (limit.match is not None and value != limit.match):
        return None
    return value


def _percent(h: HoldSpec, spent: tuple[int, int]) -> float:
    return percent(h.limit_usd, h.limit_tokens, spent)
