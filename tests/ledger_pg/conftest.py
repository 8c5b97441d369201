"""PostgreSQL ledger fixtures: a throwaway database per test run, a schema per test, and a TCP
proxy that plays the database going away without touching the shared server."""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest

from tests.ledger_pg.tcp_proxy import TcpProxy

PG_HOST, PG_PORT = "127.0.0.1", 5432
ADMIN_URL = f"postgresql://root@{PG_HOST}:{PG_PORT}/postgres"


def _connect(url: str, **kw):
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=3, **kw)


def pg_url(dbname: str, *, port: int = PG_PORT, schema: str | None = None) -> str:
    url = f"postgresql://root@{PG_HOST}:{port}/{dbname}"
    if schema:
        url += "?options=" + quote(f"-csearch_path={schema}", safe="")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A database of its own for this test run, dropped afterwards. Skipped with a reason when
    PostgreSQL is down, except in CI (THRIFTY_REQUIRE_SERVICES=1), where that is a failure."""
    try:
        import psycopg
    except ImportError:
        psycopg = None
    reason = None
    if psycopg is None:
        reason = "psycopg is not installed (pip install 'psycopg[binary]')"
    else:
        try:
            _connect(ADMIN_URL).close()
        except psycopg.Error as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            reason = f"PostgreSQL at {PG_HOST}:{PG_PORT} is not reachable ({detail})"
    if reason:
        if os.environ.get("THRIFTY_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} and THRIFTY_REQUIRE_SERVICES=1")
        pytest.skip(f"{reason} (start PostgreSQL; THRIFTY_REQUIRE_SERVICES=1 turns this into a failure)")
    dbname = f"thrifty_test_{uuid.uuid4().hex}"
    with _connect(ADMIN_URL) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield pg_url(dbname)
    finally:
        with _connect(ADMIN_URL) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture
def schema(postgres_url) -> str:
    """A schema of its own for this test, in the run's database."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with _connect(postgres_url) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return name


@pytest.fixture
def dbname(postgres_url) -> str:
    return postgres_url.rsplit("/", 1)[1]


@pytest.fixture
def url(dbname, schema) -> str:
    """The ledger URL for this test: the run's database, this test's schema."""
    return pg_url(dbname, schema=schema)


@pytest.fixture
def db(url):
    """A direct connection to this test's schema, to check what the ledger wrote."""
    conn = _connect(url)
    yield conn
    conn.close()


@pytest.fixture
def proxy():
    p = TcpProxy((PG_HOST, PG_PORT))
    yield p
    p.close()


@pytest.fixture
def proxied_url(proxy, dbname, schema) -> str:
    """This test's schema, reached through the proxy."""
    return pg_url(dbname, port=proxy.port, schema=schema)
