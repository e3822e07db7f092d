"""The offline demo market: shape, determinism, stylised facts and labelled events."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data import INTERVALS as DATA_INTERVALS
from data import DataError, load_candles, validate_candles
from data.demo import DEMO_INTERVALS, DEMO_SYMBOLS, LABEL_KINDS, DemoMarket, demo_market

STOCKS = ["DEMO", "ACME"]
CRYPTO = ["DEMO-USD", "PUMPCOIN"]
INTERVALS = ["1m", "5m", "15m", "30m", "1h", "4h", "1d"]


@pytest.fixture(scope="module")
def hourly() -> dict[str, DemoMarket]:
    """About 2,000 hourly bars per symbol (the default range)."""
    return {symbol: demo_market(seed=7, symbol=symbol) for symbol in DEMO_SYMBOLS}


@pytest.fixture(scope="module")
def long_crypto() -> DemoMarket:
    return demo_market(seed=3, symbol="DEMO-USD", start="2022-01-01", end="2024-01-01")


def _label_positions(market: DemoMarket) -> list[tuple[int, int, str]]:
    index = market.candles.index
    return [(index.get_loc(s), index.get_loc(e), k) for s, e, k in market.labels.itertuples(index=False)]


def _outside_events(market: DemoMarket) -> np.ndarray:
    """True for bars neither labelled nor right after a label (a data error's way back)."""
    keep = np.ones(len(market.candles), dtype=bool)
    for first, last, _ in _label_positions(market):
        keep[first:last + 2] = False
    return keep


def test_public_names():
    assert LABEL_KINDS == ("pump_and_dump", "flash_crash", "volume_surge", "news_gap",
                           "data_error", "regime_shift")
    assert {"DEMO", "DEMO-USD"} <= set(DEMO_SYMBOLS)
    assert DEMO_INTERVALS == tuple(INTERVALS)
    assert all(isinstance(text, str) and text for text in DEMO_SYMBOLS.values())


def test_same_arguments_give_identical_frames():
    args = dict(seed=11, symbol="PUMPCOIN", start="2024-01-01", end="2024-03-01", interval="1h")
    first, second = demo_market(**args), demo_market(**args)
    pd.testing.assert_frame_equal(first.candles, second.candles)
    pd.testing.assert_frame_equal(first.headlines, second.headlines)
    pd.testing.assert_frame_equal(first.labels, second.labels)


def test_another_seed_gives_another_market():
    args = dict(symbol="DEMO", start="2024-01-01", end="2024-03-01", interval="1h")
    first, second = demo_market(seed=1, **args), demo_market(seed=2, **args)
    assert first.candles.index.equals(second.candles.index)
    assert not np.allclose(first.candles["close"], second.candles["close"])
    assert not first.labels.equals(second.labels)


@pytest.mark.parametrize("symbol", list(DEMO_SYMBOLS))
def test_candles_are_canonical_without_repairs(hourly, symbol):
    candles = hourly[symbol].candles
    again = validate_candles(candles, symbol=symbol, source="demo", interval="1h")
    assert again.attrs["repairs"] == []
    pd.testing.assert_frame_equal(again, candles)
    assert list(candles.columns) == ["open", "high", "low", "close", "volume"]
    assert (candles.dtypes == "float64").all()
    assert candles.index.name == "timestamp" and str(candles.index.tz) == "UTC"
    assert candles.index.is_monotonic_increasing and candles.index.is_unique
    assert {k: candles.attrs[k] for k in ("symbol", "source", "interval")} == {
        "symbol": symbol, "source": "demo", "interval": "1h"}
    assert (candles["high"] >= candles[["open", "close"]].max(axis=1)).all()
    assert (candles["low"] <= candles[["open", "close"]].min(axis=1)).all()
    assert (candles["volume"] > 0).all()


@pytest.mark.parametrize("symbol", CRYPTO)
def test_open_is_previous_close_for_crypto(hourly, symbol):
    candles = hourly[symbol].candles
    bad_ticks = [first for first, _, kind in _label_positions(hourly[symbol]) if kind == "data_error"]
    opens, prev_close = candles["open"].to_numpy()[1:], candles["close"].to_numpy()[:-1]
    same = np.isclose(opens, prev_close, rtol=1e-12)
    # Only a bad tick (scaled bar) and the bar after it may differ.
    assert set(np.flatnonzero(~same) + 1) <= set(bad_ticks) | {b + 1 for b in bad_ticks}


def test_default_range_is_about_2000_bars_before_april_2024(hourly):
    for market in hourly.values():
        index = market.candles.index
        assert 1_900 <= len(index) <= 2_100
        assert index[-1] < pd.Timestamp("2024-04-01", tz="UTC")


@pytest.mark.parametrize("symbol", list(DEMO_SYMBOLS))
def test_labels_inside_range_sorted_apart_and_every_kind_present(hourly, symbol):
    market = hourly[symbol]
    labels, index = market.labels, market.candles.index
    assert list(labels.columns) == ["start", "end", "kind"]
    assert set(labels["kind"]) == set(LABEL_KINDS)
    assert labels["start"].isin(index).all() and labels["end"].isin(index).all()
    assert (labels["start"] <= labels["end"]).all()
    assert labels["start"].is_monotonic_increasing
    assert (labels["start"].iloc[1:].to_numpy() > labels["end"].iloc[:-1].to_numpy()).all()
    assert labels["start"].min() >= index[int(0.1 * len(index))]   # past the warm-up
    assert 150 <= len(index) / len(labels) <= 250


@pytest.mark.parametrize("seed", [5, 6])
def test_every_kind_present_in_1500_bars(seed):
    ranges = {"stock": ("2023-05-01", "2024-02-26"), "crypto": ("2024-01-01", "2024-03-04")}
    for symbol in DEMO_SYMBOLS:
        start, end = ranges["stock" if symbol in STOCKS else "crypto"]
        market = demo_market(seed=seed, symbol=symbol, start=start, end=end, interval="1h")
        assert 1_500 <= len(market.candles) < 1_550
        assert set(market.labels["kind"]) == set(LABEL_KINDS), symbol


def test_pumpcoin_has_more_pumps_than_demo_usd():
    args = dict(seed=2, start="2023-01-01", end="2024-01-01", interval="1h")
    pumps = {s: (demo_market(symbol=s, **args).labels["kind"] == "pump_and_dump").sum() for s in CRYPTO}
    assert pumps["PUMPCOIN"] > 1.5 * pumps["DEMO-USD"]


@pytest.mark.parametrize("symbol", STOCKS)
@pytest.mark.parametrize("interval", ["1m", "15m", "1h", "4h"])
def test_stock_trades_only_in_sessions(symbol, interval):
    index = demo_market(seed=1, symbol=symbol, start="2024-03-01", end="2024-03-20",
                        interval=interval).candles.index
    minutes = index.hour * 60 + index.minute
    assert (index.dayofweek < 5).all()
    assert ((minutes >= 14 * 60 + 30) & (minutes < 21 * 60)).all()
    assert index[0] == pd.Timestamp("2024-03-01 14:30", tz="UTC")   # a Friday's open


def test_stock_daily_bars_on_weekdays_at_midnight():
    index = demo_market(symbol="DEMO", start="2024-01-01", end="2024-03-01", interval="1d").candles.index
    assert (index.dayofweek < 5).all() and (index == index.normalize()).all()
    assert len(index) == 44   # Jan 23 weekdays + Feb 21


@pytest.mark.parametrize("symbol", CRYPTO)
def test_crypto_trades_around_the_clock(symbol):
    index = demo_market(symbol=symbol, start="2024-03-01", end="2024-03-15", interval="1h").candles.index
    assert len(index) == 14 * 24
    assert (np.diff(index.asi8) == 3600 * 10**9).all()
    assert set(index.dayofweek) == set(range(7))


@pytest.mark.parametrize("symbol", ["DEMO", "PUMPCOIN"])
@pytest.mark.parametrize("interval", INTERVALS)
def test_every_interval_works(symbol, interval):
    end = pd.Timestamp("2024-03-29", tz="UTC")
    step = DATA_INTERVALS[interval]
    market = demo_market(seed=3, symbol=symbol, start=end - 300 * step, end=end, interval=interval)
    candles = market.candles
    assert candles.attrs["interval"] == interval
    assert candles.index[0] >= end - 300 * step and candles.index[-1] < end
    anchor = 0 if symbol == "PUMPCOIN" or interval == "1d" else pd.Timedelta("14h30min").value
    assert ((candles.index.asi8 - candles.index.normalize().asi8 - anchor) % step.value == 0).all()
    assert validate_candles(candles).attrs["repairs"] == []
    if symbol == "PUMPCOIN":
        assert len(candles) == 300


def test_default_range_for_every_interval():
    for interval in INTERVALS:
        candles = demo_market(symbol="ACME", interval=interval).candles
        assert 1_800 <= len(candles) <= 2_200, interval


def test_returns_have_fat_tails_and_volatility_clustering(long_crypto):
    returns = np.log(long_crypto.candles["close"]).diff().to_numpy()
    quiet = _outside_events(long_crypto)
    clean = pd.Series(np.where(quiet, returns, np.nan))
    assert clean.kurt() > 1.0
    assert clean.abs().autocorr(1) > 0.1


def test_volume_rises_with_absolute_return(long_crypto):
    candles = long_crypto.candles
    moves = np.log(candles["close"]).diff().abs()
    quiet = _outside_events(long_crypto)
    # Spearman's rho as Pearson on ranks (pandas' method="spearman" imports SciPy: slow).
    assert candles["volume"][quiet].rank().corr(moves[quiet].rank()) > 0.3


def test_stock_volume_is_u_shaped_within_the_session():
    candles = demo_market(seed=4, symbol="DEMO", start="2023-06-01", end="2024-01-01",
                          interval="30m").candles
    by_bar = candles["volume"].groupby(candles.index.hour * 60 + candles.index.minute).median()
    middle = by_bar.iloc[len(by_bar) // 2]
    assert by_bar.iloc[0] > 1.5 * middle and by_bar.iloc[-2] > 1.5 * middle


def test_crypto_weekend_volume_is_lower(long_crypto):
    volume = long_crypto.candles["volume"]
    weekend = volume.index.dayofweek >= 5
    assert volume[weekend].median() < 0.85 * volume[~weekend].median()


def _trailing(series: pd.Series, position: int, bars: int = 48) -> pd.Series:
    return series.iloc[max(0, position - bars):position]


def test_events_stand_out_from_their_surroundings(long_crypto):
    """Each kind, measured against the 48 bars before it with robust (median) yardsticks."""
    candles = long_crypto.candles
    returns = np.log(candles["close"]).diff()
    log_volume = np.log(candles["volume"])
    for first, last, kind in _label_positions(long_crypto):
        typical_move = _trailing(returns, first).abs().median()
        move_ratio = (returns.iloc[first:last + 1].abs() / typical_move).max()
        volume_ratio = np.exp(log_volume.iloc[first:last + 1].max() - _trailing(log_volume, first).median())
        if kind in ("pump_and_dump", "flash_crash"):
            assert move_ratio > 5 and volume_ratio > 2.5, (kind, move_ratio, volume_ratio)
        elif kind == "news_gap":
            assert move_ratio > 5 and volume_ratio > 1.5, (kind, move_ratio, volume_ratio)
        elif kind == "volume_surge":
            assert volume_ratio > 2.5 and move_ratio < 4, (kind, move_ratio, volume_ratio)
        elif kind == "data_error":
            bar = candles.iloc[first]
            neighbour = candles["close"].iloc[first - 1]
            assert max(bar["high"] / neighbour, neighbour / bar["low"]) > 1.4, (kind, first)
        elif kind == "regime_shift":
            after = returns.iloc[first:first + 200].abs().median()
            before = _trailing(returns, first, 200).abs().median()
            assert after > 1.2 * before, (kind, after / before)


def test_pump_rises_then_reverses(long_crypto):
    close = long_crypto.candles["close"]
    returns = np.log(close).diff()
    for first, last, kind in _label_positions(long_crypto):
        if kind == "pump_and_dump":
            typical_move = _trailing(returns, first).abs().median()
            window = np.log(close.iloc[first - 1:last + 1])
            peak = window.to_numpy().argmax()
            assert 0 < peak < len(window) - 1                       # rises, then reverses
            assert window.iloc[peak] - window.iloc[0] > 5 * typical_move
            assert window.iloc[peak] - window.iloc[-1] > 5 * typical_move


@pytest.mark.parametrize("symbol", list(DEMO_SYMBOLS))
def test_pumps_and_news_gaps_come_with_their_headlines(hourly, symbol):
    market = hourly[symbol]
    news, index = market.headlines, market.candles.index
    step = pd.Timedelta(hours=1)
    for start, end, kind in market.labels.itertuples(index=False):
        if kind == "news_gap":
            catalyst = news[(news["label"] == "catalyst")
                            & news["timestamp"].between(index[index.get_loc(start) - 2] - step, start)]
            assert len(catalyst) == 1 and (catalyst["related_event"] == "news_gap").all()
        elif kind == "pump_and_dump":
            spam = news[(news["label"] == "promotional")
                        & news["timestamp"].between(start - pd.Timedelta(hours=4), end)]
            assert len(spam) >= 5 and (spam["related_event"] == "pump_and_dump").all()
            assert spam["source"].isin(["Telegram", "X/Twitter", "Discord"]).all()
    counts = market.labels["kind"].value_counts()
    assert (news["label"] == "catalyst").sum() == counts.get("news_gap", 0)


@pytest.mark.parametrize("symbol", list(DEMO_SYMBOLS))
def test_headline_stream_shape(hourly, symbol):
    market = hourly[symbol]
    news, index = market.headlines, market.candles.index
    assert list(news.columns) == ["timestamp", "headline", "source", "url", "label", "related_event"]
    assert str(news["timestamp"].dt.tz) == "UTC" and news["timestamp"].is_monotonic_increasing
    assert news["timestamp"].min() >= index[0].floor("D")
    assert news["timestamp"].max() < pd.Timestamp("2024-04-01", tz="UTC")   # the default end
    assert set(news["label"]) == {"normal", "catalyst", "promotional"}
    assert set(news["related_event"]) <= {"", "news_gap", "pump_and_dump"}
    assert (news.loc[news["label"] == "normal", "related_event"] == "").all()
    assert news["url"].map(lambda u: u == "" or u.startswith("https://example.com/demo/")).all()
    normal = news[news["label"] == "normal"]
    days = (index[-1] - index[0]) / pd.Timedelta(days=1)
    assert 1.0 <= len(normal) / days <= 4.0   # a few a day
    assert normal["headline"].nunique() > 50
    assert normal["source"].nunique() >= 4
    assert news["headline"].str.contains(symbol.split("-")[0], case=False).mean() > 0.5


def test_load_candles_returns_the_demo_candles():
    args = dict(start="2024-01-01", end="2024-02-01", interval="1h")
    loaded = load_candles("demo", "DEMO-USD", seed=9, **args)
    direct = demo_market(seed=9, symbol="DEMO-USD", **args).candles
    pd.testing.assert_frame_equal(loaded, direct)
    default_seed = load_candles("demo", "DEMO-USD", **args)
    pd.testing.assert_frame_equal(default_seed, demo_market(seed=7, symbol="DEMO-USD", **args).candles)


def test_fetch_raw_reports_progress():
    from data import CandleQuery
    from data.demo import fetch_raw, to_frame
    query = CandleQuery("demo", "ACME", pd.Timestamp("2024-01-01", tz="UTC"),
                        pd.Timestamp("2024-01-10", tz="UTC"), "1h", (("seed", 4),))
    calls = []
    raw = fetch_raw(query, progress=lambda fraction, message: calls.append((fraction, message)))
    assert calls and calls[-1][0] == 1.0
    assert to_frame(raw, query) is raw.candles
    assert len(raw.candles) == 7 * 7   # seven weekdays, seven hourly bars each


def test_unknown_symbol_names_the_valid_ones():
    with pytest.raises(DataError, match="DEMO-USD"):
        demo_market(symbol="NOPE")
    with pytest.raises(DataError, match="PUMPCOIN"):
        load_candles("demo", "AAPL", start="2024-01-01", end="2024-02-01")


@pytest.mark.parametrize("interval", ["1wk", "1mo", "2h", ""])
def test_unsupported_interval_is_refused(interval):
    with pytest.raises(DataError, match="1m, 5m"):
        demo_market(interval=interval)


def test_huge_range_is_refused_with_advice():
    with pytest.raises(DataError, match="500,000.*longer interval"):
        demo_market(symbol="DEMO-USD", start="2020-01-01", end="2024-01-01", interval="1m")
    with pytest.raises(DataError, match="500,000"):
        demo_market(symbol="DEMO", start="2000-01-01", end="2024-01-01", interval="1m")


def test_empty_ranges_are_refused():
    with pytest.raises(DataError, match="Widen the range"):
        demo_market(symbol="DEMO", start="2024-03-02", end="2024-03-04", interval="1h")   # weekend
    with pytest.raises(DataError, match="empty"):
        demo_market(start="2024-03-04", end="2024-03-01")


def test_tiny_range_has_no_events_but_works():
    market = demo_market(symbol="DEMO-USD", start="2024-01-01", end="2024-01-01 05:00", interval="1h")
    assert len(market.candles) == 5
    assert market.labels.empty and list(market.labels.columns) == ["start", "end", "kind"]
    assert str(market.labels["start"].dtype) == "datetime64[ns, UTC]"


# --- dates pandas cannot hold -------------------------------------------------------------

@pytest.mark.parametrize("start, end", [("2300-01-01", "2300-02-01"), ("1600-01-01", "1600-02-01"),
                                        ("2262-03-01", "2262-04-10"), ("9999-01-01", "9999-12-31"),
                                        ("0001-01-01", "2024-01-01")])
def test_dates_outside_pandas_range_name_the_supported_range(start, end):
    with pytest.raises(DataError, match=r"outside the supported range 1678-01-01 to 2262-01-01"):
        load_candles("demo", "DEMO", start, end, "1d")


def test_demo_market_end_outside_the_range_is_refused():
    with pytest.raises(DataError, match="supported range"):
        demo_market(symbol="DEMO", end="2300-01-01", interval="1d")


def test_the_edges_of_the_supported_range_work():
    assert len(load_candles("demo", "DEMO-USD", "2261-12-01", "2262-01-01", "1d")) == 31
    assert len(load_candles("demo", "DEMO-USD", "1678-01-01", "1678-02-01", "1d")) == 31


_ANY_TIME = st.one_of(
    st.datetimes(min_value=pd.Timestamp("0001-01-02").to_pydatetime(),
                 max_value=pd.Timestamp("9999-12-30").to_pydatetime()).map(lambda d: d.isoformat()),
    st.datetimes(), st.dates(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
    st.text(max_size=12), st.none())


@settings(max_examples=50, deadline=None, derandomize=True)
@given(_ANY_TIME, _ANY_TIME, st.sampled_from(["1h", "1d"]))
def test_any_start_and_end_give_candles_or_a_data_error(start, end, interval):
    try:
        candles = load_candles("demo", "DEMO-USD", start, end, interval)
    except DataError as exc:
        assert str(exc)
        return
    assert candles.index.is_monotonic_increasing and len(candles) > 0


def test_a_universe_name_is_its_demo_symbol_at_its_own_seed():
    """DEMO-0004 loads the same bars in the scanner and the Explorer, under its own name."""
    from data.demo import demo_spec, is_demo_symbol
    base, seed = demo_spec("DEMO-0004", 7)
    named = demo_market(seed=7, symbol="DEMO-0004", start="2024-01-01", end="2024-01-08")
    plain = demo_market(seed=seed, symbol=base, start="2024-01-01", end="2024-01-08")
    assert (named.candles.values == plain.candles.values).all()
    assert named.candles.attrs["symbol"] == "DEMO-0004" and base in named.candles.attrs["notice"]
    assert [is_demo_symbol(s) for s in ("DEMO-0004", "DEMO-10000", "DEMO-0000", "DEMO-10001", "NOPE")] == \
        [True, True, False, False, False]
    with pytest.raises(DataError, match="universe name DEMO-0001 to DEMO-10000"):
        demo_market(symbol="DEMO-0000")
