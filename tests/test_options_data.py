"""Option chains: Yahoo through yfinance's real option_chain (recorded v7 bodies) and the
deterministic demo chain with injected unusual activity. Offline."""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
from curl_cffi.requests.exceptions import DNSError
from yfinance.data import YfData

from data import DataError
from data.cached import SourceUnavailableError
from data.options import CHAIN_COLUMNS, load_option_chain

FIXTURES = Path(__file__).parent / "fixtures" / "yahoo"
AS_OF = pd.Timestamp("2024-01-15 19:59:59", tz="UTC")


class OptionsResponse:
    def __init__(self, body: dict, url: str) -> None:
        self.text, self.status_code, self.url = json.dumps(body), 200, url

    def json(self):
        return json.loads(self.text)


@pytest.fixture
def options_server(monkeypatch):
    """``/v7/finance/options/<SYM>[?date=<epoch>]`` answered from ``options_<SYM>[_<epoch>].json``."""
    calls = []

    def fake_get(self, url, params=None, timeout=30):
        calls.append(url)
        parts = urlsplit(url)
        symbol = parts.path.rsplit("/", 1)[-1]
        date = parse_qs(parts.query).get("date", ["1705622400" if symbol == "AAPL" else ""])[0]
        name = f"options_{symbol}_{date}.json" if date else f"options_{symbol}.json"
        if isinstance(fake_get.error, Exception):
            raise fake_get.error
        return OptionsResponse(json.loads((FIXTURES / name).read_text()), url)

    fake_get.error = None
    monkeypatch.setattr(YfData, "get", fake_get)
    monkeypatch.setattr(YfData, "cache_get", fake_get)
    return fake_get


def test_yahoo_chain_is_tidy(options_server):
    chain = load_option_chain("yahoo", "AAPL", as_of=AS_OF)
    assert list(chain.columns) == CHAIN_COLUMNS
    assert len(chain) == 20  # 2 expiries x 5 strikes x call/put
    assert str(chain["expiry"].dtype) == "datetime64[ns, UTC]"
    assert str(chain["last_trade"].dtype) == "datetime64[ns, UTC]"
    for column in ("days_to_expiry", "strike", "last_price", "volume", "open_interest", "implied_volatility"):
        assert chain[column].dtype == "float64", column
    assert chain["in_the_money"].dtype == bool
    assert set(chain["expiry"]) == {pd.Timestamp("2024-01-19", tz="UTC"), pd.Timestamp("2024-01-26", tz="UTC")}
    first = chain.iloc[0]
    days = (pd.Timestamp("2024-01-19", tz="UTC") - AS_OF) / pd.Timedelta(days=1)
    assert first["days_to_expiry"] == pytest.approx(days)
    assert (first["type"], first["contract"], first["strike"]) == ("call", "AAPL240119C00175000", 175.0)
    missing_volume = chain.set_index("contract").loc["AAPL240119C00195000", "volume"]
    assert missing_volume == 0.0  # Yahoo left it out: NaN -> 0
    assert chain.attrs == {"symbol": "AAPL", "source": "yahoo", "spot": 185.92, "as_of": AS_OF}
    assert list(chain["type"].iloc[:5]) == ["call"] * 5 and chain["strike"].iloc[:5].is_monotonic_increasing


def test_yahoo_chosen_expiries_are_loaded_and_unknown_ones_refused(options_server):
    chain = load_option_chain("yahoo", "AAPL", expiries=["2024-01-26"], as_of=AS_OF)
    assert set(chain["expiry"]) == {pd.Timestamp("2024-01-26", tz="UTC")}
    with pytest.raises(DataError, match="available expiries are 2024-01-19, 2024-01-26"):
        load_option_chain("yahoo", "AAPL", expiries=["2024-02-02"], as_of=AS_OF)


def test_yahoo_symbol_without_options_is_a_data_error(options_server):
    with pytest.raises(DataError, match="no options for EURUSD=X"):
        load_option_chain("yahoo", "EURUSD=X")


