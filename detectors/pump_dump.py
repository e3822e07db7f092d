"""Rule-based detection of the pump-and-dump shape.

Detection layer, plain Python. Defaults follow what surveillance analysts use: a volume
spike is 5x the usual volume, a price spike is a 3 sigma move.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from detectors.base import Detector, ParamSpec, check_number, check_whole
from detectors.features import SCALE_FLOOR, log_returns

#: Volume at least this many times its usual level is a spike (crypto surveillance default).
VOLUME_SPIKE = 5.0



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

    label = "Pump-and-dump rule"
    unit = "pump z"
    parameters = (ParamSpec("window", "Baseline window (bars)", 10, 500),
                  ParamSpec("rise_bars", "Rise window (bars)", 2, 48),
                  ParamSpec("fall_bars", "Reversal window (bars)", 2, 48))

    def __init__(self, window=50, rise_bars=6, fall_bars=6, threshold=3.0):
        self.window = window
        self.rise_bars = rise_bars
        self.fall_bars = fall_bars
        self.threshold = threshold

    def _check_params(self) -> None:
        check_whole("window", self.window, 2, 100_000)
        check_whole("rise_bars", self.rise_bars, 1, 10_000)
        check_whole("fall_bars", self.fall_bars, 1, 10_000)
        check_number("threshold", self._threshold, 0.0, 1e6, example="3.0")

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
