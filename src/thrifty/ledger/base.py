"""The ledger interface, and the URL that picks a backend.

The one implementation is writer.BufferedLedger composed with a Driver per database
(sqlite.py, postgres.py); the queries take a typed RowFilter (queries.py), never SQL.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from abc import ABC, abstractmethod
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from thrifty.errors import ConfigError
from thrifty.ledger.schema import LedgerRow

if TYPE_CHECKING:
    from thrifty.ledger.queries import RowFilter


class Ledger(ABC):
    """Where every call is recorded. `record()` is the only method used on the request path.

    Queries see rows once written: rows still queued (or spooled) are not seen, so flush()
    first to read your own writes.
    """

    @abstractmethod
    def start(self) -> None:
        """Create or upgrade the schema and start writing. Raises ConfigError if it cannot."""

    @abstractmethod
    def record(self, row: LedgerRow) -> None:
        """Queue `row` for writing. Never blocks on I/O and never raises."""

    def record_many(self, rows: Sequence[LedgerRow]) -> None:
        """record() each of `rows` (a call's row and its discarded attempts'), in one journal
        write where there is a journal."""
        for row in rows:
            self.record(row)

    # A ledger with a journal (journal.py) keeps what these say on disk until the call's row is
    # written, so that a crash leaves an interrupted row and settles the call's budget hold.
    # Without one they do nothing.

    def begin(self, request_id: str, facts: dict[str, Any]) -> None:
        """Call `request_id` started (`facts`: t, tenant, surface, feature, user, task, call_site)."""

    def hold(self, reservation_id: str, held: dict[str, Any]) -> None:
        """The budgets hold `held` (budgets.Enforcer.held) until holds_settled() names it."""

    def take_interrupted_holds(self) -> list[tuple[str, dict[str, Any]]]:
        """Budget holds left by processes that died, recovered by start(): (reservation id, held)."""
        return []

    def holds_settled(self, reservation_ids: Iterable[str]) -> None:
        """These holds are settled or released: the journal may let them go."""

    @abstractmethod
    def flush(self, timeout: float = 5.0) -> None:
        """Block until every row recorded so far is written (or kept aside)."""

    @abstractmethod
    def close(self) -> None:
        """Write everything still queued, then stop. Rows recorded afterwards are kept aside."""

    @abstractmethod
    def rows(self, where: RowFilter | None = None) -> list[LedgerRow]:
        """Written rows that `where` selects (all when None), oldest first, with their bodies
        and levers."""

    @abstractmethod
    def totals(self, group_by: str, where: RowFilter | None = None) -> list[dict[str, Any]]:
        """Calls, exact cost and tokens per value of `group_by` (schema.GROUP_COLUMNS), most
        expensive first."""

    @abstractmethod
    def savings(self, where: RowFilter | None = None, group_by: str | None = None) -> list[dict[str, Any]]:
        """Baseline, actual, saved and each lever's part, per value of `group_by` (one entry
        when None); see savings.select_savings."""

    @abstractmethod
    def count(self, where: RowFilter | None = None) -> int:
        """How many rows `where` selects (all when None) are written."""

    def __enter__(self) -> "Ledger":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# URL scheme -> "module:Class" of a backend with a `from_url(url)` classmethod. Imported only
# when used, so a backend's driver is needed only by those who choose it.
_BACKENDS = MappingProxyType({
    "sqlite": "thrifty.ledger.sqlite:SQLiteLedger",
    "postgresql": "thrifty.ledger.postgres:PostgresLedger",
    "postgres": "thrifty.ledger.postgres:PostgresLedger",
})
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_ledger(url_or_path: str, **options: Any) -> Ledger:
    """The ledger for `sqlite:///relative.db`, `sqlite:////absolute.db`, a plain file path, or
    `postgresql://user@host:5432/dbname`; `options` go to the backend's constructor (those
    that are None are left out, so a config can pass every option it has, set or not).

    Nothing is opened until start(). An unknown scheme is a ConfigError.
    """
    if not isinstance(url_or_path, str) or not url_or_path.strip():
        raise ConfigError("ledger", "url", "is empty; use sqlite:///PATH or a file path")
    m = _URL.match(url_or_path)
    scheme = m.group(1).lower() if m else "sqlite"
    target = _BACKENDS.get(scheme)
    if target is None:
        raise ConfigError("ledger", "url", f"unsupported scheme {scheme!r} in {url_or_path!r}; "
                                           f"supported: {', '.join(sorted(_BACKENDS))} "
                                           "(sqlite:///PATH, postgresql://USER@HOST:PORT/DB), "
                                           "or a plain file path")
    module, cls_name = target.split(":")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except ImportError as exc:  # the backend's driver is an optional install
        raise ConfigError("ledger", "url", f"the {scheme} ledger needs a package that is not "
                                           f"installed ({exc.name}): {exc}") from exc
    options = {k: v for k, v in options.items() if v is not None}
    unknown = set(options) - set(inspect.signature(cls).parameters)
    if unknown:
        raise ConfigError("ledger", sorted(unknown)[0], f"is not an option of the {scheme} ledger")
    if m:
        return cls.from_url(url_or_path, **options)
    return cls(os.path.expanduser(url_or_path), **options)
