"""Rule-based detection: the pump-and-dump shape, and the typing of flagged events.

Detection layer, plain Python. Defaults follow what surveillance analysts use: a volume
spike is 5x the usual volume, a price spike is a 3 sigma move.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from detectors.base import Detector
from detectors.features import SCALE_FLOOR, log_returns

#: Volume at least this many times its usual level is a spike (crypto surveillance default).
VOLUME_SPIKE = 5.0
#: A return at least this many trailing standard deviations is a price spike.
PRICE_SPIKE_Z = 3.0
#: A one-bar return this many sigma on both legs (out and straight back) is a bad tick.
BAD_TICK_Z = 15.0
#: A wick this many times the usual bar range is a bad print, not trading.
BAD_WICK_RATIO = 20.0
#: A rise (or drop) of at least this many sigma, half undone afterwards, is a pump (or crash).
SHAPE_SIGMA = 8.0
#: Share of the move that must be undone to call it a reversal (dump or recovery).
REVERSAL_SHARE = 0.5
#: Volume ratio a pump needs (promoters bring volume; a quiet rise is not a pump).
PUMP_VOLUME_RATIO = 3.0

KINDS = ("data_error", "pump_and_dump", "flash_crash", "manipulation_suspected",
         "volume_surge", "price_spike", "pattern_anomaly")


class PumpDumpDetector(Detector):
    """Pump-and-dump shape score: a fast rise into a recent peak, a reversal since, on volume.

    At bar t, with the peak the highest close of bars t-fall_bars .. t:

    - ``rise_z`` = log(peak / lowest close of the rise_bars before the peak),
      divided by sigma * sqrt(rise_bars);
    - ``reversal_z`` = log(peak / close_t), divided by sigma * sqrt(fall_bars);
    - ``volume_factor`` = min(1, largest volume of the last rise_bars + fall_bars bars
      / (5 * median volume));

    score = min(rise_z, reversal_z) * volume_factor, clipped at 0. sigma (std of log returns)
    and the median volume come from the ``window`` bars *before* the pattern (ending
    rise_bars + fall_bars bars before t), so the pump does not inflate its own yardstick.

    Notes
    -----
    Higher = more anomalous, indexed like the candles, NaN for the first
    window + rise_bars + fall_bars bars. The score at t only uses bars up to t: a pump is
    flagged once the dump has happened, not while the price is still rising.
    """

    label = "Pump and dump"
    unit = "pump z"

    def __init__(self, window=50, rise_bars=6, fall_bars=6, threshold=3.0):
        self.window = window
        self.rise_bars = rise_bars
        self.fall_bars = fall_bars
        self.threshold = threshold

    def _check_params(self) -> None:
        for name in ("window", "rise_bars", "fall_bars"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < (2 if name == "window" else 1):
                raise ValueError(f"{name} must be a positive whole number of bars"
                                 f"{' (2 or more)' if name == 'window' else ''}; got {value!r}.")
        if self.threshold is None or not np.isfinite(self.threshold) or self.threshold <= 0:
            raise ValueError("threshold must be a positive pump z, e.g. 3.0; "
                             f"got {self.threshold!r}.")

    def _fit(self, frame: pd.DataFrame) -> None:
        self._check_params()
        needed = self.window + self.rise_bars + self.fall_bars
        if needed >= len(frame):
            raise ValueError(f"window + rise_bars + fall_bars ({needed} bars) must be smaller "
                             f"than the data ({len(frame)} bars): lower them or load a "
                             "longer range.")

    def score_components(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Columns rise_z, reversal_z and volume_factor (see the class notes), like ``frame``."""
        self._check_frame(frame)
        self._check_params()
        close = frame["close"].to_numpy(dtype="float64")
        n, span = len(close), self.rise_bars + self.fall_bars
        returns = log_returns(frame["close"])
        sigma = returns.rolling(self.window).std().shift(span + 1).clip(lower=SCALE_FLOOR)
        usual_volume = frame["volume"].rolling(self.window).median().shift(span + 1)
        recent_volume = frame["volume"].rolling(span).max()
        # Rise into each bar: log(close / lowest of the rise_bars closes before it).
        base = frame["close"].rolling(self.rise_bars).min().shift(1).to_numpy()
        rise_into = np.log(close / base)
        # The peak of bars t-fall_bars .. t, found by position so its own rise can be read.
        peak_pos = np.full(n, -1)
        if n > self.fall_bars:
            offsets = sliding_window_view(close, self.fall_bars + 1).argmax(axis=1)
            peak_pos[self.fall_bars:] = np.arange(n - self.fall_bars) + offsets
        valid = peak_pos >= 0
        rise = np.full(n, np.nan)
        reversal = np.full(n, np.nan)
        rise[valid] = rise_into[peak_pos[valid]]
        reversal[valid] = np.log(close[peak_pos[valid]] / close[valid])
        sigma = sigma.to_numpy()
        ratio = (recent_volume / usual_volume.clip(lower=SCALE_FLOOR)).to_numpy()
        return pd.DataFrame({
            "rise_z": rise / (sigma * math.sqrt(self.rise_bars)),
            "reversal_z": reversal / (sigma * math.sqrt(self.fall_bars)),
            "volume_factor": np.minimum(1.0, ratio / VOLUME_SPIKE),
        }, index=frame.index)

    def _score(self, frame: pd.DataFrame) -> np.ndarray:
        parts = self.score_components(frame)
        shape = np.minimum(parts["rise_z"].to_numpy(), parts["reversal_z"].to_numpy())
        return np.maximum(shape * parts["volume_factor"].to_numpy(), 0.0)


