"""From scores to events: flag grouping, severity combination, event rows and their kind."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_series_equal

import detectors
from detectors.ensemble import combine_severities
from events.build import EVENT_COLUMNS, event_id, flag_runs, to_events
from events.kinds import classify_event


def quiet_candles(n: int = 200, seed: int = 3) -> pd.DataFrame:
    """A calm hourly walk (0.5% moves, steady volume) to write shapes into."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.005, n)))
    frame = pd.DataFrame({"open": np.r_[100.0, close[:-1]], "close": close,
                          "volume": rng.lognormal(6.0, 0.1, n)},
                         index=pd.date_range("2024-03-01", periods=n, freq="h", tz="UTC",
                                             name="timestamp"))
    return _with_body_range(frame, "QUIET")


def _with_body_range(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    frame["open"] = frame["close"].shift(1).fillna(frame["open"])
    frame["high"] = frame[["open", "close"]].max(axis=1) * 1.001
    frame["low"] = frame[["open", "close"]].min(axis=1) * 0.999
    frame = frame[["open", "high", "low", "close", "volume"]]
    frame.attrs = {"symbol": symbol, "source": "test", "interval": "1h"}
    return frame


def spikes(frame: pd.DataFrame, at: dict[int, float]) -> pd.Series:
    """A score of 0 everywhere but the given bar positions."""
    values = np.zeros(len(frame))
    values[list(at)] = list(at.values())
    return pd.Series(values, index=frame.index)


# --------------------------------------------------------------------------- grouping

@pytest.mark.parametrize("flags, gap, starts, ends", [
    ([0, 1, 1, 0, 1], 0, [1, 4], [2, 4]),
    ([0, 1, 1, 0, 1], 1, [1], [4]),
    ([1, 0, 0, 1], 1, [0, 3], [0, 3]),
    ([1, 0, 0, 1], 2, [0], [3]),
    ([0, 0, 0], 2, [], []),
    ([1, 1, 1], 0, [0], [2]),
])
def test_flag_runs_case_table(flags, gap, starts, ends):
    got_starts, got_ends = flag_runs(np.array(flags, dtype=bool), gap)
    assert got_starts.tolist() == starts
    assert got_ends.tolist() == ends


def test_flag_runs_rejects_a_negative_gap():
    with pytest.raises(ValueError, match="merge_gap"):
        flag_runs(np.array([True]), -1)


# --------------------------------------------------------------------------- combining

NAN = np.nan


@pytest.mark.parametrize("mode, k, expected", [
    ("max", 2, [0.6, 0.2, NAN, 0.9]),
    ("mean", 2, [0.4, 0.2, NAN, 0.7]),
    ("vote", 2, [0.2, 0.0, NAN, 0.5]),   # the 2nd largest; a NaN cannot vote
    ("vote", 1, [0.6, 0.2, NAN, 0.9]),   # k=1 is max
    ("vote", 5, [0.2, 0.0, NAN, 0.5]),   # k above the detector count means all of them
])
def test_combine_severities_case_table(mode, k, expected):
    index = pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC")
    severities = {"a": pd.Series([0.6, 0.2, NAN, 0.9], index=index),
                  "b": pd.Series([0.2, NAN, NAN, 0.5], index=index)}
    combined = combine_severities(severities, mode=mode, k=k)
    assert_series_equal(combined, pd.Series(expected, index=index), check_names=False)


@pytest.mark.parametrize("severities, mode, k, message", [
    ({}, "max", 2, "at least one"),
    ({"a": pd.Series([0.1])}, "median", 2, "mode"),
    ({"a": pd.Series([0.1])}, "vote", 0, "k must"),
])
def test_combine_severities_rejects_bad_input(severities, mode, k, message):
    with pytest.raises(ValueError, match=message):
        combine_severities(severities, mode=mode, k=k)


# --------------------------------------------------------------------------- event rows

def test_event_columns_and_dtypes():
    frame = quiet_candles()
    events = to_events(frame, {"zscore": spikes(frame, {120: 8.0, 121: 6.0})}, {"zscore": 5.5})
    assert list(events.columns) == EVENT_COLUMNS
    assert len(events) == 1
    empty = to_events(frame, {"zscore": spikes(frame, {})}, {"zscore": 5.5})
    assert list(empty.columns) == EVENT_COLUMNS and empty.empty
    assert empty.dtypes.equals(events.dtypes)
    assert str(events["start"].dtype) == "datetime64[ns, UTC]"
    assert events["n_bars"].dtype == "int64"


def test_empty_candles_give_an_empty_table():
    frame = quiet_candles().iloc[:0]
    events = to_events(frame, {"zscore": pd.Series(dtype="float64")}, {"zscore": 3.0})
    assert events.empty and list(events.columns) == EVENT_COLUMNS


def test_evidence_of_one_event():
    frame = quiet_candles()
    frame.iloc[120, frame.columns.get_loc("close")] *= 1.05        # +5% jump ...
    frame.iloc[121, frame.columns.get_loc("close")] *= 1.03        # ... a bit of it stays
    frame.iloc[120:122, frame.columns.get_loc("volume")] *= [10.0, 4.0]
    frame = _with_body_range(frame, "QUIET")
    event = to_events(frame, {"zscore": spikes(frame, {120: 9.0, 121: 6.0})},
                      {"zscore": 5.5}).iloc[0]
    close, volume = frame["close"], frame["volume"]
    assert event["start"] == frame.index[120] and event["end"] == frame.index[121]
    assert event["n_bars"] == 2 and event["symbol"] == "QUIET" and event["interval"] == "1h"
    assert event["price_before"] == close.iloc[119]
    assert event["price_end"] == close.iloc[121]
    assert event["return_pct"] == pytest.approx(100 * (close.iloc[121] / close.iloc[119] - 1))
    moves = close.iloc[120:122] / close.iloc[119] - 1
    assert event["max_move_pct"] == pytest.approx(100 * moves.iloc[moves.abs().argmax()])
    assert event["volume_ratio"] == pytest.approx(volume.iloc[120] / volume.iloc[70:120].median())
    assert event["z_return"] > 5 and event["z_volume"] > 5
    assert event["peak_detector"] == "zscore" and event["peak_score"] == 9.0
    assert 0.5 < event["severity"] < 1 and event["one_in_bars"] > 100   # rarer than any other bar
    assert json.loads(event["scores_json"]) == {"zscore": 9.0}


def test_merge_gap_joins_nearby_flags():
    frame = quiet_candles()
    scores = {"zscore": spikes(frame, {100: 9.0, 103: 9.0})}
    assert len(to_events(frame, scores, {"zscore": 5.5}, merge_gap=2)) == 1
    assert len(to_events(frame, scores, {"zscore": 5.5}, merge_gap=1)) == 2
    merged = to_events(frame, scores, {"zscore": 5.5}, merge_gap=2).iloc[0]
    assert merged["n_bars"] == 4


def test_detectors_peak_and_vote_mode():
    frame = quiet_candles()
    scores = {"zscore": spikes(frame, {100: 6.0, 150: 12.0}),
              "pump_dump": spikes(frame, {100: 9.0}),
              "isolation_forest": pd.Series(np.nan, index=frame.index)}
    cuts = {"zscore": 5.5, "pump_dump": 3.0, "isolation_forest": 0.7}
    events = to_events(frame, scores, cuts)
    assert events["detectors"].tolist() == ["pump_dump,zscore", "zscore"]
    first = events.iloc[0]
    assert first["peak_detector"] == "pump_dump" and first["peak_score"] == 9.0
    assert json.loads(first["scores_json"]) == {"isolation_forest": None, "pump_dump": 9.0,
                                                "zscore": 6.0}
    voted = to_events(frame, scores, cuts, mode="vote", k=2)
    assert voted["start"].tolist() == [frame.index[100]]


def test_the_peak_detector_is_one_that_fired():
    """Found in Chromium: a z-score flag named the flash-crash rule (below its threshold, but a
    rarer score for that rule) as its peak detector."""
    frame = quiet_candles()
    # At bar 100 the z-score's 6.0 is its third highest, the pump rule's 2.9 its highest (rarer).
    scores = {"pump_dump": spikes(frame, {100: 2.9}), "zscore": spikes(frame, {50: 8.0, 100: 6.0, 150: 7.0})}
    events = to_events(frame, scores, {"zscore": 5.5, "pump_dump": 3.0})
    event = events[events["start"] == frame.index[100]].iloc[0]
    assert event["detectors"] == "zscore"
    assert event["peak_detector"] == "zscore" and event["peak_score"] == 6.0


def test_default_thresholds_come_from_the_registry():
    frame = quiet_candles()
    default = detectors.create("zscore").fit(frame).threshold      # learned from the bar size
    below, above = spikes(frame, {90: default * 0.9}), spikes(frame, {90: default * 1.1})
    assert to_events(frame, {"zscore": below}).empty
    assert len(to_events(frame, {"zscore": above})) == 1


def test_event_id_is_stable_and_ignores_the_detector_set():
    frame = quiet_candles()
    one = to_events(frame, {"zscore": spikes(frame, {120: 9.0})}, {"zscore": 5.5})
    two = to_events(frame, {"zscore": spikes(frame, {120: 9.0}),
                            "pump_dump": spikes(frame, {120: 1.0})},
                    {"zscore": 5.5, "pump_dump": 3.0})
    assert one["event_id"].iloc[0] == two["event_id"].iloc[0]
    assert len(one["event_id"].iloc[0]) == 16
    int(one["event_id"].iloc[0], 16)
    start = frame.index[120]
    assert one["event_id"].iloc[0] == event_id("QUIET", "1h", start)
    assert event_id("OTHER", "1h", start) != event_id("QUIET", "1h", start)
    assert event_id("QUIET", "15m", start) != event_id("QUIET", "1h", start)
    renamed = to_events(frame, {"zscore": spikes(frame, {120: 9.0})}, {"zscore": 5.5},
                        symbol="RENAMED")
    assert renamed["symbol"].iloc[0] == "RENAMED"


# --------------------------------------------------------------------------- kinds

def _shape(kind: str) -> tuple[pd.DataFrame, list[int]]:
    """Quiet candles with one shape written in, and the bars a detector would flag."""
    frame = quiet_candles(n=220)
    close = frame["close"].to_numpy().copy()
    volume = frame["volume"].to_numpy().copy()
    step = np.ones(len(close))
    if kind == "data_error":            # one print ten times too high
        close[150] *= 10
        flagged = [150, 151]
    elif kind == "pump_and_dump":       # +12% over 6 bars on volume, then most of it back
        step[145:151] = np.exp([0.005, 0.01, 0.015, 0.02, 0.03, 0.04])
        step[151:153] = np.exp([-0.07, -0.04])
        volume[145:153] *= 8
        flagged = [150, 151, 152]
    elif kind == "flash_crash":         # -8% in one bar, most of it back within 3
        step[150] = np.exp(-0.08)
        step[151:154] = np.exp(0.02)
        volume[150:154] *= 6
        flagged = [150]
    elif kind == "volume_surge":        # 8x volume, the price barely moves
        volume[150:154] *= 8
        flagged = [150, 151, 152, 153]
    else:
        raise ValueError(kind)
    if kind != "data_error":
        close = close * np.cumprod(step)
    frame = frame.assign(close=close, volume=volume)
    return _with_body_range(frame, "SHAPE"), flagged


@pytest.mark.parametrize("kind", ["data_error", "pump_and_dump", "flash_crash", "volume_surge"])
def test_to_events_names_the_shape(kind):
    frame, flagged = _shape(kind)
    events = to_events(frame, {"zscore": spikes(frame, {i: 9.0 for i in flagged})},
                       {"zscore": 5.5})
    assert events["kind"].tolist() == [kind]


@pytest.mark.parametrize("evidence, kind", [
    ({"z_return": 40.0, "z_return_reversal": -39.0}, "data_error"),
    ({"z_return": 40.0, "z_return_reversal": 2.0}, "price_spike"),
    ({"wick_ratio": 30.0}, "data_error"),
    ({"rise_sigma": 12.0, "reversal_sigma": 9.0, "volume_ratio": 6.0, "z_return": -5.0},
     "pump_and_dump"),
    ({"rise_sigma": 12.0, "reversal_sigma": 2.0, "volume_ratio": 6.0, "z_return": 4.0},
     "manipulation_suspected"),
    ({"drop_sigma": 10.0, "recovery_sigma": 7.0, "volume_ratio": 2.0}, "flash_crash"),
    ({"drop_sigma": 10.0, "recovery_sigma": 1.0, "z_return": -6.0, "volume_ratio": 2.0},
     "price_spike"),
    ({"z_return": 1.0, "volume_ratio": 5.0}, "volume_surge"),
    ({"z_return": -3.0, "volume_ratio": 4.9}, "price_spike"),
    ({"z_return": 2.0, "volume_ratio": 2.0}, "pattern_anomaly"),
    ({}, "pattern_anomaly"),
    ({"z_return": None, "volume_ratio": float("nan")}, "pattern_anomaly"),
])
def test_classify_event_case_table(evidence, kind):
    assert classify_event(evidence) == kind


def test_severity_does_not_move_with_the_threshold():
    frame = quiet_candles()
    scores = {"zscore": spikes(frame, {60: 8.0, 120: 4.0})}
    low = to_events(frame, scores, {"zscore": 3.0})
    high = to_events(frame, scores, {"zscore": 6.0})
    assert len(low) == 2 and len(high) == 1
    shared = low.set_index("event_id").loc[high["event_id"], "severity"]
    assert shared.tolist() == high["severity"].tolist()
    assert low["severity"].iloc[0] > low["severity"].iloc[1]      # the larger score ranks higher
