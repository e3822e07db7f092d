"""The Explorer's figures, built from a real detection on the demo market."""
import numpy as np
import pandas as pd
import pytest

import detectors
from components.charts import (
    MAX_CANDLES_DRAWN,
    bars_per_candle,
    build_price_figure,
    build_signal_figure,
    drawing_groups,
)
from data.demo import demo_market


@pytest.fixture(scope="module")
def drawn():
    market = demo_market(seed=1, symbol="DEMO-USD", interval="1h")
    scored = detectors.score_detectors(market.candles)
    detection = scored.detect()
    figure = build_signal_figure(market.candles, scored.scores, scored.defaults, detection.events,
                                 severity=detection.severity, units=scored.units)
    return market, scored, detection, figure


def test_one_swimlane_row_per_detector_and_one_score_panel_each(drawn):
    _, scored, _, figure = drawn
    lanes = {y for t in figure.data if t.yaxis == "y" for y in t.y}
    assert lanes == {detectors.detector_class(n).label for n in scored.scores}
    assert {t.yaxis for t in figure.data} == {"y"} | {f"y{i}" for i in range(2, len(scored.scores) + 2)}


def test_every_flagged_bar_has_a_marker_inside_its_score_axis(drawn):
    _, scored, detection, figure = drawn
    for row, name in enumerate(scored.scores, start=2):
        axis = f"y{row}"
        top = figure.layout[f"yaxis{row}"].range[1]
        markers = [t for t in figure.data if t.yaxis == axis and t.mode.startswith("markers")]
        shown = sum(len(t.x) for t in markers)
        in_events = sum(detectors.is_flagged(scored.scores[name], scored.defaults[name])
                        & detection.flagged)
        assert shown == in_events
        assert all(np.max(t.y) <= top for t in markers), name   # a spike cut at the top keeps its marker
        for t in markers:              # ... and says its score beside it, the highest of each event's
            real = scored.scores[name].reindex(pd.to_datetime(np.asarray(t.x), unit="ms", utc=True)).to_numpy()
            cut = np.asarray(t.y) < real
            labels = np.asarray(t.text if t.text is not None else [""] * len(real))
            assert not any(labels[~cut])
            owners = np.asarray(t.customdata)[:, 0]
            for event in set(owners[cut]):
                mine = cut & (owners == event)
                assert [x for x in labels[mine] if x] == [f"{real[mine].max():.3g}"]


def test_the_price_figure_holds_candles_volume_and_the_labelled_spans(drawn):
    market, _, _, _ = drawn
    figure = build_price_figure(market.candles, labels=market.labels)
    kinds = [t.type for t in figure.data]
    assert kinds[0] == "candlestick" and "Labelled (demo ground truth)" in [t.name for t in figure.data]
    x = np.asarray(figure.data[0].x)   # over MAX_CANDLES_DRAWN the candles are resampled for drawing
    assert len(x) <= MAX_CANDLES_DRAWN < len(market.candles)
    bar_ms = pd.Series(market.candles.index).diff().median() // pd.Timedelta(milliseconds=1)
    factor = -(-len(market.candles) // MAX_CANDLES_DRAWN)
    assert x[0] == market.candles.index[0].value // 1_000_000   # counted from the first bar
    assert set(np.diff(x) % (bar_ms * factor)) == {0}            # whole buckets of bars, never odd ones
    assert x[-1] > market.candles.index[-factor - 1].value // 1_000_000   # the last bars are drawn
    title = figure.layout.annotations[0].text                  # and the chart says it is resampled
    assert f"{factor}-hour candles" in title and f"{len(market.candles):,} bars" in title and "1-hour" in title


def test_candles_at_or_under_the_limit_are_drawn_one_per_bar():
    candles = demo_market(seed=3, symbol="DEMO", interval="1h").candles.iloc[:MAX_CANDLES_DRAWN]
    figure = build_price_figure(candles)
    assert len(figure.data[0].x) == len(candles) and figure.layout.annotations[0].text == "Price"


def test_a_thinned_score_line_keeps_each_peak_at_its_own_bar():
    from components.charts import peaks_for_drawing
    index = pd.date_range("2024-01-01", periods=5_000, freq="h", tz="UTC")
    series = pd.Series(np.zeros(5_000), index=index)
    series.iloc[[7, 2_501, 4_999]] = [5.0, 9.0, 3.0]
    drawn = peaks_for_drawing(series, limit=1_000)
    assert len(drawn) <= 1_000
    assert drawn[drawn > 0].to_dict() == {index[7]: 5.0, index[2_501]: 9.0, index[4_999]: 3.0}


def test_an_opened_event_draws_its_own_bars_once_and_coarse_candles_around_it():
    candles = demo_market(seed=1, symbol="DEMO-USD", interval="1h").candles
    focus = (candles.index[1001], candles.index[1100])      # starts inside a two-bar bucket
    x = np.asarray(build_price_figure(candles, focus=focus).data[0].x)
    ms = candles.index.asi8 // 1_000_000
    bucket = 2 * (ms[1] - ms[0])
    assert set(ms[1000:1102]) <= set(x)                      # every bar of the touched buckets, once
    assert len(set(x)) == len(x)
    starts = x[:-1]
    coarse = np.isin(starts, ms[1000:1102], invert=True)
    # No coarse candle covers a bar that is also drawn alone, and none is lost between them.
    assert np.all(starts[coarse] + bucket <= x[1:][coarse])
    assert len(x) < len(candles)                             # coarse elsewhere


@pytest.mark.parametrize("index", [
    pd.bdate_range("2010-01-04", periods=2_500, tz="UTC"),                        # daily, weekends out
    pd.DatetimeIndex([day + pd.Timedelta(hours=14.5 + h) for day in pd.bdate_range("2023-01-02", periods=330, tz="UTC")
                      for h in range(7)]),                                          # 7 hourly bars a session
], ids=["business days", "sessions"])
def test_a_drawn_candle_never_spans_a_session_gap(index):
    groups = drawing_groups(index)
    bar = pd.Series(index).diff().median()
    assert groups[-1] + 1 <= MAX_CANDLES_DRAWN < len(index)
    steps = pd.Series(index).diff()
    within = np.r_[False, np.diff(groups) == 0]
    assert (steps[within] == bar).all()                    # bars of one candle follow each other
    assert pd.Series(groups).value_counts().max() == 2     # and there are at most 2 of them


@pytest.mark.parametrize("freq,bars,expected", [("1min", 27_360, 15), ("5min", 17_280, 12), ("1h", 2_184, 2),
                                                ("1h", 2_000, 1), ("1D", 3_000, 2), ("1D", 9_000, 5)])
def test_drawn_candles_have_a_round_length(freq, bars, expected):
    """14 one-minute bars would fit, but a 15-minute candle is what an analyst reads at a glance."""
    assert bars_per_candle(pd.date_range("2024-01-01", periods=bars, freq=freq, tz="UTC")) == expected
