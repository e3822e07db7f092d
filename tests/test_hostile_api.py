"""The public functions on hostile arguments (found by fuzzing): a clear ValueError or a
well-formed result, never another exception or a silent wrong answer."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import detectors
from data import validate_candles
from evaluation.backtest import backtest_avoid_anomalies
from evaluation.metrics import evaluate


def make_candles(n: int, seed: int = 0, start: str = "2024-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    frame = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.001,
                          "low": np.minimum(open_, close) * 0.999, "close": close,
                          "volume": rng.lognormal(10, 0.3, n)},
                         index=pd.date_range(start, periods=n, freq="h", tz="UTC"))
    return validate_candles(frame, symbol="X")


@pytest.fixture(scope="module")
def candles():
    return make_candles(400)


def test_mean_mode_compares_each_bar_with_the_cuts_of_the_detectors_scored_there(candles):
    scored = detectors.score_detectors(candles, [("zscore", {"window": 10, "long_window": None}),
                                                 ("pump_dump", {"window": 150})])
    warm = scored.scores["pump_dump"].isna() & scored.scores["zscore"].notna()
    assert warm.sum() > 100
    for cut in (2.0, 3.0, 4.0):
        found = scored.detect({"zscore": cut}, mode="mean")
        # While the pump rule warms up, the mean is the z-score alone: so is the flag.
        assert found.flagged[warm].equals(found.detector_flags["zscore"][warm])
        assert (found.events["detectors"] != "").all()


@pytest.mark.parametrize("name", ["pump_dump", "flash_crash"])
def test_the_shape_rules_score_a_bar_on_the_shortest_data_they_accept(name):
    params = {"window": 10, "rise_bars": 2, "fall_bars": 3}
    shortest = 10 + 2 + 3 + 2
    det = detectors.create(name, **params).fit(make_candles(shortest))
    assert det.score(make_candles(shortest)).notna().sum() >= 1
    with pytest.raises(ValueError, match=f"needs .* = {shortest} bars; the data has {shortest - 1}"):
        detectors.create(name, **params).fit(make_candles(shortest - 1))


@pytest.mark.parametrize("specs", [[3], [("zscore", {}, "x")], [("zscore", "window=5")], 7])
def test_malformed_specs_say_what_to_pass(candles, specs):
    with pytest.raises(ValueError, match="specs must be detector names or \\(name, params\\) pairs"):
        detectors.detect(candles, specs)


@pytest.mark.parametrize("cut", [10 ** 400, math.inf, math.nan, "4", True, None])
def test_absurd_thresholds_say_what_to_pass(candles, cut):
    with pytest.raises(ValueError, match="threshold of 'zscore' must be a finite number"):
        detectors.detect(candles, ["zscore"], thresholds={"zscore": cut})


def test_headlines_of_the_wrong_shape_say_what_to_pass(candles):
    with pytest.raises(ValueError, match="headlines must be a DataFrame"):
        detectors.detect(candles, ["zscore"], thresholds={"zscore": 2.0}, headlines=[])


def test_unreadable_and_mixed_headline_times_do_not_break_the_news_context(candles):
    when = candles.index[200]
    headlines = pd.DataFrame({"timestamp": [when, when.tz_localize(None), "yesterday"],
                              "headline": ["Acme wins contract", "naive time", "no time"]})
    events = detectors.detect(candles, ["zscore"], thresholds={"zscore": 2.0}, headlines=headlines).events
    assert len(events) and "headline_count" in events and not events["headlines"].str.contains("no time").any()


@pytest.mark.parametrize("values, message", [
    (np.r_[np.zeros(397), [np.inf] * 3], "infinite score"),
    (np.array(["high"] * 400, dtype=object), "must hold numbers"),
])
def test_raw_scores_that_are_not_scores_are_refused(candles, values, message):
    with pytest.raises(ValueError, match=message):
        detectors.from_scores(candles, {"zscore": pd.Series(values, index=candles.index)})


def test_raw_scores_with_a_timestamp_twice_are_refused(candles):
    index = candles.index[[0, 0, *range(2, 400)]]
    with pytest.raises(ValueError, match="timestamp twice"):
        detectors.from_scores(candles, {"zscore": pd.Series(np.ones(400), index=index)})


def test_candles_without_a_time_zone_are_refused_before_any_work(candles):
    naive = candles.copy()
    naive.index = naive.index.tz_localize(None)
    with pytest.raises(ValueError, match="UTC DatetimeIndex"):
        detectors.detect(naive)


def test_headlines_are_found_for_events_at_the_end_of_pandas_time():
    from explain import HeadlineWindow
    end = pd.Timestamp("2262-04-11 23:00", tz="UTC")
    window = HeadlineWindow(pd.DataFrame({"timestamp": [end - pd.Timedelta(hours=2)], "headline": ["late"]}))
    assert [h["headline"] for h in window.near({"start": end - pd.Timedelta(hours=1), "end": end})] == ["late"]


@pytest.mark.parametrize("param", [dict(cooldown_bars=math.inf), dict(cooldown_bars=math.nan),
                                   dict(cost=math.nan), dict(slippage=math.inf), dict(capital=math.inf),
                                   dict(cost="0.1")])
def test_backtest_parameters_must_be_finite_numbers(candles, param):
    events = detectors.detect(candles).events
    with pytest.raises(ValueError, match=f"{next(iter(param))} must be a finite number"):
        backtest_avoid_anomalies(candles, events, **param)


def test_evaluate_names_the_label_columns_and_ranks_infinite_scores(candles):
    with pytest.raises(ValueError, match="columns start, end and kind"):
        evaluate(pd.Series(0.0, index=candles.index), pd.DataFrame())
    labels = pd.DataFrame({"start": [candles.index[100]], "end": [candles.index[102]], "kind": ["pump_and_dump"]})
    scores = pd.Series(0.0, index=candles.index)
    scores.iloc[101], scores.iloc[300] = np.inf, -np.inf
    result = evaluate(scores, labels, threshold=1.0)
    # +inf ranks first (precision 1 for a third of the bars), the rest tie at 0 (3 in 399).
    assert result["pr_auc"] == pytest.approx(1 / 3 + 2 / 3 * 3 / 399) and result["event_recall"] == 1.0


@pytest.mark.parametrize("k", [True, 0, -1, 2.5])
def test_a_vote_of_no_whole_number_of_detectors_says_what_to_pass(candles, k):
    with pytest.raises(ValueError, match="k must be a whole number of detectors"):
        detectors.detect(candles, mode="vote", k=k)
