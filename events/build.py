"""From flagged bars to events: one row per group of flagged bars, with evidence.

Plain Python. ``detectors.pipeline`` decides which bars are flagged and how severe they are;
this groups flagged bars separated by at most ``MERGE_GAP`` unflagged bars into one event.
Evidence compares the event with the ``REFERENCE_BARS`` bars before it, so a long event
cannot dilute its own yardstick.
"""
from __future__ import annotations

import hashlib
import json
import math
import warnings

import numpy as np
import pandas as pd

from detectors.features import SCALE_FLOOR, feature_series, log_returns, range_ratio
from events.kinds import classify_event

#: Flagged bars at most this many unflagged bars apart belong to one event.
MERGE_GAP = 2
#: Bars before an event its evidence is measured against (the usual level of each feature).
REFERENCE_BARS = 50
#: Bars before the event searched for the start of a rise or the top before a drop.
CONTEXT_BARS = 10
#: Bars after the event's end the kind may look at, to see a dump or a recovery complete.
FOLLOW_BARS = 6

EVIDENCE_COLUMNS = ["price_before", "price_end", "return_pct", "max_move_pct", "volume_ratio",
                    "z_return", "z_volume"]
EVENT_COLUMNS = [
    "event_id", "symbol", "interval", "start", "end", "n_bars", "detectors", "peak_detector",
    "peak_score", "severity", "one_in_bars", "kind", *EVIDENCE_COLUMNS, "scores_json",
]
_DTYPES = {
    "event_id": "str", "symbol": "str", "interval": "str", "start": "datetime64[ns, UTC]",
    "end": "datetime64[ns, UTC]", "n_bars": "int64", "detectors": "str", "peak_detector": "str",
    "peak_score": "float64", "severity": "float64", "one_in_bars": "float64", "kind": "str", "price_before": "float64",
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


def to_events(candles: pd.DataFrame, scores: dict[str, pd.Series],
              thresholds: dict[str, float] | None = None, *, mode: str = "max", k: int = 2,
              symbol: str | None = None, merge_gap: int = MERGE_GAP) -> pd.DataFrame:
    """Events from raw scores computed elsewhere (``detectors.from_scores(...).events``)."""
    from detectors.pipeline import from_scores
    return from_scores(candles, scores, thresholds, mode=mode, k=k, symbol=symbol,
                       merge_gap=merge_gap).events


def build_events(candles: pd.DataFrame, raw: pd.DataFrame, severity: pd.DataFrame,
                 detector_flags: pd.DataFrame, combined: pd.Series, flagged: pd.Series, *,
                 merge_gap: int = MERGE_GAP, symbol: str | None = None) -> pd.DataFrame:
    """Group flagged bars into events with evidence; columns ``EVENT_COLUMNS``.

    All inputs are aligned to ``candles`` (the pipeline's frames: raw scores, calibrated
    severities and flags per detector, the ensemble's severity and flags). Flagged bars at
    most ``merge_gap`` unflagged bars apart form one event.

    Returns one row per event, sorted by start. ``end`` is the last flagged bar and ``n_bars``
    the bars from start to end. ``detectors`` lists (sorted) those that flag a bar of the
    event; ``peak_detector`` is the one of them with the highest severity (any detector when
    none fired alone) and ``peak_score`` its raw peak score; ``severity`` is the ensemble's
    peak severity and ``one_in_bars`` how rare that is ("about 1 in N bars"). Evidence:
    ``price_before`` (close before start), ``price_end``, ``return_pct`` and ``max_move_pct`` (signed largest move from
    price_before, %), ``volume_ratio`` (largest volume / median of the 50 bars before),
    ``z_return`` (signed) and ``z_volume`` (peak z against the 50 bars before start),
    ``scores_json`` ({detector: peak raw score}). ``kind`` comes from ``classify_event`` and
    may look up to ``FOLLOW_BARS`` past the end.
    """
    from detectors.calibration import one_in_bars
    starts, ends = flag_runs(flagged.to_numpy(dtype=bool), merge_gap)
    if len(starts) == 0:
        return _empty_events()
    names = list(raw.columns)
    symbol = symbol if symbol is not None else str(candles.attrs.get("symbol", ""))
    interval = str(candles.attrs.get("interval", ""))
    spans = _Spans(starts, ends)
    fired = spans.max(detector_flags.to_numpy(dtype="float64"))   # (events, detectors): 1 if flagged
    raw_peak = spans.max(raw.to_numpy(dtype="float64"))
    # The peak detector is the rarest score among the detectors that fired (a detector below its
    # threshold is no evidence of the flag); all of them when none fired alone (mean, vote).
    peak_of = np.nan_to_num(spans.max(severity.to_numpy(dtype="float64")), nan=-1.0)
    any_fired = (fired == 1).any(axis=1, keepdims=True)
    peak = np.argmax(np.where(any_fired & (fired != 1), -2.0, peak_of), axis=1)
    peak_severity = spans.max(combined.to_numpy(dtype="float64")[:, None])[:, 0]
    evidence = _evidence(candles, spans)
    kinds = [classify_event({key: values[i] for key, values in evidence.items()})
             for i in range(len(starts))]
    start_times = candles.index[starts]
    out = pd.DataFrame({
        "event_id": [event_id(symbol, interval, t) for t in start_times],
        "symbol": symbol, "interval": interval,
        "start": start_times, "end": candles.index[ends], "n_bars": ends - starts + 1,
        "detectors": [",".join(n for n, f in sorted(zip(names, row)) if f == 1) for row in fired],
        "peak_detector": [names[j] for j in peak],
        "peak_score": raw_peak[np.arange(len(starts)), peak],
        "severity": peak_severity,
        "one_in_bars": [one_in_bars(v) for v in peak_severity],
        "kind": kinds,
        **{c: evidence[c] for c in EVIDENCE_COLUMNS},
        "scores_json": [json.dumps({n: None if math.isnan(v) else round(float(v), 6)
                                    for n, v in sorted(zip(names, row))}) for row in raw_peak],
    }, columns=EVENT_COLUMNS)
    return out.astype(_DTYPES)


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=_DTYPES[c]) for c in EVENT_COLUMNS})


