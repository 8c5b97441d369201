"""Budget test fixtures: a fake clock, and both stores (in-process, and Redis on loopback).

Redis tests use a key prefix unique to the test and delete everything under it afterwards.
"""

from __future__ import annotations

import socket
import uuid
from calendar import timegm
from typing import Any, Callable

import pytest
import pytest_asyncio

from tests.conftest import delete_redis_prefix

from thrifty.budgets import BudgetsConfig, Enforcer
from thrifty.budgets.backend import BudgetStore
from thrifty.budgets.memory import MemoryStore

# 2026-01-31 23:59:30 UTC: thirty seconds before a minute, hour, day and month all end.
JAN31_LATE = float(timegm((2026, 1, 31, 23, 59, 30)))


class FakeClock:
    def __init__(self, t: float = JAN31_LATE) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis_prefix(redis_url):
    prefix = f"thrifty-test:budgets:{uuid.uuid4().hex}:"
    yield prefix
    delete_redis_prefix(redis_url, prefix)


@pytest.fixture(params=["memory", "redis"])
def store_kind(request) -> str:
    return request.param


@pytest_asyncio.fixture(loop_scope="function")
async def make_store(store_kind, request):
    """A factory of stores of the parametrised kind; Redis ones share one prefix (one "cluster")."""
    made: list[BudgetStore] = []
    prefix = None
    url = None
    if store_kind == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
    shared_memory = MemoryStore()

    def make() -> BudgetStore:
        if store_kind == "memory":
            return shared_memory
        from thrifty.budgets.redis_backend import RedisStore

        s = RedisStore(url, prefix=prefix)
        made.append(s)
        return s

    yield make
    for s in made:
        await s.close()


@pytest_asyncio.fixture(loop_scope="function")
async def make_enforcer(make_store, clock):
    """make_enforcer(budgets=[...], rate_limits=[...], **config) -> Enforcer on the shared store."""
    made: list[Enforcer] = []

    def make(store: BudgetStore | None = None, **config: Any) -> Enforcer:
        e = Enforcer(BudgetsConfig.model_validate(config), store or make_store(), clock=clock)
        made.append(e)
        return e

    yield make
    for e in made:
        await e.alerter.close()


@pytest.fixture
def dead_redis_url() -> str:
    """A Redis URL on a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


Factory = Callable[..., Enforcer]
