"""Types and bounds at the public data API: wrong types and odd symbols are DataErrors that
name the fix, never a TypeError, AttributeError or OSError from deep inside."""
from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import data
from data import MAX_SYMBOL_LENGTH, DataError, check_symbol, load_candles
from data.news import load_headlines
from data.options import load_option_chain

REAL_SYMBOLS = ["AAPL", "^VIX", "^GSPC", "BRK-B", "BRK.B", "EURUSD=X", "ES=F", "M&M.NS", "7203.T",
                "BTC-USD", "BTCUSDT", "1000PEPEUSDT", "BTC-27DEC24", "BTC/USDT", "aapl"]


def test_max_symbol_length_is_exported_for_the_ui():
    assert "MAX_SYMBOL_LENGTH" in data.__all__ and MAX_SYMBOL_LENGTH == 32


@pytest.mark.parametrize("symbol", REAL_SYMBOLS)
def test_real_yahoo_and_bybit_symbols_are_accepted(symbol):
    assert check_symbol(f"  {symbol} ") == symbol


@pytest.mark.parametrize("symbol, message", [
    ("A" * 33, r"33 characters long; symbols have at most 32"),
    ("A" * 300, r"300 characters long"),
    ("AA PL", r"the character\(s\) ' '"),
    ("$AAPL", r"the character\(s\) '\$'"),
    ("AAPL;DROP", r"the character\(s\) ';'"),
    ("../../etc", r"'\.' as its first character"),
    ("-x", r"'-' as its first character"),
])
def test_odd_symbols_name_the_rule(symbol, message):
    with pytest.raises(DataError, match=message):
        check_symbol(symbol)


@pytest.mark.parametrize("source", ["yahoo", "bybit", "demo"])
def test_a_symbol_too_long_for_a_file_name_is_a_data_error_before_any_request(source):
    started = time.monotonic()
    with pytest.raises(DataError, match="at most 32"):
        load_candles(source, "X" * 300, "2024-01-01", "2024-01-05", "1d")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("kwargs, message", [
    ({"symbol": 5}, r"symbol must be text .*not int '5'"),
    ({"symbol": ["AAPL"]}, r"symbol must be text .*not list"),
    ({"symbol": b"AAPL"}, r"symbol must be text .*not bytes"),
    ({"interval": ["1h"]}, r"Unknown interval list .*choose one of 1m, 5m"),
    ({"interval": 60}, r"Unknown interval int '60'"),
    ({"interval": "2h"}, r"Unknown interval '2h'"),
    ({"source": None}, r"Unknown source NoneType"),
    ({"source": ["demo"]}, r"Unknown source list"),
])
def test_wrong_types_are_data_errors_naming_the_fix(kwargs, message):
    args = {"source": "demo", "symbol": "DEMO", "start": "2024-01-01", "end": "2024-01-05", "interval": "1h"}
    with pytest.raises(DataError, match=message):
        load_candles(**{**args, **kwargs})


ODD = st.one_of(st.none(), st.integers(), st.floats(), st.booleans(), st.binary(max_size=8),
                st.lists(st.text(max_size=3), max_size=2),
                st.dictionaries(st.text(max_size=2), st.integers(), max_size=1), st.text(max_size=40),
                st.sampled_from(["demo", "csv", "yahoo", "bybit", "DEMO", "1h", "1d"]))


@settings(max_examples=120, deadline=None, derandomize=True)
@given(ODD, ODD, ODD, ODD, ODD)
def test_any_arguments_give_candles_or_a_data_error(source, symbol, start, end, interval):
    if source in ("yahoo", "bybit"):
        source = "demo"   # stay offline: the network sources are tested against loopback
    try:
        load_candles(source, symbol, start, end, interval)
    except DataError as exc:
        assert str(exc)


def test_headlines_and_option_chains_check_their_arguments_too():
    with pytest.raises(DataError, match="symbol must be text"):
        load_headlines("demo", 5)
    with pytest.raises(DataError, match="whole number of at least 1"):
        load_headlines("demo", "DEMO", limit="10")
    with pytest.raises(DataError, match="symbol must be text"):
        load_option_chain("demo", 5)
    with pytest.raises(DataError, match="at most 32"):
        load_option_chain("yahoo", "Y" * 100)


def test_headline_files_are_read_only_from_regular_files(tmp_path):
    from data.news import read_headlines_csv

    fifo = tmp_path / "headlines.csv"
    os.mkfifo(fifo)
    started = time.monotonic()
    for path in ("/dev/zero", fifo):
        with pytest.raises(DataError, match="not a regular file"):
            read_headlines_csv(path)
    assert time.monotonic() - started < 2
