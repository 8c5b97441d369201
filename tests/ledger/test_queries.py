"""RowFilter: typed filters compiled to SQL in one place, per driver's placeholder style."""

from __future__ import annotations

import pickle

import pytest

from thrifty.ledger import NULL, SQLITE, RowFilter, SQLiteLedger
from thrifty.ledger.driver import Dialect
from thrifty.ledger.queries import compile_where

from tests.ledger_util import make_row

PERCENT = Dialect(mark="%s", money_sum="SUM({})", text_order="", migration_transaction=None)  # type: ignore[arg-type]


def test_no_filter_is_no_condition():
    assert compile_where(None, SQLITE) == ("", [])
    assert compile_where(RowFilter(), SQLITE) == ("", [])


def test_values_travel_as_parameters_in_the_dialects_placeholder():
    where = RowFilter(tenant="a'; DROP TABLE calls; --", user=NULL, since=1.5, stream=False,
                      request_id_prefix="rid-")
    sql, params = compile_where(where, SQLITE)
    assert sql == (" WHERE tenant = ? AND user_id IS NULL AND stream = ? AND substr(request_id, 1, 4) = ?"
                   " AND started_at >= ?")
    assert params == ["a'; DROP TABLE calls; --", 0, "rid-", 1.5]
    assert compile_where(where, PERCENT)[0] == sql.replace("?", "%s")


def test_request_ids_take_a_sequence_not_a_string():
    assert RowFilter(request_ids=["a", "b"]).request_ids == ("a", "b")
    with pytest.raises(TypeError, match="not one string"):
        RowFilter(request_ids="abc")
    assert compile_where(RowFilter(request_ids=()), SQLITE) == (" WHERE 1 = 0", [])


def test_a_filter_is_frozen_hashable_and_null_is_one_thing():
    f = RowFilter(feature=NULL)
    with pytest.raises(AttributeError):
        f.feature = "x"  # type: ignore[misc]
    assert hash(f) == hash(RowFilter(feature=NULL))
    assert pickle.loads(pickle.dumps(NULL)) is NULL and repr(NULL) == "NULL"


def test_filters_select_rows(tmp_path):
    with SQLiteLedger(str(tmp_path / "l.db")) as led:
        led.record(make_row(1, error_type="escalated:json", cache="exact", user=None))
        led.record(make_row(2, error_type="Escalated:json", status=502))
        led.record(make_row(3, cost_usd=None))
        led.flush()
        ids = lambda f: [r.request_id for r in led.rows(f)]  # noqa: E731
        assert ids(RowFilter(error_type_prefix="escalated:")) == ["req-1"]  # case counts
        assert ids(RowFilter(cache="exact")) == ids(RowFilter(user=NULL)) == ["req-1"]
        assert ids(RowFilter(status=502)) == ["req-2"]
        assert ids(RowFilter(priced=False)) == ["req-3"]
        assert ids(RowFilter(error_type=NULL)) == ["req-3"]
        assert led.count(RowFilter(tenant="acme", priced=True)) == 2


def test_sql_fragments_are_refused(tmp_path):
    with SQLiteLedger(str(tmp_path / "l.db")) as led:
        with pytest.raises(TypeError, match="RowFilter"):
            led.rows("cache = 'exact'")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="RowFilter"):
            led.totals("tenant", "tenant = ?")  # type: ignore[arg-type]
