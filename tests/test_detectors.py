"""Detector contract (every candle detector) and the z-score, Isolation Forest and
pump-and-dump detectors' own behaviour."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal, assert_series_equal
from sklearn.base import clone

import detectors
from detectors.features import rolling_zscore, trailing_center_scale, volume_ratio
from detectors.zscore import IncrementalZScore, RollingZScoreDetector
from evaluation.metrics import evaluate

# The LSTM autoencoder trains for seconds per fit; its own tests (test_lstm.py) cover the
# contract for it, so this module keeps to the detectors that fit in milliseconds.
CANDLE_DETECTORS = [n for n in detectors.available("candles") if n != "lstm_autoencoder"]


def make_candles(n: int = 600, seed: int = 0, start: str = "2024-01-01") -> pd.DataFrame:
    """A quiet random walk in canonical shape (hourly, UTC)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    wiggle = np.abs(rng.normal(0.0, 0.003, (n, 2)))
    frame = pd.DataFrame({
        "open": open_, "high": np.maximum(open_, close) * (1 + wiggle[:, 0]),
        "low": np.minimum(open_, close) * (1 - wiggle[:, 1]), "close": close,
        "volume": rng.lognormal(10.0, 0.3, n)},
        index=pd.date_range(start, periods=n, freq="h", tz="UTC", name="timestamp"))
    frame.attrs = {"symbol": "TEST", "source": "test", "interval": "1h"}
    return frame


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return make_candles()


@pytest.fixture(scope="module")
def market():
    from data.demo import demo_market
    return demo_market(seed=7, symbol="DEMO-USD", start="2023-06-01", end="2024-04-01")


# --------------------------------------------------------------------------- contract

@pytest.mark.parametrize("name", CANDLE_DETECTORS)
def test_fit_returns_self_and_score_keeps_the_index(name, candles):
    det = detectors.create(name)
    assert det.fit(candles) is det
    scores = det.score(candles)
    assert scores.index.equals(candles.index)
    assert scores.dtype == "float64"
    assert det.threshold > 0


@pytest.mark.parametrize("name", CANDLE_DETECTORS)
def test_nan_only_during_warm_up(name, candles):
    scores = detectors.create(name).fit(candles).score(candles)
    missing = scores.isna().to_numpy()
    warm_up = int(np.argmin(missing))  # first scored bar
    assert 0 < warm_up < 120
    assert not missing[warm_up:].any()


@pytest.mark.parametrize("name", CANDLE_DETECTORS)
def test_no_look_ahead(name, candles):
    det = detectors.create(name).fit(candles.iloc[:400])
    past = det.score(candles.iloc[:450])
    with_future = det.score(candles).iloc[:450]
    assert_series_equal(with_future, past)


@pytest.mark.parametrize("name", CANDLE_DETECTORS)
def test_clone_round_trips(name, candles):
    det = detectors.create(name, window=30).fit(candles)
    copy = clone(det)
    assert copy.get_params() == det.get_params()
    assert type(copy) is type(det)
    assert not hasattr(copy, "model_")
    assert_series_equal(copy.fit(candles).score(candles), det.score(candles))


@pytest.mark.parametrize("name", CANDLE_DETECTORS)
def test_deterministic(name, candles):
    first = detectors.create(name).fit(candles).score(candles)
    second = detectors.create(name).fit(candles).score(candles)
    assert_series_equal(first, second)


@pytest.mark.parametrize("name", CANDLE_DETECTORS)
def test_better_than_chance_on_demo_labels(name, market):
    det = detectors.create(name).fit(market.candles)
    result = evaluate(det.score(market.candles), market.labels, det.threshold)
    assert result["pr_auc"] > 2 * result["base_rate"]


