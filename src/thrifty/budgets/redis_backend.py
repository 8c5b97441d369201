"""Budget counters in Redis, shared by every gateway replica.

One Lua script call reserves a request against all of its counters and buckets at once, so the
check and the hold are one atomic step across every scope (all-or-nothing): concurrent requests
on any number of replicas can never hold more than a limit. Another script settles or releases.
A request costs two round trips: one before the provider call, one after.

Keys (under the configured prefix; for Redis Cluster put a hash tag in it, e.g. `{thrifty}:b:`,
since one script touches all the keys of a request):

- `c:<counter>`    hash: `u`/`t` spent nano-USD/tokens, `hu`/`ht` held by calls in flight
- `c:<counter>:x`  sorted set of the holds, `<rid>:<usd>:<tokens>` scored by expiry; an expired
                   hold becomes `~<rid>` for one more TTL, so a late settle still counts once
- `r:<bucket>`     hash: `l` level, `s` time of that level (rpm/tpm token buckets)
- `a:<marker>`     an alert already sent in this window
- `epoch`          set when the counters were seeded from the ledger (with `require_seed`); a
                   store without it is new or was wiped, and reserve/read refuse until re-seeded

Window counters expire with their window (relative to the caller's clock: replicas' clocks need
not agree with the Redis server's), plus the reservation TTL for late settles; lifetime counters
after `lifetime_idle_s` without use.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Sequence

from thrifty.errors import BudgetStoreNotSeeded, BudgetStoreUnavailable
from thrifty.budgets.backend import (
    BucketSpec, BudgetStore, HoldSpec, ReserveResult, Seed,
)

# Integers are formatted with %d: Lua's tostring would turn 1e17 into "1e+17".
_PURGE = """
local function purge(k, x, now, grace)
  local gone = redis.call('ZRANGEBYSCORE', x, '-inf', now)
  if #gone == 0 then return end
  redis.call('ZREMRANGEBYSCORE', x, '-inf', now)
  local du, dt = 0, 0
  for _, m in ipairs(gone) do
    if string.sub(m, 1, 1) ~= '~' then
      local rid, u, t = string.match(m, '^(.*):(%-?%d+):(%-?%d+)$')
      du, dt = du + tonumber(u), dt + tonumber(t)
      redis.call('ZADD', x, now + grace, '~' .. rid)
    end
  end
  if du ~= 0 or dt ~= 0 then
    redis.call('HINCRBY', k, 'hu', string.format('%d', -du))
    redis.call('HINCRBY', k, 'ht', string.format('%d', -dt))
  end
