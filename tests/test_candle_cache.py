"""Parquet candle cache: fetch only what is missing, refetch recent bars, serve offline."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from data import COLUMNS, CandleQuery, DataError, bybit, load_candles
from data.cached import (
    NoDataError,
    SourceUnavailableError,
    SymbolNotFoundError,
    cache_paths,
    describe_age,
    load_through_cache,
    missing_ranges,
)
from store import data_dir
from tests.test_bybit import FakeBybit

NOW = pd.Timestamp("2024-03-10 12:00", tz="UTC")


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def query(start, end, symbol="BTCUSDT", interval="1h", **options):
    return CandleQuery("bybit", symbol, ts(start), ts(end), interval, tuple(sorted(options.items())))


class FakeSource:
    """A source module: hourly bars whose close is ``level``; records each fetched range."""

    DEFAULT_OPTIONS = {"category": "spot"}

    def __init__(self):
        self.fetched: list[tuple[pd.Timestamp, pd.Timestamp]] = []
        self.error: Exception | None = None
        self.level = 100.0

    def fetch_raw(self, q, progress=None):
        self.fetched.append((q.start, q.end))
        if self.error is not None:
            raise self.error
        if progress is not None:
            progress(1.0, "done")
        return pd.date_range(q.start.ceil("h"), q.end, freq="h", inclusive="left", name="timestamp")

    def to_frame(self, raw, q):
        if len(raw) == 0:
            raise NoDataError("No bars here.")
        values = {c: self.level for c in COLUMNS}
        return pd.DataFrame(values, index=raw)


@pytest.fixture
def source():
    return FakeSource()


def test_second_load_of_the_same_range_fetches_nothing(source):
    q = query("2024-03-01", "2024-03-03")
    first = load_through_cache(source, q, now=NOW)
    second = load_through_cache(source, q, now=NOW + pd.Timedelta(hours=1))
    assert source.fetched == [(q.start, q.end)]
    pd.testing.assert_frame_equal(first, second)
    assert len(second) == 48 and second.attrs["fetched_at"] == NOW


def test_partial_overlap_fetches_only_the_missing_parts(source):
    load_through_cache(source, query("2024-03-02", "2024-03-03"), now=NOW)
    frame = load_through_cache(source, query("2024-03-01", "2024-03-05"), now=NOW)
    assert source.fetched[1:] == [(ts("2024-03-01"), ts("2024-03-02")), (ts("2024-03-03"), ts("2024-03-05"))]
    assert len(frame) == 96 and frame.index.is_unique and frame.index.is_monotonic_increasing


def test_progress_spans_all_missing_parts(source):
    load_through_cache(source, query("2024-03-02", "2024-03-03"), now=NOW)
    steps = []
    load_through_cache(source, query("2024-03-01", "2024-03-05"), progress=lambda f, m: steps.append(f), now=NOW)
    assert steps == [0.5, 1.0]


def test_recent_bars_are_always_fetched_again_and_replace_the_cached_ones(source):
    now = ts("2024-03-10 12:10")
    q = query("2024-03-09", "2024-03-10 13:00")
    load_through_cache(source, q, now=now)
    source.level = 101.0  # the still-open bar has moved on
    later = now + pd.Timedelta(minutes=20)
    frame = load_through_cache(source, q, now=later)
    refetched_from = source.fetched[1][0]
    assert source.fetched[1][1] == q.end
    assert ts("2024-03-10 10:00") <= refetched_from <= now - pd.Timedelta(hours=1)
    assert frame.loc[ts("2024-03-10 12:00"), "close"] == 101.0
    assert frame.loc[ts("2024-03-09 00:00"), "close"] == 100.0


def test_a_recent_bar_the_source_withdraws_is_gone_from_the_store_too(source):
    """A provisional bar the source no longer returns when the recent range is refetched is
    not kept in the market store, where every later load and scan would read it again."""
    from data.cached import _store
    now = ts("2024-03-10 12:10")
    q = query("2024-03-09", "2024-03-10 13:00")
    load_through_cache(source, q, now=now)
    withdrawn = ts("2024-03-10 11:00")
    fetch = source.fetch_raw
    source.fetch_raw = lambda q_, progress=None: fetch(q_, progress).drop(withdrawn, errors="ignore")
    assert withdrawn not in load_through_cache(source, q, now=now + pd.Timedelta(minutes=20)).index
    stored = _store().read("bybit", cache_paths(source, q)[0], "1h").index
    assert withdrawn not in stored and ts("2024-03-10 10:00") in stored and ts("2024-03-10 12:00") in stored


def test_offline_serves_cached_data_with_a_notice_of_what_is_missing(source):
    load_through_cache(source, query("2024-03-01", "2024-03-03"), now=NOW)
    source.error = SourceUnavailableError("Cannot reach Bybit")
    frame = load_through_cache(source, query("2024-03-01", "2024-03-04"), now=NOW + pd.Timedelta(hours=3))
    assert len(frame) == 48
    assert frame.attrs["notice"] == ("Offline: showing cached data fetched 3 hours ago; could not fetch "
                                     "2024-03-03 00:00 to 2024-03-04 00:00 UTC (Cannot reach Bybit)")


def test_offline_names_every_gap_not_fetched_and_stops_asking(source):
    load_through_cache(source, query("2024-03-02", "2024-03-03"), now=NOW)
    load_through_cache(source, query("2024-03-04", "2024-03-05"), now=NOW)
    source.error = SourceUnavailableError("Cannot reach Bybit")
    frame = load_through_cache(source, query("2024-03-01", "2024-03-06"), now=NOW)
    assert len(frame) == 48 and len(source.fetched) == 3   # the first gap failed: no more tries
    assert "could not fetch 2024-03-01 00:00 to 2024-03-02 00:00, 2024-03-03 00:00 to 2024-03-04 00:00, "\
           "2024-03-05 00:00 to 2024-03-06 00:00 UTC (Cannot reach Bybit)" in frame.attrs["notice"]


def test_a_symbol_the_source_no_longer_knows_is_noted_and_not_remembered(source):
    load_through_cache(source, query("2024-03-01", "2024-03-02"), now=NOW)
    source.error = SymbolNotFoundError("Bybit does not know BTCUSDT")
    frame = load_through_cache(source, query("2024-03-01", "2024-03-03"), now=NOW)
    assert len(frame) == 24 and frame.attrs["notice"].startswith("Not refreshed: showing cached data")
    assert "(Bybit does not know BTCUSDT)" in frame.attrs["notice"]
    source.error = None
    load_through_cache(source, query("2024-03-01", "2024-03-03"), now=NOW)
    assert source.fetched[-1] == (ts("2024-03-02"), ts("2024-03-03"))   # asked again


def test_an_unknown_symbol_is_never_cached(source):
    source.error = SymbolNotFoundError("Bybit does not know NOPE")
    for _ in range(2):
        with pytest.raises(SymbolNotFoundError):
            load_through_cache(source, query("2024-03-01", "2024-03-02", symbol="NOPE"), now=NOW)
    assert len(source.fetched) == 2
    assert not cache_paths(source, query("2024-03-01", "2024-03-02", symbol="NOPE"))[1].exists()
    assert not any("NOPE" in str(path) for path in (data_dir() / "market").rglob("*"))


def test_offline_without_cache_raises(source):
    source.error = SourceUnavailableError("Cannot reach Bybit")
    with pytest.raises(SourceUnavailableError):
        load_through_cache(source, query("2024-03-01", "2024-03-03"), now=NOW)


def test_other_data_errors_are_raised_even_with_a_cache(source):
    load_through_cache(source, query("2024-03-01", "2024-03-03"), now=NOW)
    source.error = DataError("Bybit rejected the interval")
    with pytest.raises(DataError, match="rejected"):
        load_through_cache(source, query("2024-03-01", "2024-03-04"), now=NOW)


def test_an_empty_gap_is_not_an_error_when_the_range_has_bars(source):
    load_through_cache(source, query("2024-03-01", "2024-03-02"), now=NOW)
    source.error = NoDataError("No bars here.")
    frame = load_through_cache(source, query("2024-03-01", "2024-03-03"), now=NOW)
    assert len(frame) == 24
    source.error = None
    load_through_cache(source, query("2024-03-01", "2024-03-03"), now=NOW)
    assert source.fetched[-1] == (ts("2024-03-02"), ts("2024-03-03"))  # asked again, not marked covered


@pytest.mark.parametrize("damage", ["parquet", "sidecar"])
def test_a_corrupt_cache_file_is_ignored_and_refetched(source, damage):
    q = query("2024-03-01", "2024-03-02")
    load_through_cache(source, q, now=NOW)
    key, sidecar = cache_paths(source, q)
    parts = sorted((data_dir() / "market").rglob("part-*.parquet"))
    (parts[0] if damage == "parquet" else sidecar).write_bytes(b"\x00not what it claims to be")
    frame = load_through_cache(source, q, now=NOW)
    assert len(frame) == 24 and len(source.fetched) == 2
    assert load_through_cache(source, q, now=NOW).equals(frame) and len(source.fetched) == 2


def test_bars_go_to_the_market_store_and_fetches_to_a_sidecar(source):
    q = query("2024-03-01", "2024-03-02")
    load_through_cache(source, q, now=NOW)
    key, sidecar = cache_paths(source, q)
    assert key == "BTCUSDT" and sidecar == data_dir() / "candles" / "bybit" / "BTCUSDT" / "1h.json"
    record = json.loads(sidecar.read_text())
    assert record["fetches"] == [{"start": q.start.isoformat(), "end": q.end.isoformat(),
                                  "fetched_at": NOW.isoformat()}]
    parts = list((data_dir() / "market").rglob("part-*.parquet"))
    assert len(parts) == 1 and "symbol=BTCUSDT" in str(parts[0]) and "interval=1h" in str(parts[0])
    # a later day appends a new file; the first one is never rewritten
    before = parts[0].stat().st_mtime_ns
    load_through_cache(source, query("2024-03-02", "2024-03-03"), now=NOW)
    assert len(list((data_dir() / "market").rglob("part-*.parquet"))) == 2 and parts[0].stat().st_mtime_ns == before


def test_non_default_options_get_their_own_series_and_symbols_stay_inside(source):
    spot = cache_paths(source, query("2024-03-01", "2024-03-02"))
    linear = cache_paths(source, query("2024-03-01", "2024-03-02", category="linear"))
    _, odd = cache_paths(source, query("2024-03-01", "2024-03-02", symbol="../../etc"))
    assert spot[0] != linear[0] and "category-linear" in linear[0] and "category-linear" in linear[1].name
    assert odd.resolve().is_relative_to(data_dir().resolve() / "candles")


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.text(min_size=1, max_size=400))
def test_cache_paths_are_safe_for_any_symbol(symbol):
    _, sidecar = cache_paths(FakeSource(), query("2024-03-01", "2024-03-02", symbol=symbol))
    root = (data_dir() / "candles").resolve()
    for path in (sidecar,):
        assert path.resolve().is_relative_to(root) and path.parent.parent.name == "bybit"
        assert all(0 < len(part.encode()) <= 80 and not part.startswith(".")
                   for part in path.relative_to(data_dir()).parts)


def test_long_and_odd_symbols_get_distinct_short_names():
    names = {cache_paths(FakeSource(), query("2024-03-01", "2024-03-02", symbol=s))[1].parent.name
             for s in ("A" * 300, "A" * 301, "BTC/USDT", "BTC_USDT", "^VIX", "EURUSD=X")}
    assert len(names) == 6 and "^VIX" in names and "EURUSD=X" in names


def test_missing_ranges_and_age_text():
    covered = [(ts("2024-03-02"), ts("2024-03-03")), (ts("2024-03-04"), ts("2024-03-05"))]
    assert missing_ranges(ts("2024-03-01"), ts("2024-03-06"), covered) == [
        (ts("2024-03-01"), ts("2024-03-02")), (ts("2024-03-03"), ts("2024-03-04")),
        (ts("2024-03-05"), ts("2024-03-06"))]
    assert missing_ranges(ts("2024-03-02"), ts("2024-03-03"), covered) == []
    assert describe_age(NOW - pd.Timedelta(minutes=1), NOW) == "1 minute ago"
    assert describe_age(NOW - pd.Timedelta(days=2, hours=5), NOW) == "2 days ago"


def test_load_candles_uses_the_cache_for_bybit(monkeypatch):
    fake = FakeBybit()
    monkeypatch.setattr(requests.Session, "get_adapter", lambda self, url: fake)
    monkeypatch.setattr(bybit, "_RATE_LIMITER", bybit.RequestRateLimiter())
    first = load_candles("bybit", "BTCUSDT", "2024-03-01", "2024-03-02", "1h")
    calls = len(fake.calls)
    second = load_candles("bybit", "BTCUSDT", "2024-03-01", "2024-03-02", "1h")
    assert len(fake.calls) == calls == 2
    pd.testing.assert_frame_equal(first, second)
    assert "fetched_at" in second.attrs
