"""The total network deadline: worker threads, shared scopes, bounded sleeps and timeouts."""
from __future__ import annotations

import math
import threading
import time

import pytest
import requests
from requests.adapters import HTTPAdapter

from data import DataError, load_candles, network
from data.network import DeadlineError, SourceUnavailableError
from data.news import load_headlines
from data.options import load_option_chain
from tests.chaos_server import ChaosServer, Reply, yfinance_black_hole


def test_the_result_and_the_error_of_the_fetch_come_back():
    assert network.run_with_deadline(lambda progress: 42, "Test for X", seconds=1) == 42
    boom = KeyError("boom")

    def fail(progress):
        raise boom
    with pytest.raises(KeyError) as info:
        network.run_with_deadline(fail, "Test for X", seconds=1)
    assert info.value is boom


def test_a_stalled_fetch_ends_at_the_deadline_with_a_message_naming_it():
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(DeadlineError) as info:
        network.run_with_deadline(lambda progress: release.wait(5), "Test Service for ABC", seconds=0.3)
    release.set()
    assert 0.25 < time.monotonic() - started < 2
    assert isinstance(info.value, SourceUnavailableError) and isinstance(info.value, DataError)
    assert str(info.value).startswith("Cannot reach Test Service for ABC: no answer within 0.3 s")
    assert network.DEADLINE_ENV in str(info.value)


def test_progress_is_relayed_to_the_calling_thread():
    seen = []

    def fetch(progress):
        progress(0.5, "half")
        progress(1.0, "done")
        return threading.current_thread()

    worker = network.run_with_deadline(fetch, "Test", seconds=1,
                                       progress=lambda f, m: seen.append((f, m, threading.current_thread())))
    assert worker is not threading.current_thread()
    assert seen == [(0.5, "half", threading.current_thread()), (1.0, "done", threading.current_thread())]


def test_fetches_in_one_scope_share_one_total():
    with network.deadline_scope(0.5):
        network.run_with_deadline(lambda p: time.sleep(0.3), "First")
        started = time.monotonic()
        with pytest.raises(DeadlineError, match="no answer within 0.5 s"):
            network.run_with_deadline(lambda p: time.sleep(0.4), "Second")
        assert time.monotonic() - started < 1
        with pytest.raises(DeadlineError):   # nothing left: refused without starting a worker
            time.sleep(0.25)
            network.run_with_deadline(lambda p: 1, "Third")
    assert network.remaining() == math.inf


def test_inside_a_worker_nested_fetches_run_inline_and_see_the_remaining_time():
    def outer(progress):
        inner = network.run_with_deadline(lambda p: (threading.current_thread(), network.remaining()),
                                          "Inner", seconds=100)
        return threading.current_thread(), inner

    me, (inner_thread, left) = network.run_with_deadline(outer, "Outer", seconds=1)
    assert inner_thread is me and 0 < left <= 1


def test_waits_are_made_only_when_they_end_before_the_deadline():
    slept = []
    error = SourceUnavailableError("rate limited")
    network.sleep_within(5.0, slept.append, error)   # no deadline here: any wait is fine
    with network.deadline_scope(1):
        network.sleep_within(0.5, slept.append, error)
        with pytest.raises(SourceUnavailableError, match="rate limited"):
            network.sleep_within(3600, slept.append, error)
    assert slept == [5.0, 0.5]


@pytest.mark.parametrize("value", ["abc", "0", "-3", "nan", "inf", ""])
def test_a_bad_deadline_setting_is_a_data_error_naming_it(monkeypatch, value):
    monkeypatch.setenv(network.DEADLINE_ENV, value)
    if value == "":
        assert network.resolve_deadline() == network.DEFAULT_DEADLINE
        return
    with pytest.raises(DataError, match=network.DEADLINE_ENV):
        network.resolve_deadline()


def test_deadline_precedence_and_bad_parameters(monkeypatch):
    monkeypatch.setenv(network.DEADLINE_ENV, "7")
    assert network.resolve_deadline() == 7.0 and network.resolve_deadline(2) == 2.0
    for bad in (0, -1, "x", True, [1], float("inf")):
        with pytest.raises(DataError, match="positive number of seconds"):
            network.resolve_deadline(bad)
    with pytest.raises(DataError, match="positive number of seconds"):
        load_candles("yahoo", "AAPL", "2024-01-01", "2024-01-02", deadline="soon")
    monkeypatch.setenv(network.DEADLINE_ENV, "junk")   # offline sources do not read it
    assert len(load_candles("demo", "DEMO-USD", "2024-01-01", "2024-01-02", "1h")) == 24


def test_the_adapter_cuts_socket_timeouts_to_the_deadline(monkeypatch):
    seen = []
    monkeypatch.setattr(HTTPAdapter, "send", lambda self, request, **kw: seen.append(kw["timeout"]))
    adapter = network.DeadlineAdapter()
    adapter.send(requests.Request("GET", "http://127.0.0.1/").prepare(), timeout=10)
    network.run_with_deadline(
        lambda p: adapter.send(requests.Request("GET", "http://127.0.0.1/").prepare(), timeout=10),
        "Test", seconds=0.5)
    assert seen[0] == 10 and 0.1 <= seen[1] <= 0.5


def test_a_worker_given_up_on_ends_soon_because_its_socket_timeout_was_cut():
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", network.DeadlineAdapter())
    with ChaosServer() as server:
        server.everything(Reply(delay=5))
        with pytest.raises(DeadlineError):
            network.run_with_deadline(lambda p: session.get(server.url, timeout=10), "Adapter test",
                                      seconds=0.5)
        worker = next(t for t in threading.enumerate() if t.name == "fetch Adapter test")
        worker.join(1.0)
        assert not worker.is_alive()   # it timed out at about 0.5 s, not after 10 s


def test_news_and_option_chains_have_the_deadline_too():
    with yfinance_black_hole():
        for call in (lambda: load_headlines("yahoo", "AAPL", deadline=0.5),
                     lambda: load_option_chain("yahoo", "AAPL", deadline=0.5)):
            started = time.monotonic()
            with pytest.raises(DataError, match="no answer within 0.5 s"):
                call()
            assert time.monotonic() - started < 3