@pytest.mark.parametrize("name", CANDLE_DETECTORS)
def test_changing_the_threshold_never_refits(name, candles, monkeypatch):
    det = detectors.create(name).fit(candles)
    scores = det.score(candles)
    calls = []
    monkeypatch.setattr(type(det), "_fit", lambda self, frame: calls.append(frame))
    severity = det.calibrate(scores).severity(scores)
    for factor in (0.5, 1.0, 2.0):
        cut = det.threshold * factor
        pd.testing.assert_series_equal(det.severity(scores), severity)   # a cut never moves it
        detectors.to_events(candles, {name: scores}, {name: cut})
    det.set_params(threshold=det.threshold * 2)
    assert det.threshold > 0
    assert calls == []


@pytest.mark.parametrize("name, params, message", [
    ("zscore", {"window": 0}, "window"),
    ("zscore", {"window": 1000}, "smaller than the data"),
    ("zscore", {"threshold": -1.0}, "threshold"),
    ("zscore", {"threshold": 0.0}, "threshold"),
    ("zscore", {"features": ("returns", "sentiment")}, "sentiment"),
    ("zscore", {"min_periods": 1}, "min_periods"),
    ("isolation_forest", {"window": -5}, "window"),
    ("isolation_forest", {"window": 590}, "window"),
    ("isolation_forest", {"threshold": -0.1}, "threshold"),
    ("pump_dump", {"rise_bars": 0}, "rise_bars"),
    ("pump_dump", {"window": 700}, r"needs window \+ rise_bars \+ fall_bars \+ 2 = 708 bars"),
    ("pump_dump", {"threshold": 0}, "threshold"),
])
def test_invalid_parameters_say_what_to_change(name, params, message, candles):
    det = detectors.create(name, **params)  # the constructor only stores them
    with pytest.raises(ValueError, match=message):
        det.fit(candles)


def test_scoring_needs_canonical_candles(candles):
    with pytest.raises(ValueError, match="canonical candles"):
        detectors.create("zscore").score(candles.reset_index())


# --------------------------------------------------------------------------- z-score

def _frame(close, volume=None):
    close = np.asarray(close, dtype=float)
    volume = np.full(len(close), 100.0) if volume is None else np.asarray(volume, dtype=float)
    index = pd.date_range("2024-01-01", periods=len(close), freq="h", tz="UTC", name="timestamp")
    return pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                         "volume": volume}, index=index)


@pytest.mark.parametrize("values, window, expected", [
    # z at t uses the window before t: mean 2, std 1 -> (5 - 2) / 1
    ([1.0, 2.0, 3.0, 5.0], 3, [np.nan, np.nan, np.nan, 3.0]),
    # a constant window: the scale floor keeps z finite, and 0 for an equal value
    ([4.0, 4.0, 4.0, 4.0], 3, [np.nan, np.nan, np.nan, 0.0]),
    ([1.0, 3.0, 1.0, 3.0, 1.0], 2, [np.nan, np.nan, -0.5 ** 0.5, 0.5 ** 0.5, -0.5 ** 0.5]),
])
def test_rolling_zscore_case_table(values, window, expected):
    index = pd.date_range("2024-01-01", periods=len(values), freq="h", tz="UTC")
    result = rolling_zscore(pd.Series(values, index=index), window)
    assert_series_equal(result, pd.Series(expected, index=index))


def test_robust_zscore_uses_median_and_mad():
    index = pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC")
    values = pd.Series([1.0, 2.0, 3.0, 100.0, 4.0, 10.0], index=index)
    center, scale = trailing_center_scale(values, 5, robust=True)
    # bars 0..4: median 3, absolute deviations 2,1,0,97,1 -> MAD 1
    assert center.iloc[5] == 3.0
    assert scale.iloc[5] == pytest.approx(1.4826)
    assert rolling_zscore(values, 5, robust=True).iloc[5] == pytest.approx(7 / 1.4826)


def test_constant_series_stays_finite_after_warm_up():
    frame = _frame(np.full(120, 50.0))
    det = RollingZScoreDetector(window=20, features=("returns", "volume", "range"))
    scores = det.fit(frame).score(frame)
    assert np.isfinite(scores.iloc[21:]).all()
    assert (scores.iloc[21:] == 0).all()


