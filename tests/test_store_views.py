"""Saved Explorer views: what is saved is exactly what loads; names and parameters are checked."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.cases import CaseLog
from store.views import PARAMS_LIMIT, delete_view, list_views, load_view, save_view
from tests.pg import database, pg_server  # noqa: F401  (fixtures)

VIEW = {"source": "demo", "symbol": "DEMO-USD", "interval": "1h", "start": "2024-01-01",
        "end": "2024-03-01", "detectors": ["zscore", "isolation_forest"],
        "params": {"zscore": {"window": 48, "robust": True}}, "thresholds": {"zscore": 3.5},
        "event_id": "a1b2c3", "note": None}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)


@pytest.fixture
def log(database):
    app_url, admin_url = database
    case_log = CaseLog(app_url, admin_url=admin_url)
    yield case_log
    case_log.close()


def test_save_list_load_replace_delete(log):
    save_view("AAPL pump, Jan", VIEW, "alice", log=log)
    first = list_views(log=log)
    assert [(v["name"], v["analyst"]) for v in first] == [("AAPL pump, Jan", "alice")]
    assert first[0]["created_at"].tzinfo is not None
    assert load_view("AAPL pump, Jan", log=log) == VIEW
    save_view("AAPL pump, Jan", VIEW | {"symbol": "AAPL"}, "bob", log=log)
    second = list_views(log=log)[0]
    assert second["analyst"] == "bob" and second["created_at"] == first[0]["created_at"]
    assert second["updated_at"] >= first[0]["updated_at"]
    assert load_view("AAPL pump, Jan", log=log)["symbol"] == "AAPL"
    assert delete_view("AAPL pump, Jan", log=log) and not delete_view("AAPL pump, Jan", log=log)
    with pytest.raises(ValueError, match="No saved view named"):
        load_view("AAPL pump, Jan", log=log)
    assert list_views(log=log) == []


@given(params=st.dictionaries(st.text(max_size=8), JSON, max_size=6))
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_json_object_round_trips(log, params):
    save_view("v", params, "alice", log=log)
    assert load_view("v", log=log) == params


@pytest.mark.parametrize("params, why", [
    ([("symbol", "AAPL")], "dict"), ({"start": dt.date(2024, 1, 1)}, "ISO strings"),
    ({"t": float("nan")}, "plain JSON"), ({"d": {"a", "b"}}, "plain JSON"),
    ({"range": (1, 2)}, "tuples"), ({1: "x"}, "string keys"),
    ({"blob": "x" * PARAMS_LIMIT}, "limit is"),
])
def test_bad_parameters_are_refused(params, why):
    with pytest.raises(ValueError, match=why):
        save_view("v", params, "alice")
    assert list_views() == []


@pytest.mark.parametrize("name", ["view\n", " view", "v" * 65, "", "a\x00b", "a/b"])
def test_names_follow_the_watchlist_rules(name):
    with pytest.raises(ValueError, match="view"):
        save_view(name, VIEW, "alice")


def test_analyst_is_required():
    with pytest.raises(ValueError, match="analyst"):
        save_view("v", VIEW, " ")
