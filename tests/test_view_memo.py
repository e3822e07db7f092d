"""The Explorer's process-wide memo of enriched events: shared by sessions, so it must never
serve a row computed for other settings, and never keep a failed model call."""
from __future__ import annotations

import socket

import pytest

import detectors
import explain
from components import services
from data.demo import demo_market
from explain import ExplainerConfig


@pytest.fixture(scope="module")
def market():
    m = demo_market(seed=3, symbol="DEMO-USD", interval="1h", start="2024-01-01", end="2024-02-01")
    return m.candles, detectors.detect(m.candles).events


def counting(monkeypatch) -> list:
    calls = []
    original = explain.explain_events

    def counted(part, *args, **kwargs):
        calls.append(len(part))
        return original(part, *args, **kwargs)

    monkeypatch.setattr(explain, "explain_events", counted)
    return calls


def test_other_severities_for_the_same_events_are_not_served_from_the_memo(market, monkeypatch):
    candles, events = market
    calls = counting(monkeypatch)
    first = services.enrich_events(events, candles, None, data_key="memo-a", news=False, explain=True,
                                   config=ExplainerConfig())
    again = services.enrich_events(events, candles, None, data_key="memo-a", news=False, explain=True,
                                   config=ExplainerConfig())
    lower = events.assign(severity=events["severity"] * 0.9)      # other parameters or ensemble
    other = services.enrich_events(lower, candles, None, data_key="memo-a", news=False, explain=True,
                                   config=ExplainerConfig())
    assert calls == [len(events), len(events)]                    # the repeat came from the memo
    assert list(again["severity"]) == list(first["severity"])
    assert list(other["severity"]) == list(lower["severity"])


def test_a_failed_model_call_is_asked_again_and_a_new_url_is_used(market, monkeypatch):
    candles, events = market
    with socket.socket() as sock:                                 # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    calls = counting(monkeypatch)
    broken = ExplainerConfig(base_url=f"http://127.0.0.1:{port}/v1", model="llama3.1", timeout=2)
    for _ in range(2):
        rows = services.enrich_events(events.head(2), candles, None, data_key="memo-b", news=False,
                                      explain=True, config=broken, top_n=1)
        assert rows["fallback_reason"].iloc[0] and not explain.is_lasting(rows["fallback_reason"].iloc[0])
    assert calls == [2, 1]                # the failed row again; the row outside the top 1 is kept
    fixed = ExplainerConfig(base_url=f"http://127.0.0.1:{port}/api/v1", model="llama3.1", timeout=2)
    services.enrich_events(events.head(2), candles, None, data_key="memo-b", news=False, explain=True,
                           config=fixed, top_n=1)
    assert calls == [2, 1, 2]             # another URL: nothing served from the broken one