class _Spans:
    """Events as bar ranges [start, end], with per-event reductions done in one pass.

    The bars of all events are laid end to end (``bars``); ``offsets`` mark where each
    event begins in that list, so ``np.maximum.reduceat`` reduces every event at once.
    """

    def __init__(self, starts: np.ndarray, ends: np.ndarray) -> None:
        self.starts, self.ends = starts, ends
        self.lengths = ends - starts + 1
        self.offsets = np.cumsum(self.lengths) - self.lengths
        self.bars = np.repeat(starts - self.offsets, self.lengths) + np.arange(self.lengths.sum())

    def max(self, values: np.ndarray) -> np.ndarray:
        """Per-event maximum ignoring NaN (NaN where an event has no value)."""
        filled = np.where(np.isnan(values), -np.inf, values)[self.bars]
        peak = np.maximum.reduceat(filled, self.offsets, axis=0)
        return np.where(np.isneginf(peak), np.nan, peak)

    def argmax(self, values: np.ndarray) -> np.ndarray:
        """Bar position of each event's largest value (first one on ties; NaN ranks lowest)."""
        filled = np.where(np.isnan(values), -np.inf, values)[self.bars]
        peak = np.maximum.reduceat(filled, self.offsets)
        hits = np.flatnonzero(filled == np.repeat(peak, self.lengths))
        return self.bars[hits[np.searchsorted(hits, self.offsets)]]


