"""Watchlist scanning on the demo market and watchlist storage."""
import datetime as dt

import pytest

from components.controls import DataChoice, DetectorChoice
from components.scan import parse_symbols, scan_watchlist
from store.watchlists import load_watchlists, save_watchlist


def test_parse_symbols():
    assert parse_symbols("aapl, MSFT\nnvda aapl") == ["AAPL", "MSFT", "NVDA"]


def test_scan_ranks_by_severity_and_reports_errors():
    base = DataChoice("demo", "DEMO", "1h", dt.date(2024, 1, 1), dt.date(2024, 2, 15), seed=3)
    calls = []
    table = scan_watchlist(base, ["DEMO", "DEMO-USD", "NOPE"], (DetectorChoice("zscore", ()),), {},
                           progress=lambda f, msg: calls.append(f))
    assert list(table["symbol"])[-1] == "NOPE" and table["error"].iloc[-1]
    ok = table[table["error"] == ""]
    assert len(ok) == 2 and (ok["events"] > 0).all()
    assert list(ok["max_severity"]) == sorted(ok["max_severity"], reverse=True)
    assert calls[-1] == 1.0


def test_watchlists_round_trip():
    save_watchlist("tech", ["AAPL", "MSFT"])
    assert load_watchlists() == {"tech": ["AAPL", "MSFT"]}
    with pytest.raises(ValueError):
        save_watchlist("../etc", ["X"])
