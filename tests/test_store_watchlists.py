"""Watchlists live in the case database: concurrent saves all land, names are checked, and a
legacy watchlists.json is imported once (or set aside with a warning when malformed)."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import data_dir
from store.db import check_name
from store.watchlists import delete_watchlist, import_legacy_watchlists, load_watchlists, save_watchlist
from tests.pg import collect, database, pg_server, process_context, start_processes  # noqa: F401

PROCESSES, SAVES = 8, 25


class _Log:
    """What the watchlist functions need of a CaseLog: its engine (keeps workers light)."""

    def __init__(self, url):
        from store.db import open_engine
        self.engine = open_engine(url)


def _save_many(url, worker, barrier, results):
    """Worker (a separate process): 25 saves as fast as it can, all processes at once."""
    log = _Log(url)
    barrier.wait()
    for i in range(SAVES):
        save_watchlist(f"w{worker}-{i}", [f"S{worker}", f"T{i}"], log=log)
        if i % 5 == 0:   # and now and then all on the same name: the last save wins, whole
            save_watchlist("shared", [f"S{worker}"], log=log)
    results.put(worker)


def test_concurrent_saves_from_processes_all_land(database):
    app_url, admin_url = database
    from store.cases import CaseLog
    log = CaseLog(app_url, admin_url=admin_url)   # migrated (and granted) before the workers
    ctx = process_context()
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    workers = [ctx.Process(target=_save_many, args=(app_url, w, barrier, results))
               for w in range(PROCESSES)]
    start_processes(workers)
    assert sorted(collect(results, workers)) == list(range(PROCESSES))
    saved = load_watchlists(log=log)
    assert len(saved) == PROCESSES * SAVES + 1
    assert all(saved[f"w{w}-{i}"] == [f"S{w}", f"T{i}"]
               for w in range(PROCESSES) for i in range(SAVES))
    assert saved["shared"] in [[f"S{w}"] for w in range(PROCESSES)]
    log.close()


def test_round_trip_replace_and_delete():
    save_watchlist("tech", ["AAPL", "MSFT"])
    save_watchlist("crypto", ["BTCUSDT"])
    save_watchlist("tech", ["NVDA"])
    assert load_watchlists() == {"crypto": ["BTCUSDT"], "tech": ["NVDA"]}
    assert delete_watchlist("tech") and not delete_watchlist("tech")
    assert load_watchlists() == {"crypto": ["BTCUSDT"]}


@pytest.mark.parametrize("name, fix", [
    ("desk\n", "whitespace"), (" desk", "whitespace"), ("desk\t", "whitespace"),
    ("a" * 65, "at most 64"), ("", "Name the watchlist"), ("de\x00sk", "U\\+0000"),
    ("de\u202esk", "U\\+202E"), ("../etc", "slash"), (None, "Name the watchlist"),
])
def test_bad_names_are_refused_with_the_fix(name, fix):
    with pytest.raises(ValueError, match=fix):
        save_watchlist(name, ["AAPL"])
    assert load_watchlists() == {}


@pytest.mark.parametrize("symbols", ["AAPL", ["AAPL", ""], ["AA PL"], ["A\x00"], [3], ["X" * 65]])
def test_bad_symbols_are_refused(symbols):
    with pytest.raises(ValueError, match="symbol"):
        save_watchlist("desk", symbols)


def test_a_huge_bad_symbol_is_not_repeated_in_the_message():
    with pytest.raises(ValueError, match="symbol") as caught:
        save_watchlist("desk", ["X" * 1_000_000])
    assert len(str(caught.value)) < 200


@given(name=st.text(max_size=70))
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_name_round_trips_exactly_or_is_refused(name):
    try:
        check_name(name, "watchlist")
    except ValueError:
        with pytest.raises(ValueError):
            save_watchlist(name, ["AAPL"])
        return
    save_watchlist(name, ["AAPL"])
    assert load_watchlists()[name] == ["AAPL"]
    assert name == name.strip() and len(name) <= 64


def test_legacy_file_is_imported_once():
    legacy = data_dir() / "watchlists.json"
    legacy.write_text(json.dumps({"tech": ["AAPL", "MSFT"], "desk ": ["X"], "odd": "AAPL"}))
    save_watchlist("tech", ["NVDA"])        # already in the database: the saved one wins
    warnings = import_legacy_watchlists()
    assert len(warnings) == 2 and "'desk '" in warnings[0] and "'odd'" in warnings[1]
    assert load_watchlists() == {"tech": ["NVDA"]}
    assert not legacy.exists() and (data_dir() / "watchlists.json.imported").exists()
    legacy.write_text(json.dumps({"late": ["IBM"]}))
    assert load_watchlists() == {"late": ["IBM"], "tech": ["NVDA"]}   # load imports too
    assert import_legacy_watchlists() == []


@pytest.mark.parametrize("content, why", [
    ('["AAPL", "MSFT"]', "JSON list"), ('{"tech": ["AAPL"', "not valid JSON"),
    ("\xff\xfe", "not valid JSON"), ('"tech"', "JSON str"),
])
def test_malformed_legacy_file_is_set_aside_with_a_warning(content, why):
    legacy = data_dir() / "watchlists.json"
    legacy.write_bytes(content.encode("latin-1"))
    warnings = import_legacy_watchlists()
    assert len(warnings) == 1 and why in warnings[0] and "watchlists.json.malformed" in warnings[0]
    assert load_watchlists() == {}          # the page loads instead of crashing
    assert (data_dir() / "watchlists.json.malformed").read_bytes() == content.encode("latin-1")
