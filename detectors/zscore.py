"""Rolling z-score detector, in batch form and in an incremental form for live candles.

Both forms compute the same numbers: for each chosen feature the z of bar t against bars
t-window .. t-1 (see ``detectors.features``), and a score that is the largest of |z| for
returns and of the upward z for volume and range (a volume drought is not suspicious).
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any, Mapping

import numpy as np
import pandas as pd

from detectors.base import Detector
from detectors.features import (FEATURES, MAD_TO_STD, SCALE_FLOOR, feature_series,
                                rolling_zscore)

#: Features whose score counts only upward moves (surges), not drops.
UPWARD_ONLY = frozenset({"volume", "range"})


def _check_params(window: Any, features: Any, threshold: Any, min_periods: Any) -> None:
    """Raise ValueError, saying what to change, for parameters no data can make valid."""
    if not isinstance(window, (int, np.integer)) or window < 2:
        raise ValueError(f"window must be a whole number of bars, 2 or more; got {window!r}.")
    if isinstance(features, str) or not features:
        raise ValueError("features must be a non-empty list of names such as "
                         f"('returns', 'volume'); got {features!r}.")
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ValueError(f"Unknown feature(s) {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(FEATURES)}.")
    if threshold is None or not np.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"threshold must be a positive |z|, e.g. 3.0; got {threshold!r}.")
    if min_periods is not None and not 2 <= min_periods <= window:
        raise ValueError(f"min_periods must be between 2 and window ({window}); "
                         f"got {min_periods!r}.")


class RollingZScoreDetector(Detector):
    """Largest trailing z-score over the chosen features; higher = more anomalous.

    Parameters
    ----------
    window : int
        Bars in the trailing window the centre and scale come from (bar t itself excluded).
    features : tuple of str
        Any of "returns" (log returns, both directions), "volume" (surges only) and
        "range" ((high - low) / close, widening only).
    robust : bool
        Median and MAD * 1.4826 instead of mean and standard deviation.
    threshold : float
        Default cut in |z|. 5.5, not the textbook 3: returns and volume are fat-tailed, and
        3 sigma flags 1-2% of ordinary bars; 5.5 is where the demo benchmark
        (``bench/detection.py``) keeps at least half of the flagged events real.
    min_periods : int or None
        Prior bars needed before a bar is scored; default ``window``.

    Notes
    -----
    ``score`` is indexed like the candles, NaN while any chosen feature is warming up
    (the first ``min_periods`` bars, one more for returns), never looks ahead, and needs no
    fit: ``fit`` only checks the parameters against the data.
    """

    label = "Rolling z-score"
    unit = "|z|"

    def __init__(self, window=50, features=("returns", "volume"), robust=False,
                 threshold=5.5, min_periods=None):
        self.window = window
        self.features = features
        self.robust = robust
        self.threshold = threshold
        self.min_periods = min_periods

    def _fit(self, frame: pd.DataFrame) -> None:
        _check_params(self.window, self.features, self.threshold, self.min_periods)
        if self.window >= len(frame):
            raise ValueError(f"window ({self.window} bars) must be smaller than the data "
                             f"({len(frame)} bars): lower the window or load a longer range.")

    def score_components(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Signed z of each chosen feature, columns ``z_<feature>``, indexed like ``frame``."""
        self._check_frame(frame)
        _check_params(self.window, self.features, self.threshold, self.min_periods)
        return pd.DataFrame({
            f"z_{name}": rolling_zscore(feature_series(frame, name), self.window,
                                        robust=self.robust, min_periods=self.min_periods)
            for name in self.features}, index=frame.index)

    def _score(self, frame: pd.DataFrame) -> np.ndarray:
        z = self.score_components(frame)
        parts = [z[f"z_{name}"].clip(lower=0.0) if name in UPWARD_ONLY else z[f"z_{name}"].abs()
                 for name in self.features]
        # NaN in any part (warm-up) keeps the score NaN: np.maximum propagates NaN.
        return np.maximum.reduce([p.to_numpy() for p in parts])

    def incremental(self) -> "IncrementalZScore":
        """A streaming scorer with this detector's parameters (same numbers, one bar at a time)."""
        _check_params(self.window, self.features, self.threshold, self.min_periods)
        return IncrementalZScore(self.window, robust=self.robust, features=self.features,
                                 min_periods=self.min_periods)