def _evidence(candles: pd.DataFrame, spans: _Spans) -> dict[str, np.ndarray]:
    """Evidence per event (arrays aligned with the events), against the bars before start."""
    close = candles["close"].to_numpy(dtype="float64")
    open_ = candles["open"].to_numpy(dtype="float64")
    wick = np.maximum(candles["high"].to_numpy() - np.maximum(open_, close),
                      np.minimum(open_, close) - candles["low"].to_numpy()) / close
    returns = log_returns(candles["close"])
    volume = feature_series(candles, "volume")
    returns, volume = returns.to_numpy(), volume.to_numpy()
    # Trailing stats at bar ``start`` describe bars start-50 .. start-1: the pre-event norm,
    # computed at the event starts only (rolling over every bar cost most of a slider move).
    ret_mean, ret_sd, _ = _trailing_at(returns, spans.starts)
    vol_mean, vol_sd, usual_volume = _trailing_at(volume, spans.starts)
    usual_range = _trailing_at(range_ratio(candles).to_numpy(), spans.starts)[2]
    lo, hi = spans.starts, spans.ends
    before = np.where(lo > 0, close[np.maximum(lo - 1, 0)], np.nan)
    each = np.repeat(np.arange(len(lo)), spans.lengths)   # event of each bar in spans.bars
    z_bar = np.full(len(close), np.nan)
    z_bar[spans.bars] = (returns[spans.bars] - ret_mean[each]) / ret_sd[each]
    peak_bar = spans.argmax(np.abs(z_bar))
    z_return = z_bar[peak_bar]
    z_volume = np.full(len(close), np.nan)
    z_volume[spans.bars] = (volume[spans.bars] - vol_mean[each]) / vol_sd[each]
    move = np.full(len(close), np.nan)
    move[spans.bars] = close[spans.bars] / before[each] - 1.0
    log_close = np.log(close)
    shape = np.array([_shape_sigma(log_close[max(a - 1 - CONTEXT_BARS, 0):b + 1 + FOLLOW_BARS], sd)
                      for a, b, sd in zip(lo, hi, ret_sd)]).reshape(len(lo), 4)
    return {
        "price_before": before, "price_end": close[hi],
        "return_pct": 100.0 * (close[hi] / before - 1.0),
        "max_move_pct": 100.0 * move[spans.argmax(np.abs(move))],
        "volume_ratio": spans.max(volume) / usual_volume,
        "z_return": z_return, "z_volume": spans.max(z_volume),
        "z_return_reversal": _reversal_z(returns, peak_bar, ret_mean, ret_sd),
        "wick_ratio": spans.max(wick) / usual_range,
        "rise_sigma": shape[:, 0], "reversal_sigma": shape[:, 1],
        "drop_sigma": shape[:, 2], "recovery_sigma": shape[:, 3],
    }


def _trailing_at(values: np.ndarray, starts: np.ndarray, window: int = REFERENCE_BARS,
                 min_periods: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, sample std and median of bars s-window .. s-1 for each start s, NaN skipped and
    NaN with fewer than ``min_periods`` values; std and median floored at ``SCALE_FLOOR``.
    The same numbers as ``features.trailing_center_scale``/``trailing_median`` at those bars."""
    positions = starts[:, None] - window + np.arange(window)[None, :]
    block = np.where(positions >= 0, values[np.clip(positions, 0, None)], np.nan)
    enough = (~np.isnan(block)).sum(axis=1) >= min_periods
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # all-NaN windows give NaN, as wanted
        mean = np.nanmean(block, axis=1)
        sd = np.nanstd(block, axis=1, ddof=1)
        median = np.nanmedian(block, axis=1)
    nan = np.full(len(starts), np.nan)
    return (np.where(enough, mean, nan), np.maximum(np.where(enough, sd, nan), SCALE_FLOOR),
            np.maximum(np.where(enough, median, nan), SCALE_FLOOR))


def _reversal_z(returns: np.ndarray, peak: np.ndarray, mean: np.ndarray,
                sigma: np.ndarray) -> np.ndarray:
    """Per event, the z of the bar beside ``peak`` (before or after) that moved most
    against it; 0 if neither did. A bad tick is a jump whose neighbour undoes it."""
    padded = np.concatenate([[np.nan], returns, [np.nan]])   # neighbours of the ends: NaN
    z_peak = (returns[peak] - mean) / sigma
    best = np.zeros(len(peak))
    for neighbour in (padded[peak], padded[peak + 2]):      # bars peak-1 and peak+1
        z = (neighbour - mean) / sigma
        against = np.nan_to_num(z * z_peak, nan=0.0) < 0
        best = np.where(against & (np.abs(z) > np.abs(best)), z, best)
    return best


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