def classify_event(evidence: Mapping[str, float]) -> str:
    """The manipulation type an event's evidence points to (first rule that matches).

    Keys read (missing or NaN keys make their rule not match): ``z_return`` (peak signed
    return z), ``z_return_reversal`` (z of the neighbouring bar that moved against it),
    ``wick_ratio`` (largest wick / usual bar range), ``volume_ratio``, and the shape in
    sigma units: ``rise_sigma`` and ``reversal_sigma`` (rise into the event's peak, fall
    after it), ``drop_sigma`` and ``recovery_sigma`` (drop into its trough, recovery after).

    Rules, in order: ``data_error`` (out and straight back by >= 15 sigma, or a wick 20x the
    usual range), ``pump_and_dump`` (rise >= 8 sigma on >= 3x volume, half undone),
    ``flash_crash`` (drop >= 8 sigma, half recovered), ``manipulation_suspected`` (price
    |z| >= 3 and volume >= 5x), ``volume_surge`` (volume >= 5x), ``price_spike``
    (|z| >= 3), else ``pattern_anomaly``.
    """
    def get(key: str) -> float:
        value = evidence.get(key)
        return math.nan if value is None else float(value)

    z_return, z_reversal = get("z_return"), get("z_return_reversal")
    volume_ratio = get("volume_ratio")
    rise, reversal = get("rise_sigma"), get("reversal_sigma")
    drop, recovery = get("drop_sigma"), get("recovery_sigma")
    bad_tick = (abs(z_return) >= BAD_TICK_Z and abs(z_reversal) >= BAD_TICK_Z
                and z_return * z_reversal < 0)
    if bad_tick or get("wick_ratio") >= BAD_WICK_RATIO:
        return "data_error"
    if (rise >= SHAPE_SIGMA and reversal >= REVERSAL_SHARE * rise
            and volume_ratio >= PUMP_VOLUME_RATIO):
        return "pump_and_dump"
    if drop >= SHAPE_SIGMA and recovery >= REVERSAL_SHARE * drop:
        return "flash_crash"
    price_extreme = abs(z_return) >= PRICE_SPIKE_Z
    if price_extreme and volume_ratio >= VOLUME_SPIKE:
        return "manipulation_suspected"
    if volume_ratio >= VOLUME_SPIKE:
        return "volume_surge"
    if price_extreme:
        return "price_spike"
    return "pattern_anomaly"