def test_yahoo_without_network_is_source_unavailable(options_server):
    options_server.error = DNSError("Could not resolve host: query2.finance.yahoo.com")
    with pytest.raises(SourceUnavailableError, match="Cannot reach Yahoo Finance"):
        load_option_chain("yahoo", "AAPL")


def test_demo_chain_is_deterministic():
    one = load_option_chain("demo", "DEMO", as_of=AS_OF, seed=7)
    two = load_option_chain("demo", "DEMO", as_of=AS_OF, seed=7)
    other = load_option_chain("demo", "DEMO", as_of=AS_OF, seed=8)
    pd.testing.assert_frame_equal(one, two)
    assert one.attrs == two.attrs
    assert not one["volume"].equals(other["volume"])


def test_demo_chain_looks_like_a_market():
    chain = load_option_chain("demo", "ACME", as_of=AS_OF)
    spot = chain.attrs["spot"]
    assert list(chain.columns) == CHAIN_COLUMNS and chain.attrs["labels"] == []
    assert chain["days_to_expiry"].between(2, 60).all() and chain["expiry"].nunique() >= 5
    assert chain["strike"].min() < spot < chain["strike"].max()
    assert (chain["volume"] / chain["open_interest"]).max() < 2  # nothing unusual
    assert (chain["last_trade"] <= AS_OF).all() and (chain["last_price"] > 0).all()
    assert chain["contract"].str.fullmatch(r"ACME\d{6}[CP]\d{8}").all()
    calls = chain[chain["type"] == "call"]
    assert (calls["in_the_money"] == (calls["strike"] < spot)).all()
    near = chain[(chain["expiry"] == chain["expiry"].min()) & (chain["type"] == "call")]
    atm = near.iloc[(near["strike"] - spot).abs().argmin()]["implied_volatility"]
    assert near["implied_volatility"].iloc[0] > atm < near["implied_volatility"].iloc[-1]  # a smile


def test_demo_injects_unusual_short_dated_otm_calls_for_DEMO():
    chain = load_option_chain("demo", "DEMO", as_of=AS_OF)
    labels = chain.attrs["labels"]
    assert len(labels) == 3
    flagged = chain[chain["contract"].isin(labels)]
    assert (flagged["type"] == "call").all() and (flagged["strike"] > chain.attrs["spot"]).all()
    assert (flagged["days_to_expiry"] <= 7).all()
    assert (flagged["volume"] / flagged["open_interest"] > 5).all()
    rest = chain[~chain["contract"].isin(labels)]
    assert (rest["volume"] / rest["open_interest"]).max() < 2
    assert flagged["volume"].sum() > 2 * rest["volume"].sum()  # a flood, not a ripple
    assert not load_option_chain("demo", "DEMO", as_of=AS_OF, unusual=False).attrs["labels"]


def test_demo_expiry_filter_keeps_the_same_contracts():
    full = load_option_chain("demo", "DEMO", as_of=AS_OF)
    nearest = full["expiry"].min()
    part = load_option_chain("demo", "DEMO", as_of=AS_OF, expiries=[nearest])
    pd.testing.assert_frame_equal(part, full[full["expiry"] == nearest].reset_index(drop=True))
    assert part.attrs["labels"] == full.attrs["labels"]


@pytest.mark.parametrize("kwargs, message", [
    ({"source": "cboe", "symbol": "AAPL"}, "Unknown option source"),
    ({"source": "demo", "symbol": " "}, "Enter a symbol"),
    ({"source": "demo", "symbol": "DEMO", "as_of": "not a date"}, "as-of"),
    ({"source": "demo", "symbol": "DEMO", "expiries": ["1999-01-01"]}, "No expiry 1999-01-01"),
])
def test_bad_requests_are_data_errors(kwargs, message):
    with pytest.raises(DataError, match=re.escape(message)):
        load_option_chain(**kwargs)


def test_demo_volume_and_open_interest_are_whole_non_negative_numbers():
    chain = load_option_chain("demo", "DEMO", as_of=AS_OF)
    for column in ("volume", "open_interest"):
        values = chain[column].to_numpy()
        assert (values >= 0).all() and np.array_equal(values, np.round(values))