def test_zscore_score_is_largest_component_with_volume_upward_only():
    close = 100 * np.exp(np.cumsum(np.r_[0.0, np.tile([0.01, -0.01], 30)]))
    volume = np.r_[np.tile([100.0, 110.0], 30), 10.0]   # a volume drought at the end
    frame = _frame(close, volume)
    det = RollingZScoreDetector(window=20, features=("returns", "volume"))
    parts = det.score_components(frame)
    scores = det.score(frame)
    assert list(parts.columns) == ["z_returns", "z_volume"]
    assert parts["z_volume"].iloc[-1] < -3
    expected = np.maximum(parts["z_returns"].abs(), parts["z_volume"].clip(lower=0))
    assert_series_equal(scores, expected.rename("zscore"))


def test_zscore_flags_a_spike_without_masking_it(candles):
    frame = candles.copy()
    frame.iloc[300, frame.columns.get_loc("close")] *= 1.2
    scores = RollingZScoreDetector().fit(frame).score(frame)
    assert scores.iloc[300] > 10
    assert scores.iloc[300] == scores.max()


@pytest.mark.parametrize("robust", [False, True])
@pytest.mark.parametrize("min_periods", [None, 5])
@pytest.mark.parametrize("features", [("returns", "volume", "range"), ("volume",)])
def test_incremental_matches_batch(candles, robust, min_periods, features):
    det = RollingZScoreDetector(window=30, features=features, robust=robust,
                                min_periods=min_periods)
    batch = det.score_components(candles).assign(score=det.score(candles))
    stream = det.incremental()
    rows = [stream.update_one(row) for row in candles.to_dict("records")]
    live = pd.DataFrame(rows, index=candles.index)[batch.columns]
    assert_frame_equal(live, batch, check_names=False, rtol=1e-9, atol=1e-9)


def test_incremental_update_takes_plain_numbers():
    stream = IncrementalZScore(window=3, long_window=None, features=("returns", "volume"))
    for close in (10.0, 10.1, 10.0, 10.1, 12.0):
        out = stream.update(close, close, close, close, 100.0)
    assert set(out) == {"z_returns", "z_volume", "score"}
    assert out["score"] == pytest.approx(14.7, abs=0.05)   # the return jump; volume flat


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(min_value=1e-3, max_value=1e4), seed=st.integers(0, 10_000))
def test_zscores_unchanged_by_a_positive_scale_of_prices(scale, seed):
    frame = make_candles(n=150, seed=seed)
    scaled = frame.copy()
    scaled[["open", "high", "low", "close"]] *= scale
    det = RollingZScoreDetector(window=40, features=("returns", "volume", "range"))
    assert_frame_equal(det.score_components(scaled), det.score_components(frame),
                       rtol=1e-6, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000),
       cuts=st.lists(st.floats(min_value=0.1, max_value=20.0), min_size=2, max_size=6))
def test_flag_counts_never_rise_as_the_threshold_rises(seed, cuts):
    frame = make_candles(n=200, seed=seed)
    det = RollingZScoreDetector(window=30)
    scores = det.score(frame)
    counts = [int(detectors.is_flagged(scores, cut).sum()) for cut in sorted(cuts)]
    assert counts == sorted(counts, reverse=True)
    # through the pipeline too: the same flags
    found = [int(detectors.from_scores(frame, {"zscore": scores}, {"zscore": cut}).flagged.sum())
             for cut in sorted(cuts)]
    assert found == counts


# --------------------------------------------------------------------------- other detectors

def test_isolation_forest_threshold_is_learned_and_overridable(candles):
    det = detectors.create("isolation_forest")
    with pytest.raises(ValueError, match="[Ff]it"):
        det.threshold
    assert det.get_params()["threshold"] is None
    det.fit(candles)
    scores = det.score(candles).dropna()
    assert det.threshold == det.threshold_
    assert (scores >= det.threshold).mean() == pytest.approx(0.005, abs=0.004)
    assert det.get_params()["threshold"] is None
    det.set_params(threshold=0.9)
    assert det.threshold == 0.9


