"""Rolling z-score detector, in batch form and in an incremental form for live candles.

Both forms compute the same numbers: for each chosen feature the z of bar t against two
trailing baselines, a short one (bars t-window .. t-1) and a long one (up to long_window bars
before t), keeping the larger; the score is the largest of |z| for log returns and of the
upward z for log volume and range (a volume drought is not suspicious).

Why two baselines: after a first shock the short baseline's standard deviation is inflated
and the next shock of a volatile spell no longer stands out against it (the second and third
COVID crash days, crypto contagion days); against the long baseline it still does. On real
markets (``bench/real_markets.py``) this finds 47 of 48 daily events at 5.9 flagged days
per symbol-year, where one 48-bar baseline needs 8.
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any, Mapping

import numpy as np
import pandas as pd

from detectors.base import Detector, ParamSpec, check_flag, check_names, check_number, check_whole
from detectors.features import (
    FEATURES,
    MAD_TO_STD,
    RANGE_FLOOR,
    SCALE_FLOOR,
    churn,
    log_returns,
    log_volume,
    range_ratio,
    rolling_zscore,
)

#: Features whose score counts only upward moves (surges), not drops.
UPWARD_ONLY = frozenset({"volume", "range", "churn"})
#: The series each feature's z is taken of: log volume, as volume is log-normal-like.
SERIES = {"returns": lambda c: log_returns(c["close"]), "volume": lambda c: log_volume(c["volume"]),
          "range": range_ratio, "churn": churn}
#: The default cut in |z| at one bar per day; it rises by 1 per decade of bars per day.
BASE_CUT = 3.6


def default_cut(index: pd.DatetimeIndex) -> float:
    """BASE_CUT + log10(bars per active day): more bars a day are more draws a day, and
    intraday returns are fatter-tailed, so the same |z| is less rare; this keeps the flagged
    days per year of hourly and daily bars alike (3.6 daily, about 5.0 for 24 bars a day)."""
    days = max(len(pd.DatetimeIndex(index).normalize().unique()), 1)
    return BASE_CUT + math.log10(max(len(index) / days, 1.0))


def _check_params(window: Any, features: Any, threshold: Any, min_periods: Any,
                  long_window: Any = None, robust: Any = False) -> None:
    """Raise ValueError, saying what to change, for parameters no data can make valid."""
    check_whole("window", window, 2, 100_000)
    if long_window is not None:
        check_whole("long_window", long_window, window, 1_000_000)
    check_names("features", features, FEATURES, example="('returns', 'volume')")
    check_flag("robust", robust)
    if threshold is not None:
        check_number("threshold", threshold, 0.0, 1e6, example="4.0")
    if min_periods is not None:
        check_whole("min_periods", min_periods, 2, window)


class RollingZScoreDetector(Detector):
    """Largest trailing z-score over the chosen features and two baselines; higher = more anomalous.

    Parameters
    ----------
    window : int
        Bars in the short trailing baseline (bar t itself excluded).
    long_window : int or None
        Bars in the long baseline (expanding from ``min_periods`` up to this many); None uses
        the short one only.
    features : tuple of str
        Any of "returns" (log returns, both directions), "volume" (log volume, surges only),
        "range" ((high - low) / close, widening only) and "churn" (log volume over log range:
        volume that moves no price, as wash trades do; surges only).
    robust : bool
        Median and MAD * 1.4826 instead of mean and standard deviation.
    threshold : float or None
        Cut in |z|; None learns it in ``fit`` from the bar size (``default_cut``: 3.6 for
        daily bars, about 5.0 for hourly crypto), chosen on real markets.
    min_periods : int or None
        Prior bars needed before a bar is scored; default ``window``.

    Notes
    -----
    ``score`` is indexed like the candles, NaN while any chosen feature is warming up
    (the first ``min_periods`` bars, one more for returns) and never looks ahead.
    """

    label = "Rolling z-score"
    unit = "|z|"
    parameters = (ParamSpec("window", "Short baseline (bars)", 10, 500),
                  ParamSpec("long_window", "Long baseline (bars)", 100, 5000, 100))

    def __init__(self, window=100, long_window=1000, features=("returns", "volume", "churn"), robust=False,
                 threshold=None, min_periods=None):
        self.window = window
        self.long_window = long_window
        self.features = features
        self.robust = robust
        self.threshold = threshold
        self.min_periods = min_periods

    def _params_ok(self) -> None:
        _check_params(self.window, self.features, self._threshold, self.min_periods, self.long_window,
                      self.robust)

    def _fit(self, frame: pd.DataFrame) -> None:
        self._params_ok()
        if self.window >= len(frame):
            raise ValueError(f"window ({self.window} bars) must be smaller than the data "
                             f"({len(frame)} bars): lower the window or load a longer range.")
        self.threshold_ = default_cut(frame.index)

    def score_components(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Signed z of each chosen feature (the baseline giving the larger |z|), columns
        ``z_<feature>``, indexed like ``frame``."""
        self._check_frame(frame)
        self._params_ok()
        out = {}
        for name in self.features:
            values = SERIES[name](frame)
            z = rolling_zscore(values, self.window, robust=self.robust, min_periods=self.min_periods)
            if self.long_window:
                longer = rolling_zscore(values, self.long_window, robust=self.robust,
                                        min_periods=self.min_periods or self.window)
                # Both baselines start scoring at the same bar, so NaN in one means NaN in both.
                keep = z >= longer if name in UPWARD_ONLY else z.abs() >= longer.abs()
                z = z.where(keep, longer)
            out[f"z_{name}"] = z
        return pd.DataFrame(out, index=frame.index)

    def _score(self, frame: pd.DataFrame) -> np.ndarray:
        z = self.score_components(frame)
        parts = [z[f"z_{name}"].clip(lower=0.0) if name in UPWARD_ONLY else z[f"z_{name}"].abs()
                 for name in self.features]
        # NaN in any part (warm-up) keeps the score NaN: np.maximum propagates NaN.
        return np.maximum.reduce([p.to_numpy() for p in parts])

    def incremental(self) -> "IncrementalZScore":
        """A streaming scorer with this detector's parameters (same numbers, one bar at a time)."""
        self._params_ok()
        return IncrementalZScore(self.window, long_window=self.long_window, robust=self.robust,
                                 features=self.features, min_periods=self.min_periods)


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
    >>> inc = IncrementalZScore(window=3, long_window=None)
    >>> for close in (10.0, 10.1, 10.0, 10.1):
    ...     _ = inc.update(close, close, close, close, 100.0)
    >>> round(inc.update(12.0, 12.0, 12.0, 12.0, 100.0)["score"], 1)
    14.7
    """

    def __init__(self, window: int = 100, *, long_window: int | None = 1000, robust: bool = False,
                 features: tuple[str, ...] = ("returns", "volume", "churn"),
                 min_periods: int | None = None) -> None:
        _check_params(window, features, 1.0, min_periods, long_window, robust)
        self.window = window
        self.robust = robust
        self.features = tuple(features)
        self.min_periods = window if min_periods is None else min_periods
        stats = _TrailingMedian if robust else _TrailingStats
        self._parts = [("z_" + name, name, name in UPWARD_ONLY,
                        [stats(w, self.min_periods) for w in (window, long_window) if w])
                       for name in self.features]
        self._prev_close = math.nan

    def update(self, open: float, high: float, low: float, close: float,
               volume: float) -> dict[str, float]:
        """Score one new candle; returns ``z_<feature>`` for each feature and ``score``."""
        prev, self._prev_close = self._prev_close, close
        out: dict[str, float] = {}
        score = -math.inf
        for key, name, upward, baselines in self._parts:
            if name == "returns":
                x = math.log(close / prev) if prev > 0 else math.nan
            elif name == "volume":
                x = math.log1p(volume)
            elif name == "churn":
                x = math.log1p(volume) - math.log(max((high - low) / close, RANGE_FLOOR))
            else:
                x = (high - low) / close
            zs = [stats.z_then_push(x) for stats in baselines]
            if any(v != v for v in zs):
                z = math.nan
            else:
                z = max(zs) if upward else max(zs, key=abs)
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