end
"""

# KEYS: per hold (counter, its holds), then per bucket (bucket).
# ARGV: now, rid, holds, buckets, ttl, usd, tokens, then per hold: mode, limit_u, limit_t, key_ttl;
#       then per bucket: capacity, rate, take, bucket_ttl.
#       Last, 1 when the store must be seeded (then the last key is the epoch marker), else 0.
# Returns: ok, then per hold: failed, spent usd, spent tokens, held usd, held tokens (before this
# call); then per bucket: wait in ms (-1 fits, -2 never). {-1}: not seeded, nothing done.
_RESERVE = _PURGE + """
if ARGV[#ARGV] == '1' and redis.call('EXISTS', KEYS[#KEYS]) == 0 then return {-1} end
local now, rid = tonumber(ARGV[1]), ARGV[2]
local nh, nb, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local wu, wt = tonumber(ARGV[6]), tonumber(ARGV[7])
local out, refused, a = {0}, false, 8
for i = 1, nh do
  local k, x = KEYS[2 * i - 1], KEYS[2 * i]
  local mode, lu, lt = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 4
  purge(k, x, now, ttl)
  local c = redis.call('HMGET', k, 'u', 't', 'hu', 'ht')
  local su, st = tonumber(c[1]) or 0, tonumber(c[2]) or 0
  local hu, ht = tonumber(c[3]) or 0, tonumber(c[4]) or 0
  local failed = 0
  if mode > 0 and ((lu >= 0 and su + hu + wu > lu) or (lt >= 0 and st + ht + wt > lt)) then
    failed = 1
    if mode == 1 then refused = true end
  end
  for _, v in ipairs({failed, su, st, hu, ht}) do table.insert(out, v) end
end
local levels = {}
for j = 1, nb do
  local b = KEYS[2 * nh + j]
  local cap, rate, take = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 4
  local s = redis.call('HMGET', b, 'l', 's')
  local level, ts = tonumber(s[1]), tonumber(s[2])
  if not level then level, ts = cap, now end
  if now > ts then level = math.min(cap, level + (now - ts) * rate) end
  levels[j] = level
  if take <= level then
    table.insert(out, -1)
  elseif take > cap then
    table.insert(out, -2); refused = true
  else
    table.insert(out, math.ceil((take - level) / rate * 1000)); refused = true
  end
end
if refused then return out end
out[1] = 1
local member = rid .. ':' .. ARGV[6] .. ':' .. ARGV[7]
a = 8
for i = 1, nh do
  local k, x = KEYS[2 * i - 1], KEYS[2 * i]
  local key_ttl = ARGV[a + 3]
  a = a + 4
  redis.call('HINCRBY', k, 'hu', ARGV[6])
  redis.call('HINCRBY', k, 'ht', ARGV[7])
  redis.call('ZADD', x, now + ttl, member)
  redis.call('EXPIRE', k, key_ttl)
  redis.call('EXPIRE', x, key_ttl)
end
for j = 1, nb do
  local b = KEYS[2 * nh + j]
  local take, bucket_ttl = tonumber(ARGV[a + 2]), ARGV[a + 3]
  a = a + 4
  redis.call('HSET', b, 'l', tostring(levels[j] - take), 's', ARGV[1])
  redis.call('EXPIRE', b, bucket_ttl)
end
return out
"""

# KEYS: per hold (counter, its holds), per bucket (bucket).
# ARGV: rid, holds, buckets, usd, tokens (the worst case held), then per hold: actual usd,
#       actual tokens, key_ttl; per bucket: refund, capacity.
# Returns {0} when no counter had this call's hold any more (settled or released already),
# else 1 then per hold: spent usd, spent tokens.
_SETTLE = """
local rid = ARGV[1]
local nh, nb = tonumber(ARGV[2]), tonumber(ARGV[3])
local member = rid .. ':' .. ARGV[4] .. ':' .. ARGV[5]
local out, a, found = {1}, 6, nh == 0
for i = 1, nh do
  local k, x = KEYS[2 * i - 1], KEYS[2 * i]
  local au, at, key_ttl = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  a = a + 3
  local hit = redis.call('ZREM', x, member) == 1
  if hit then
    redis.call('HINCRBY', k, 'hu', string.format('%d', -tonumber(ARGV[4])))
    redis.call('HINCRBY', k, 'ht', string.format('%d', -tonumber(ARGV[5])))
  else
    hit = redis.call('ZREM', x, '~' .. rid) == 1
  end
  if hit then
    found = true
    table.insert(out, redis.call('HINCRBY', k, 'u', au))
    table.insert(out, redis.call('HINCRBY', k, 't', at))
    redis.call('EXPIRE', k, key_ttl)
  else
    local c = redis.call('HMGET', k, 'u', 't')
    table.insert(out, tonumber(c[1]) or 0)
    table.insert(out, tonumber(c[2]) or 0)
  end
end
if not found then return {0} end
for j = 1, nb do
  local b = KEYS[2 * nh + j]
  local refund, cap = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local l = tonumber(redis.call('HGET', b, 'l'))
  if l and refund ~= 0 then redis.call('HSET', b, 'l', tostring(math.min(cap, l + refund))) end
end
return out
"""

# KEYS: per counter (counter, its holds), then the epoch marker when ARGV[3] is 1.
# ARGV: now, grace, must be seeded. Returns per counter: u, t, hu, ht; {-1}: not seeded.
_READ = _PURGE + """
local out, n = {}, #KEYS
if ARGV[3] == '1' then
  if redis.call('EXISTS', KEYS[n]) == 0 then return {-1} end
  n = n - 1
end
for i = 1, n / 2 do
  local k, x = KEYS[2 * i - 1], KEYS[2 * i]
  purge(k, x, tonumber(ARGV[1]), tonumber(ARGV[2]))
  local c = redis.call('HMGET', k, 'u', 't', 'hu', 'ht')
  for n = 1, 4 do table.insert(out, tonumber(c[n]) or 0) end
end
return out
"""


# KEYS: the epoch marker, then one counter per seed. ARGV: epoch, then per seed: usd, tokens, ttl.
# Returns 1 when written, 0 when the store was seeded already (by another replica).
_SEED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #KEYS do
  local a = 2 + 3 * (i - 2)
  redis.call('HSET', KEYS[i], 'u', ARGV[a], 't', ARGV[a + 1])
  redis.call('EXPIRE', KEYS[i], ARGV[a + 2])
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


def _num(x: float) -> str:
    return repr(float(x))


def _ttl(expire_at: float, now: float) -> int:
    # Expiry relative to the caller's clock, so the Redis server's clock never has to agree with it.
    return max(1, math.ceil(expire_at - now))


class RedisStore(BudgetStore):
    """Counters in Redis (redis-py asyncio).

    Commands time out fast and are not retried. At most `max_connections` commands run at once
    (a FIFO semaphore in front of the pool: a burst of calls queues fairly instead of opening
    hundreds of connections, and redis-py's blocking pool can starve a waiter). After `trip_after`
    failures in a row the store answers BudgetStoreUnavailable at once for `backoff_s`, so a Redis that
    is down does not cost every request a connect timeout.
    """

    name = "redis"

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "thrifty:budget:",
                 timeout_s: float = 0.25, max_connections: int = 16, backoff_s: float = 1.0,
                 trip_after: int = 3, client: Any = None, require_seed: bool = False) -> None:
        from redis.exceptions import RedisError

        self.prefix = prefix
        self.require_seed = require_seed
        self._epoch_key = f"{prefix}epoch"
        self.where = f"redis at {_without_password(url)}"
        self._errors = (RedisError, OSError)
        self._backoff_s = backoff_s
        self._trip_after = trip_after
        self._failures = 0
        self._down_until = 0.0
        self._last_error = ""
        self._grace = 900.0  # the reservation TTL, learnt from reserve()
        if client is None:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            client = Redis.from_url(url, max_connections=max_connections, socket_timeout=timeout_s,
                                    socket_connect_timeout=max(1.0, timeout_s),
                                    retry=Retry(NoBackoff(), 0), decode_responses=False)
        self._client = client
        self._slots = asyncio.Semaphore(max_connections)
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._read = client.register_script(_READ)
        self._seed = client.register_script(_SEED)

    def _check_up(self) -> None:
        if time.monotonic() < self._down_until:
            raise BudgetStoreUnavailable(f"{self.where} {self._last_error}")

    def _failed(self, exc: BaseException) -> BudgetStoreUnavailable:
        from redis.exceptions import ConnectionError, TimeoutError

        what = "unreachable" if isinstance(exc, (ConnectionError, TimeoutError, OSError)) else "failed"
        self._last_error = f"{what} ({type(exc).__name__}: {exc})" if str(exc) else f"{what} ({type(exc).__name__})"
        self._failures += 1
        if self._failures >= self._trip_after:
            self._down_until = time.monotonic() + self._backoff_s
        return BudgetStoreUnavailable(f"{self.where} {self._last_error}")

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        self._check_up()
        try:
            async with self._slots:
                out = await script(keys=keys, args=args)
        except self._errors as exc:
            raise self._failed(exc) from exc
        self._failures = 0
        return out

    def _counter_keys(self, keys: Sequence[str]) -> list[str]:
        out = []
        for key in keys:
            k = f"{self.prefix}c:{key}"
            out += (k, k + ":x")
        return out

    async def reserve(self, rid: str, holds: Sequence[HoldSpec], buckets: Sequence[BucketSpec],
                      now: float, ttl: float) -> ReserveResult:
        self._grace = ttl
        keys = self._counter_keys([h.key for h in holds]) + [f"{self.prefix}r:{b.key}" for b in buckets]
        usd, tokens = (holds[0].usd, holds[0].tokens) if holds else (0, 0)
        args: list[Any] = [_num(now), rid, len(holds), len(buckets), _num(ttl), usd, tokens]
        for h in holds:
            args += (h.mode, h.limit_usd, h.limit_tokens, _ttl(h.expire_at, now))
        for b in buckets:
            args += (b.capacity, _num(b.rate), b.take, math.ceil(b.capacity / b.rate) + 60)
        keys, args = self._guarded(keys, args)
        out = await self._run(self._reserve, keys, args)
        if int(out[0]) == -1:
            raise self._not_seeded()
        totals, failed = [], []
        for i in range(len(holds)):
            f, su, st, hu, ht = out[1 + 5 * i: 6 + 5 * i]
            totals.append((int(su), int(st), int(hu), int(ht)))
            if f:
                failed.append(i)
        waits: list[float | None] = []
        for w in out[1 + 5 * len(holds):]:
            w = int(w)
            waits.append(None if w == -1 else math.inf if w == -2 else w / 1000)
        return ReserveResult(bool(out[0]), totals, failed, waits)

    async def settle(self, rid: str, holds: Sequence[HoldSpec], actual: Sequence[tuple[int, int]],
                     buckets: Sequence[BucketSpec], refunds: Sequence[int],
                     now: float) -> list[tuple[int, int]] | None:
        keys = self._counter_keys([h.key for h in holds]) + [f"{self.prefix}r:{b.key}" for b in buckets]
        usd, tokens = (holds[0].usd, holds[0].tokens) if holds else (0, 0)
        args: list[Any] = [rid, len(holds), len(buckets), usd, tokens]
        for h, (au, at) in zip(holds, actual):
            args += (au, at, _ttl(h.expire_at, now))
        for b, refund in zip(buckets, refunds):
            args += (refund, b.capacity)
        out = await self._run(self._settle, keys, args)
        if not out[0]:
            return None
        return [(int(out[1 + 2 * i]), int(out[2 + 2 * i])) for i in range(len(holds))]

    async def read(self, keys: Sequence[str], now: float) -> list[tuple[int, int, int, int]]:
        if not keys:
            return []
        ks, args = self._guarded(self._counter_keys(keys), [_num(now), _num(self._grace)])
        out = await self._run(self._read, ks, args)
        if out and int(out[0]) == -1:
            raise self._not_seeded()
        return [tuple(int(v) for v in out[4 * i: 4 * i + 4]) for i in range(len(keys))]  # type: ignore[misc]

    def _guarded(self, keys: list[str], args: list[Any]) -> tuple[list[str], list[Any]]:
        """The scripts' keys and args with the seeded check appended."""
        if self.require_seed:
            return keys + [self._epoch_key], args + [1]
        return keys, args + [0]

    def _not_seeded(self) -> BudgetStoreNotSeeded:
        return BudgetStoreNotSeeded(f"{self.where}: no budget counters (a new or wiped store); "
                                    "re-seeding them from the ledger")

    async def seeded(self) -> bool:
        if not self.require_seed:
            return True
        self._check_up()
        try:
            async with self._slots:
                found = bool(await self._client.exists(self._epoch_key))
        except self._errors as exc:
            raise self._failed(exc) from exc
        self._failures = 0
        return found

    async def seed(self, seeds: Sequence[Seed], now: float) -> bool:
        keys = [self._epoch_key] + [f"{self.prefix}c:{s.key}" for s in seeds]
        args: list[Any] = [f"{now:.6f}"]
        for s in seeds:
            args += (s.usd, s.tokens, _ttl(s.expire_at, now))
        return bool(await self._run(self._seed, keys, args))

    async def claim(self, marker: str, until: float, now: float) -> bool:
        self._check_up()
        ms = max(1, math.ceil((until - now) * 1000))
        try:
            async with self._slots:
                return bool(await self._client.set(f"{self.prefix}a:{marker}", b"1", nx=True, px=ms))
        except self._errors as exc:
            raise self._failed(exc) from exc

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except self._errors:
            pass
