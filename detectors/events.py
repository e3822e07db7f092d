"""From per-bar scores to events: one row per group of flagged bars, with evidence.

Detection layer, plain Python. Each detector's raw score becomes a severity against its
threshold (0.5 at the threshold), the severities are combined (``combine_severities``), and
bars with combined severity >= 0.5 are flagged. Flagged bars separated by at most
``merge_gap`` unflagged bars form one event. Evidence compares the event with the
``REFERENCE_BARS`` bars before it, so a long event cannot dilute its own yardstick.
"""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd

from detectors.base import severity
from detectors.ensemble import combine_severities
from detectors.features import (SCALE_FLOOR, feature_series, log_returns, range_ratio,
                                trailing_center_scale)
from detectors.rules import classify_event

#: Bars before an event its evidence is measured against (the usual level of each feature).
REFERENCE_BARS = 50
#: Bars before the event searched for the start of a rise or the top before a drop.
CONTEXT_BARS = 10
#: Bars after the event's end the kind may look at, to see a dump or a recovery complete.
FOLLOW_BARS = 6

EVENT_COLUMNS = [
    "event_id", "symbol", "interval", "start", "end", "n_bars", "detectors", "peak_detector",
    "peak_score", "severity", "kind", "price_before", "price_end", "return_pct",
    "max_move_pct", "volume_ratio", "z_return", "z_volume", "scores_json",
]
_DTYPES = {
    "event_id": "str", "symbol": "str", "interval": "str", "start": "datetime64[ns, UTC]",
    "end": "datetime64[ns, UTC]", "n_bars": "int64", "detectors": "str", "peak_detector": "str",
    "peak_score": "float64", "severity": "float64", "kind": "str", "price_before": "float64",
    "price_end": "float64", "return_pct": "float64", "max_move_pct": "float64",
    "volume_ratio": "float64", "z_return": "float64", "z_volume": "float64", "scores_json": "str",
}


