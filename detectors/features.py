"""Trailing candle features shared by the detectors and the event evidence (detection layer).

Every rolling statistic is *trailing and exclusive*: the centre and scale used at bar t come
from bars t-window .. t-1, never from t itself, so a spike cannot mask itself and no value
looks ahead. Scales are floored at ``SCALE_FLOOR`` so a constant series gives z = 0 (and a
finite, very large z for the first move after it) instead of inf or NaN.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

#: Smallest scale a z-score divides by: below it a series is treated as constant.
SCALE_FLOOR = 1e-8
#: MAD times this estimates the standard deviation of normally distributed data.
MAD_TO_STD = 1.4826
#: Feature names a detector may ask for, and how each is computed from candles.
FEATURES = ("returns", "volume", "range", "churn")
#: Smallest bar range (a share of the price) churn divides by: one basis point.
RANGE_FLOOR = 1e-4
#: Rows per block when the robust (median/MAD) statistics are computed on sliding windows.
_ROBUST_BLOCK = 20_000


def log_returns(close: pd.Series) -> pd.Series:
    """Log return of each bar against the previous close; NaN on the first bar.

    Computed as log(c_t / c_{t-1}) so a positive rescaling of prices leaves it unchanged.
    """
    return np.log(close / close.shift(1))


def log_volume(volume: pd.Series) -> pd.Series:
    """log(1 + volume): volume surges become additive and zero volume stays finite."""
    return np.log1p(volume)


def range_ratio(candles: pd.DataFrame) -> pd.Series:
    """(high - low) / close of each bar: the bar's range as a share of its price."""
    return (candles["high"] - candles["low"]) / candles["close"]


def churn(candles: pd.DataFrame) -> pd.Series:
    """log(1 + volume) - log(range): volume that moves no price, as wash trades do.

    On real markets volume and range rise together, so much volume in a narrow bar is rare;
    the range is floored at ``RANGE_FLOOR`` so a flat bar stays finite."""
    return log_volume(candles["volume"]) - np.log(np.maximum(range_ratio(candles), RANGE_FLOOR))


def feature_series(candles: pd.DataFrame, name: str) -> pd.Series:
    """The raw series behind a feature name in ``FEATURES``.

    "volume" is the volume itself, not its log. Returns are fat-tailed, so a |z| cut that
    keeps ordinary returns quiet sits far out (about 5 sigma); log volume is close to
    normal and a 5-10x surge is only 3-4 sigma of it, whereas raw volume is right-skewed
    like the return tails, so one cut serves both.
    """
    if name == "returns":
        return log_returns(candles["close"])
    if name == "volume":
        return candles["volume"]
    if name == "range":
        return range_ratio(candles)
    if name == "churn":
        return churn(candles)
    raise ValueError(f"Unknown feature {name!r}; choose from {', '.join(FEATURES)}.")


def trailing_center_scale(values: pd.Series, window: int, *, robust: bool = False,
                          min_periods: int | None = None) -> tuple[pd.Series, pd.Series]:
    """Centre and scale of bars t-window .. t-1 for every t (NaN until ``min_periods`` exist).

    Mean and sample standard deviation, or with ``robust`` the median and MAD * 1.4826.
    NaN values inside a window are skipped. The scale is floored at ``SCALE_FLOOR``.
    """
    min_periods = window if min_periods is None else min_periods
    if robust:
        center, scale = _rolling_median_mad(values.to_numpy(dtype="float64"), window, min_periods)
        center = pd.Series(center, index=values.index)
        scale = pd.Series(scale, index=values.index)
    else:
        rolling = values.rolling(window, min_periods=min_periods)
        center = rolling.mean().shift(1)
        scale = rolling.std().shift(1)
    return center, scale.clip(lower=SCALE_FLOOR)


def rolling_zscore(values: pd.Series, window: int, *, robust: bool = False,
                   min_periods: int | None = None) -> pd.Series:
    """Signed z of each value against the trailing window before it (see module notes).

    Index equals ``values.index``; NaN during warm-up (fewer than ``min_periods`` prior
    values, default ``window``) and where the value itself is NaN.
    """
    center, scale = trailing_center_scale(values, window, robust=robust, min_periods=min_periods)
    return (values - center) / scale


def trailing_median(values: pd.Series, window: int, min_periods: int | None = None) -> pd.Series:
    """Median of bars t-window .. t-1 for every t, floored at ``SCALE_FLOOR`` (NaN until
    ``min_periods`` values exist, default ``window``)."""
    min_periods = window if min_periods is None else min_periods
    median = values.rolling(window, min_periods=min_periods).median().shift(1)
    return median.clip(lower=SCALE_FLOOR)


def volume_ratio(volume: pd.Series, window: int = 50) -> pd.Series:
    """Volume over the median volume of the ``window`` bars before it (NaN during warm-up);
    a zero median is floored so the ratio stays finite."""
    return volume / trailing_median(volume, window)


def _rolling_median_mad(values: np.ndarray, window: int,
                        min_periods: int) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD * 1.4826 of values[t-window:t] for each t, in blocks to bound memory."""
    n = len(values)
    padded = np.concatenate([np.full(window, np.nan), values])
    center = np.full(n, np.nan)
    scale = np.full(n, np.nan)
    for start in range(0, n, _ROBUST_BLOCK):
        stop = min(n, start + _ROBUST_BLOCK)
        # Row i holds padded[start+i : start+i+window] = values[start+i-window : start+i].
        windows = sliding_window_view(padded[start:stop + window - 1], window)
        count = np.sum(~np.isnan(windows), axis=1)
        full = count == window
        med = np.full(stop - start, np.nan)
        mad = np.full(stop - start, np.nan)
        if full.any():
            med[full] = np.median(windows[full], axis=1)
            mad[full] = np.median(np.abs(windows[full] - med[full, None]), axis=1)
        partial = ~full & (count >= max(min_periods, 1))
        if partial.any():
            med[partial] = np.nanmedian(windows[partial], axis=1)
            mad[partial] = np.nanmedian(np.abs(windows[partial] - med[partial, None]), axis=1)
        center[start:stop] = med
        scale[start:stop] = mad * MAD_TO_STD
    return center, scale
