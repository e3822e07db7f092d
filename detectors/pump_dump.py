"""Rule-based detection of the pump-and-dump shape and of its mirror, the flash crash.

Detection layer, plain Python. A volume spike is 5x the usual volume (what surveillance
analysts use). The shapes are 3 bars each way at a 4 sigma cut: chosen on real markets
(``bench/real_markets.py``), where 6-bar shapes flag each pump's slow fade for days and add
flagged days without adding events; 3-bar shapes still find every demo pump and crash.
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

    def __init__(self, window=50, rise_bars=3, fall_bars=3, threshold=4.0):
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
        # The first score needs a return baseline of ``window`` bars that ends before the
        # rise and the fall, and a first bar with no return of its own.
        needed = self.window + self.rise_bars + self.fall_bars + 2
        if len(frame) < needed:
            raise ValueError(f"The rule needs window + rise_bars + fall_bars + 2 = {needed} bars; the "
                             f"data has {len(frame)}: lower them or load a longer range.")

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
        return _shape_score(self.score_components(frame), "rise_z", "reversal_z")


def _shape_score(parts: pd.DataFrame, move: str, back: str) -> np.ndarray:
    """min(move, back) times the volume factor, clipped at 0: both legs of the shape must show."""
    shape = np.minimum(parts[move].to_numpy(), parts[back].to_numpy())
    return np.maximum(shape * parts["volume_factor"].to_numpy(), 0.0)


def _mirrored(frame: pd.DataFrame) -> pd.DataFrame:
    """The candles upside down (prices inverted, high and low swapped): a crash becomes a pump."""
    return frame.assign(open=1.0 / frame["open"], high=1.0 / frame["low"], low=1.0 / frame["high"],
                        close=1.0 / frame["close"])


class FlashCrashDetector(PumpDumpDetector):
    """Flash-crash shape score: a fast fall into a recent trough, a rebound since, on volume.

    The pump-and-dump rule on the mirrored prices (``fall_z``, ``rebound_z``, ``volume_factor``):
    a one- or two-bar crash that mostly recovers is rarer as a shape than either bar's return
    alone, so it is found even where a volatile spell hides each bar's z-score.
    """

    label = "Flash-crash rule"
    unit = "crash z"
    parameters = (ParamSpec("window", "Baseline window (bars)", 10, 500),
                  ParamSpec("rise_bars", "Fall window (bars)", 2, 48),
                  ParamSpec("fall_bars", "Rebound window (bars)", 2, 48))

    def score_components(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Columns fall_z, rebound_z and volume_factor, like ``frame``."""
        self._check_frame(frame)   # here: a zero price would mirror to inf, not be refused
        parts = super().score_components(_mirrored(frame))
        return parts.rename(columns={"rise_z": "fall_z", "reversal_z": "rebound_z"})

    def _score(self, frame: pd.DataFrame) -> np.ndarray:
        return _shape_score(self.score_components(frame), "fall_z", "rebound_z")
