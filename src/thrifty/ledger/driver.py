"""What one database brings to the ledger: a Driver (I/O) and its Dialect (how it spells SQL).

The writer loop (writer.py), the migration runner (migrate.py) and the queries (queries.py,
savings.py) are written once; everything that differs between SQLite and PostgreSQL is here,
behind these two small pieces.

A driver says "the database cannot take rows now, try later" (unreachable, or its tables not
usable yet) by raising the builtin ConnectionError; the writer treats that as transient
whatever is_transient() says. (Thrifty's own exceptions live in thrifty.errors only.)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Sequence

from thrifty.ledger.schema import LedgerRow


@dataclass(frozen=True, slots=True)
class Dialect:
    """How a database spells the few things the shared SQL cannot write one way for both."""

    mark: str  # the parameter placeholder: "?" (sqlite3) or "%s" (psycopg)
    money_sum: str  # an exact sum of money text, around `{}`: never a float aggregate
    text_order: str  # appended to ORDER BY on text, so both order ids byte-wise
    # A transaction (entered as a context manager on `conn`) that holds the migration lock:
    # replicas or processes starting together must take turns applying migrations.
    migration_transaction: Callable[[Any], ContextManager[Any]]


class Driver(ABC):
    """Connect, write one batch, tell transient errors apart, migrate; and read for queries.

    The writer thread owns the connections it gets from connect(): it uses and closes them, so
    a driver never sees a connection shared between threads.
    """

    dialect: Dialect
    name: str  # the database's name, for messages ("SQLite", "PostgreSQL")
    target: str  # where it is (a path, host:port/db), for messages; never a password

    @abstractmethod
    def migrate(self) -> None:
        """Create or upgrade the schema (called by start(), before the writer runs).

        Raises ConnectionError when the database cannot be reached now, ConfigError when it
        can never be used as configured.
        """

    @abstractmethod
    def connect(self) -> Any:
        """Open a connection for the writer."""

    @abstractmethod
    def write_batch(self, conn: Any, rows: list[LedgerRow]) -> int:
        """Insert `rows`, their bodies and their levers in one transaction (rolled back on
        error); return how many rows were new. A request_id already written is skipped,
        dependents and all, so a replay writes nothing twice."""

    @abstractmethod
    def is_transient(self, exc: Exception) -> bool:
        """Whether retrying the same batch might succeed (locked, I/O, connection lost).
        False means something in the rows themselves: the writer isolates them."""

    def disconnect(self, conn: Any) -> None:
        conn.close()

    def execute_once(self, sql: str, params: Sequence[Any]) -> None:
        """One statement, durably, in a short transaction on a connection of its own: for rare
        writes that do not go through the buffered row writer (a client's verdict, a shadow
        outcome). Raises ConnectionError when the database cannot be reached."""
        conn = self.connect()
        try:
            conn.execute(sql, params)
            commit = getattr(conn, "commit", None)
            if commit is not None:  # psycopg opens a transaction; sqlite3 here is in autocommit mode
                commit()
        finally:
            self.disconnect(conn)

    @abstractmethod
    def reader(self) -> ContextManager[Any]:
        """A short-lived read-only connection of the calling thread's own, for queries, on
        which every statement sees one snapshot (a query of two statements adds up). It must
        offer `execute(sql, params)` returning a cursor with fetchone() and fetchall()."""