def flag_runs(flagged: np.ndarray, merge_gap: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """First and last positions of groups of True, merging groups at most ``merge_gap``
    False values apart (``merge_gap=0``: only adjacent bars)."""
    if not isinstance(merge_gap, (int, np.integer)) or merge_gap < 0:
        raise ValueError(f"merge_gap must be a whole number of bars, 0 or more; got {merge_gap!r}.")
    positions = np.flatnonzero(flagged)
    if len(positions) == 0:
        empty = np.array([], dtype=np.int64)
        return empty, empty
    breaks = np.flatnonzero(np.diff(positions) > merge_gap + 1)
    starts = positions[np.concatenate([[0], breaks + 1])]
    ends = positions[np.concatenate([breaks, [len(positions) - 1]])]
    return starts, ends


def event_id(symbol: str, interval: str, start: pd.Timestamp) -> str:
    """Stable 16-hex id from symbol, interval and start (not the detectors: an event an
    analyst dismissed stays dismissed when another detector is switched on)."""
    key = f"{symbol}|{interval}|{pd.Timestamp(start).isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def default_thresholds(names) -> dict[str, float]:
    """Each registered detector's default threshold (unfitted); raises for learned ones."""
    from detectors import detector_class
    out = {}
    for name in names:
        try:
            out[name] = detector_class(name)().threshold
        except ValueError as exc:  # NotFittedError is a ValueError: the cut is learned in fit
            raise ValueError(f"Detector {name!r} has no fixed default threshold; pass "
                             f"thresholds={{{name!r}: fitted_detector.threshold}}.") from exc
    return out


def to_events(candles: pd.DataFrame, scores: dict[str, pd.Series],
              thresholds: dict[str, float] | None = None, *, mode: str = "max", k: int = 2,
              merge_gap: int = 2, symbol: str | None = None) -> pd.DataFrame:
    """Group flagged bars into events with evidence; columns ``EVENT_COLUMNS``.

    Parameters
    ----------
    candles : DataFrame
        Canonical candles; ``attrs["symbol"]`` and ``attrs["interval"]`` name the events.
    scores : dict of name -> Series
        Raw scores (higher = more anomalous), reindexed to the candles; NaN never flags.
    thresholds : dict of name -> float, optional
        Cut per detector in its own unit; missing names use the detector's default.
    mode, k
        How severities combine (see ``combine_severities``).
    merge_gap : int
        Flagged bars at most this many unflagged bars apart belong to one event.
    symbol : str, optional
        Overrides ``candles.attrs["symbol"]``.

    Returns
    -------
    DataFrame
        One row per event, sorted by start. ``end`` is the last flagged bar and ``n_bars``
        the bars from start to end. ``detectors`` lists (sorted) those whose own severity
        reaches 0.5 in the event; ``peak_score`` is the raw score of ``peak_detector``, the
        one with the highest severity. Evidence: ``price_before`` (close before start),
        ``price_end``, ``return_pct`` and ``max_move_pct`` (signed largest move from
        price_before, %), ``volume_ratio`` (largest volume / median of the 50 bars before),
        ``z_return`` (signed) and ``z_volume`` (peak z against the 50 bars before start),
        ``scores_json`` ({detector: peak raw score}). ``kind`` comes from
        ``classify_event`` and may look up to ``FOLLOW_BARS`` past the end.
    """
    if not scores:
        raise ValueError("Pass the scores of at least one detector.")
    names = sorted(scores)
    given = dict(thresholds or {})
    cuts = {**default_thresholds([n for n in names if n not in given]), **given}
    raw = pd.DataFrame({n: scores[n].reindex(candles.index) for n in names}, index=candles.index)
    severities = pd.DataFrame({n: severity(raw[n], cuts[n]) for n in names})
    combined = combine_severities({n: severities[n] for n in names}, mode=mode, k=k)
    starts, ends = flag_runs((combined >= 0.5).to_numpy(), merge_gap)
    if len(starts) == 0:
        return _empty_events()
    symbol = symbol if symbol is not None else str(candles.attrs.get("symbol", ""))
    interval = str(candles.attrs.get("interval", ""))
    evidence = _evidence(candles, starts, ends)
    raw_values, sev_values = raw.to_numpy(), severities.to_numpy()
    combined_values = combined.to_numpy()
    rows = []
    for i, (lo, hi) in enumerate(zip(starts, ends)):
        sev_peak = _nanmax_columns(sev_values[lo:hi + 1])
        raw_peak = _nanmax_columns(raw_values[lo:hi + 1])
        peak = int(np.nanargmax(np.where(np.isnan(sev_peak), -1.0, sev_peak)))
        facts = {key: values[i] for key, values in evidence.items()}
        start = candles.index[lo]
        rows.append({
            "event_id": event_id(symbol, interval, start), "symbol": symbol,
            "interval": interval, "start": start, "end": candles.index[hi],
            "n_bars": int(hi - lo + 1),
            "detectors": ",".join(n for n, s in zip(names, sev_peak) if s >= 0.5),
            "peak_detector": names[peak], "peak_score": raw_peak[peak],
            "severity": float(np.nanmax(combined_values[lo:hi + 1])),
            "kind": classify_event(facts),
            **{c: facts[c] for c in EVENT_COLUMNS[11:18]},
            "scores_json": json.dumps({n: (None if math.isnan(v) else round(float(v), 6))
                                       for n, v in zip(names, raw_peak)}),
        })
    return pd.DataFrame(rows, columns=EVENT_COLUMNS).astype(_DTYPES)


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=_DTYPES[c]) for c in EVENT_COLUMNS})


def _nanmax_columns(block: np.ndarray) -> np.ndarray:
    """Column maxima ignoring NaN; NaN where a column is all NaN (no warning)."""
    filled = np.where(np.isnan(block), -np.inf, block).max(axis=0)
    return np.where(np.isneginf(filled), np.nan, filled)