class _TrailingStats:
    """Mean and sample std (Welford add/remove) of the last ``window`` values, O(1) per value."""

    __slots__ = ("values", "window", "min_periods", "n", "mean", "m2")

    def __init__(self, window: int, min_periods: int) -> None:
        self.values: deque[float] = deque()
        self.window, self.min_periods = window, min_periods
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def z_then_push(self, x: float) -> float:
        """z of ``x`` against the values so far (NaN while too few), then remember ``x``."""
        if x != x:  # NaN: nothing to score or remember
            return math.nan
        n = self.n
        z = math.nan
        if n >= self.min_periods:
            scale = math.sqrt(max(self.m2, 0.0) / (n - 1))
            z = (x - self.mean) / (scale if scale > SCALE_FLOOR else SCALE_FLOOR)
        self.values.append(x)
        n += 1
        delta = x - self.mean
        self.mean += delta / n
        self.m2 += delta * (x - self.mean)
        if n > self.window:
            old = self.values.popleft()
            n -= 1
            delta = old - self.mean
            self.mean -= delta / n
            self.m2 -= delta * (old - self.mean)
        self.n = n
        return z


class _TrailingMedian:
    """Median and MAD * 1.4826 of the last ``window`` values: O(window) per value, via a
    sorted list (bisect), since the MAD depends on every deviation from the new median."""

    __slots__ = ("values", "ordered", "window", "min_periods")

    def __init__(self, window: int, min_periods: int) -> None:
        self.values: deque[float] = deque()
        self.ordered: list[float] = []
        self.window, self.min_periods = window, min_periods

    def z_then_push(self, x: float) -> float:
        """z of ``x`` against the values so far (NaN while too few), then remember ``x``."""
        if x != x:
            return math.nan
        z = math.nan
        if len(self.ordered) >= self.min_periods:
            center = _median_sorted(self.ordered)
            scale = _median_sorted(sorted(abs(v - center) for v in self.ordered)) * MAD_TO_STD
            z = (x - center) / max(scale, SCALE_FLOOR)
        self.values.append(x)
        bisect.insort(self.ordered, x)
        if len(self.values) > self.window:
            old = self.values.popleft()
            del self.ordered[bisect.bisect_left(self.ordered, old)]
        return z


def _median_sorted(ordered: list[float]) -> float:
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


class IncrementalZScore:
    """Streaming twin of ``RollingZScoreDetector``: feed candles one at a time.

    ``update`` returns the same z values and score the batch detector gives for that bar
    (NaN during warm-up). Mean/std form: O(1) per candle (running Welford sums over a ring
    buffer). Robust form: O(window) per candle (sorted window; the MAD needs every value).

    Examples
    --------
    >>> inc = IncrementalZScore(window=3)
    >>> for close in (10.0, 10.1, 10.0, 10.1):
    ...     _ = inc.update(close, close, close, close, 100.0)
    >>> round(inc.update(12.0, 12.0, 12.0, 12.0, 100.0)["score"], 1)
    14.7
    """

    def __init__(self, window: int = 50, *, robust: bool = False,
                 features: tuple[str, ...] = ("returns", "volume"),
                 min_periods: int | None = None) -> None:
        _check_params(window, features, 1.0, min_periods)
        self.window = window
        self.robust = robust
        self.features = tuple(features)
        self.min_periods = window if min_periods is None else min_periods
        stats = _TrailingMedian if robust else _TrailingStats
        self._parts = [("z_" + name, name, name in UPWARD_ONLY, stats(window, self.min_periods))
                       for name in self.features]
        self._prev_close = math.nan

    def update(self, open: float, high: float, low: float, close: float,
               volume: float) -> dict[str, float]:
        """Score one new candle; returns ``z_<feature>`` for each feature and ``score``."""
        prev, self._prev_close = self._prev_close, close
        out: dict[str, float] = {}
        score = -math.inf
        for key, name, upward, stats in self._parts:
            if name == "returns":
                x = math.log(close / prev) if prev > 0 else math.nan
            elif name == "volume":
                x = volume
            else:
                x = (high - low) / close
            z = stats.z_then_push(x)
            out[key] = z
            part = max(z, 0.0) if upward else abs(z)   # max(nan, 0.0) is nan
            # NaN in any part (warm-up) keeps the score NaN, as in the batch form.
            if part != part or score != score:
                score = math.nan
            elif part > score:
                score = part
        out["score"] = score
        return out

    def update_one(self, row: Mapping[str, float]) -> dict[str, float]:
        """``update`` from a mapping or Series with open, high, low, close and volume."""
        return self.update(row["open"], row["high"], row["low"], row["close"], row["volume"])
