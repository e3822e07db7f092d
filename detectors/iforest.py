"""Isolation Forest over trailing-window candle features (detection layer).

The forest sees, per bar, how unusual the bar is against the ``window`` bars before it
(|z| of the log return, z of log volume, z of the range, |z| of the 3-bar return), so it
learns which *combinations* of moves are rare rather than which price levels are.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from detectors.base import Detector, NotFittedError, ParamSpec, check_number, check_seed, check_whole
from detectors.features import feature_series, log_returns, rolling_zscore

#: Quantile of the training scores used as the default cut when contamination is "auto":
#: 1 bar in 200, since the ensemble's other detectors already flag the clearer cases.
DEFAULT_QUANTILE = 0.995
#: Bars in the multi-bar return feature (a move built over a few bars, not one tick).
SWING_BARS = 3
#: Most trees a forest may have: more adds nothing but minutes of fitting.
MAX_TREES = 2000


class IsolationForestDetector(Detector):
    """Isolation score of each bar's trailing features; higher = more anomalous.

    Parameters
    ----------
    window : int
        Trailing bars behind each feature's z (bar t itself excluded).
    n_estimators, contamination, random_state
        Passed to ``sklearn.ensemble.IsolationForest``. A float ``contamination`` also
        sets the default cut at that upper share of the training scores.
    threshold : float or None
        Cut in isolation score; None uses ``threshold_`` learned in ``fit`` (the 99.5th
        percentile of training scores, or the 1 - contamination quantile).

    Notes
    -----
    ``score`` is ``-IsolationForest.score_samples`` (scikit-learn's is lower = more
    abnormal), indexed like the candles, NaN during the warm-up (the first window + 3
    bars). Features at t use bars up to t; the forest is the one fitted in ``fit``.
    """

    label = "Isolation Forest"
    unit = "isolation score"
    parameters = (ParamSpec("window", "Feature window (bars)", 10, 500),
                  ParamSpec("n_estimators", "Trees", 50, 1000, 50))

    def __init__(self, window=50, n_estimators=200, contamination="auto", random_state=0,
                 threshold=None):
        self.window = window
        self.n_estimators = n_estimators
        self.contamination = contamination
        self.random_state = random_state
        self.threshold = threshold

    def _fit(self, frame: pd.DataFrame) -> None:
        check_whole("window", self.window, 2, 100_000)
        check_whole("n_estimators", self.n_estimators, 1, MAX_TREES)
        if self._threshold is not None:
            check_number("threshold", self._threshold, 0.0, 1.0, example="0.6")
        if not (isinstance(self.contamination, str) and self.contamination == "auto"):
            check_number("contamination", self.contamination, 0.0, 0.5, example='0.01 (or "auto")')
        check_seed("random_state", self.random_state)
        features = self._features(frame).dropna()
        if len(features) < 10:
            raise ValueError(f"window ({self.window} bars) leaves too few scorable bars in "
                             f"{len(frame)}: lower the window or load a longer range.")
        from sklearn.ensemble import IsolationForest  # here: listing detectors stays light
        self.model_ = IsolationForest(n_estimators=self.n_estimators,
                                      contamination=self.contamination,
                                      random_state=self.random_state).fit(features.to_numpy())
        training_scores = -self.model_.score_samples(features.to_numpy())
        auto = isinstance(self.contamination, str)
        share = DEFAULT_QUANTILE if auto else 1.0 - float(self.contamination)
        cut = float(np.quantile(training_scores, share))
        if (training_scores >= cut).mean() > 2 * (1 - share):
            # Ties at the cut (a flat market scores every bar alike): flag none of them.
            cut = float(np.nextafter(cut, np.inf))
        self.threshold_ = cut

    def _score(self, frame: pd.DataFrame) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise NotFittedError("Fit the Isolation Forest before scoring: detector.fit(candles).")
        features = self._features(frame)
        valid = features.notna().all(axis=1).to_numpy()
        out = np.full(len(frame), np.nan)
        if valid.any():
            out[valid] = -self.model_.score_samples(features.to_numpy()[valid])
        return out

    def _features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-bar inputs of the forest, NaN during warm-up."""
        close = frame["close"]
        swing = np.log(close / close.shift(SWING_BARS))
        return pd.DataFrame({
            "abs_z_return": rolling_zscore(log_returns(close), self.window).abs(),
            "z_volume": rolling_zscore(feature_series(frame, "volume"), self.window),
            "z_range": rolling_zscore(feature_series(frame, "range"), self.window),
            "abs_z_swing": rolling_zscore(swing, self.window).abs(),
        }, index=frame.index)