def _evidence(candles: pd.DataFrame, starts: np.ndarray, ends: np.ndarray) -> dict[str, np.ndarray]:
    """Evidence per event (arrays aligned with ``starts``), against the bars before start."""
    close = candles["close"].to_numpy(dtype="float64")
    volume = candles["volume"].to_numpy(dtype="float64")
    high = candles["high"].to_numpy(dtype="float64")
    low = candles["low"].to_numpy(dtype="float64")
    body_hi = np.maximum(candles["open"].to_numpy(dtype="float64"), close)
    body_lo = np.minimum(candles["open"].to_numpy(dtype="float64"), close)
    wick = np.maximum(high - body_hi, body_lo - low) / close
    returns = log_returns(candles["close"])
    vol_feature = feature_series(candles, "volume")
    # Trailing stats at bar ``start`` describe bars start-50 .. start-1: the pre-event norm.
    ret_mean, ret_sd = (s.to_numpy() for s in trailing_center_scale(returns, REFERENCE_BARS,
                                                                    min_periods=10))
    vol_mean, vol_sd = (s.to_numpy() for s in trailing_center_scale(vol_feature, REFERENCE_BARS,
                                                                    min_periods=10))
    usual_volume = candles["volume"].rolling(REFERENCE_BARS, min_periods=10).median().shift(1)
    usual_range = range_ratio(candles).rolling(REFERENCE_BARS, min_periods=10).median().shift(1)
    usual_volume, usual_range = usual_volume.to_numpy(), usual_range.to_numpy()
    returns, vol_feature = returns.to_numpy(), vol_feature.to_numpy()
    n = len(close)
    out: dict[str, list[float]] = {key: [] for key in (
        "price_before", "price_end", "return_pct", "max_move_pct", "volume_ratio", "z_return",
        "z_volume", "z_return_next", "wick_ratio", "rise_sigma", "reversal_sigma",
        "drop_sigma", "recovery_sigma")}
    for lo, hi in zip(starts, ends):
        before = close[lo - 1] if lo > 0 else math.nan
        moves = close[lo:hi + 1] / before - 1.0
        z_ret = (returns[lo:hi + 1] - ret_mean[lo]) / ret_sd[lo]
        peak_ret = int(np.nanargmax(np.abs(np.nan_to_num(z_ret, nan=0.0))))
        nxt = lo + peak_ret + 1
        z_vol = (vol_feature[lo:hi + 1] - vol_mean[lo]) / vol_sd[lo]
        sigma = ret_sd[lo]
        shape = _shape_sigma(np.log(close[max(lo - 1 - CONTEXT_BARS, 0):min(hi + 1 + FOLLOW_BARS, n)]),
                             sigma)
        out["price_before"].append(before)
        out["price_end"].append(close[hi])
        out["return_pct"].append(100.0 * (close[hi] / before - 1.0))
        out["max_move_pct"].append(100.0 * moves[np.argmax(np.abs(moves))] if lo > 0 else math.nan)
        out["volume_ratio"].append(volume[lo:hi + 1].max() / max(usual_volume[lo], SCALE_FLOOR))
        out["z_return"].append(z_ret[peak_ret])
        out["z_volume"].append(np.nanmax(z_vol) if not np.isnan(z_vol).all() else math.nan)
        out["z_return_next"].append((returns[nxt] - ret_mean[lo]) / sigma if nxt < n else math.nan)
        out["wick_ratio"].append(wick[lo:hi + 1].max() / max(usual_range[lo], SCALE_FLOOR))
        for key, value in zip(("rise_sigma", "reversal_sigma", "drop_sigma", "recovery_sigma"), shape):
            out[key].append(value)
    return {key: np.asarray(values, dtype="float64") for key, values in out.items()}


def _shape_sigma(log_close: np.ndarray, sigma: float) -> tuple[float, float, float, float]:
    """Rise into the highest close and fall after it; drop into the lowest close and
    recovery after it; all in units of ``sigma`` (NaN when there is no reference)."""
    if len(log_close) < 2 or not np.isfinite(sigma):
        return (math.nan,) * 4
    top, bottom = int(np.argmax(log_close)), int(np.argmin(log_close))
    rise = log_close[top] - log_close[:top + 1].min()
    reversal = log_close[top] - log_close[top:].min()
    drop = log_close[:bottom + 1].max() - log_close[bottom]
    recovery = log_close[bottom:].max() - log_close[bottom]
    return rise / sigma, reversal / sigma, drop / sigma, recovery / sigma
