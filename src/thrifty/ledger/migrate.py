"""The one migration runner: MIGRATIONS applied in order, each once, whatever the database.

The driver's Dialect supplies what differs: the placeholder, and the transaction that holds the
migration lock (SQLite: BEGIN IMMEDIATE, the file's write lock; PostgreSQL: an advisory lock).
All pending migrations run in that one transaction, so a failing one applies nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from thrifty.ledger.driver import Dialect
from thrifty.ledger.schema import MIGRATIONS, MIGRATIONS_TABLE, Migration

log = logging.getLogger("thrifty.ledger")


def apply_migrations(conn: Any, dialect: Dialect, migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Apply the pending `migrations` on `conn` (in autocommit mode); return the names applied.

    Processes starting at once take turns on the lock: the first applies what is pending, the
    others then find nothing left to do.
    """
    record = f"INSERT INTO _migrations (name, applied_at) VALUES ({dialect.mark}, {dialect.mark})"
    with dialect.migration_transaction(conn):
        conn.execute(MIGRATIONS_TABLE)
        applied = {name for (name,) in conn.execute("SELECT name FROM _migrations")}
        done = []
        for m in migrations:
            if m.name in applied:
                continue
            for statement in m.statements:
                conn.execute(statement)
            conn.execute(record, (m.name, time.time()))
            done.append(m.name)
    unknown = applied - {m.name for m in migrations}
    if unknown:
        log.warning("ledger: the database has migrations this version does not know (%s); "
                    "it was written by a newer Thrifty", ", ".join(sorted(unknown)))
    if done:
        log.info("ledger: applied migrations %s", ", ".join(done))
    return done
