"""Fixtures for the durability tests: an emulator slow enough that calls are in flight when the
gateway is killed, and the PostgreSQL fixtures of tests/ledger_pg (a database per run, a schema
per test, skipped with a reason when PostgreSQL is down)."""

from __future__ import annotations

import pytest

from tests.ledger_pg.conftest import dbname, postgres_url, schema, url  # noqa: F401 (fixtures)
from thrifty.cli import processes


@pytest.fixture(scope="module")
def slow_emulator(tmp_path_factory):
    """Answers take about a tenth of a second: at any moment some calls are in flight."""
    tmp = tmp_path_factory.mktemp("emulator")
    emu = processes.start_emulator(latency_scale=0.3, log_path=str(tmp / "emulator.log"))
    yield emu
    emu.stop()