def test_volume_ratio_against_trailing_median():
    index = pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC")
    volume = pd.Series([1.0, 2.0, 3.0, 30.0, 0.0], index=index)
    assert_series_equal(volume_ratio(volume, 3),
                        pd.Series([np.nan, np.nan, np.nan, 15.0, 0.0], index=index))


def test_pump_dump_scores_the_shape_at_the_dump():
    rng = np.random.default_rng(1)
    returns = rng.normal(0.0, 0.01, 200)
    volume = rng.lognormal(8.0, 0.2, 200)
    returns[150:156] = [0.01, 0.02, 0.03, 0.04, 0.06, 0.08]   # accelerating rise
    returns[156:158] = [-0.12, -0.10]                          # the dump
    volume[150:158] *= 8
    frame = _frame(100 * np.exp(np.cumsum(returns)), volume)
    det = detectors.create("pump_dump").fit(frame)
    scores = det.score(frame)
    parts = det.score_components(frame)
    assert scores.iloc[:155].max() < det.threshold          # nothing before the reversal
    assert scores.iloc[156:158].max() > 2 * det.threshold
    assert parts["volume_factor"].iloc[157] == 1.0
    # the same rise that keeps going is no pump-and-dump
    rising = frame.copy()
    rising["close"] = 100 * np.exp(np.cumsum(np.r_[returns[:156], [0.02, 0.02], returns[158:]]))
    assert det.score(rising).iloc[156:160].max() < det.threshold


def test_flash_crash_scores_the_mirrored_shape_at_the_rebound():
    rng = np.random.default_rng(2)
    returns = rng.normal(0.0, 0.01, 200)
    volume = rng.lognormal(8.0, 0.2, 200)
    returns[150:152] = [-0.09, -0.07]                          # the crash
    returns[152:155] = [0.05, 0.04, 0.03]                      # most of it comes back
    volume[150:155] *= 8
    frame = _frame(100 * np.exp(np.cumsum(returns)), volume)
    det = detectors.create("flash_crash").fit(frame)
    scores, parts = det.score(frame), det.score_components(frame)
    assert list(parts.columns) == ["fall_z", "rebound_z", "volume_factor"]
    assert scores.iloc[:151].max() < det.threshold           # nothing before the rebound
    assert scores.iloc[152:155].max() > 1.5 * det.threshold
    # a crash that does not come back is no flash crash, and a pump scores nothing here
    falling = frame.copy()
    falling["close"] = 100 * np.exp(np.cumsum(np.r_[returns[:152], [-0.02] * 3, returns[155:]]))
    assert det.score(falling).iloc[152:158].max() < det.threshold
    pumped = frame.copy()
    pumped["close"] = 100 * np.exp(np.cumsum(np.r_[returns[:150], -returns[150:155], returns[155:]]))
    assert det.score(pumped).iloc[150:158].max() < det.threshold
    assert detectors.create("pump_dump").fit(pumped).score(pumped).iloc[152:155].max() > det.threshold


@pytest.mark.parametrize("name, params, kinds, recall", [
    ("zscore", {}, ["flash_crash", "news_gap"], 0.8),
    ("pump_dump", {}, ["pump_and_dump"], 1.0),
    ("flash_crash", {}, ["flash_crash"], 0.6),
    ("isolation_forest", {}, ["flash_crash", "news_gap"], 0.8),
])
def test_each_detector_finds_the_kinds_it_is_meant_for(market, name, params, kinds, recall):
    det = detectors.create(name, **params).fit(market.candles)
    result = evaluate(det.score(market.candles), market.labels, det.threshold, kinds=kinds)
    assert result["n_labels"] >= 6
    for kind in kinds:
        assert result["recall_by_kind"][kind] >= recall, (kind, result["recall_by_kind"])


@pytest.mark.parametrize("name", CANDLE_DETECTORS)
def test_a_zero_price_is_refused_with_what_to_fix(name, candles):
    broken = candles.copy()
    broken.iloc[150, broken.columns.get_loc("low")] = 0.0
    with pytest.raises(ValueError, match="positive prices"):
        detectors.create(name).fit(broken)
