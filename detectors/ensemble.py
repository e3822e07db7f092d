"""Combining detectors through their severities (detection layer).

Severities are calibrated (``detectors.calibration``): equal values are equally rare for
every detector, so they combine like with like. What is flagged is decided elsewhere, on raw
scores against thresholds (``detectors.pipeline.is_flagged``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

MODES = ("max", "mean", "vote")


def combine_severities(severities: dict[str, pd.Series], mode: str = "max",
                       k: int = 2) -> pd.Series:
    """One severity in [0, 1] per bar from several detectors' severities.

    Parameters
    ----------
    severities : dict of name -> Series
        Severities in [0, 1]; indexes are aligned (union, sorted).
    mode : {"max", "mean", "vote"}
        "max": any detector at its threshold flags the bar. "mean": the average of the
        detectors that can score the bar. "vote": the k-th largest severity, so the bar is
        flagged (>= 0.5) iff at least ``k`` detectors are at or above their threshold.
    k : int
        Votes needed in "vote" mode; a k above the number of detectors means all of them.

    Returns
    -------
    Series
        NaN where no detector can score the bar (all warming up). In "vote" mode a
        detector that cannot score a bar counts as 0 (it cannot vote).
    """
    if not severities:
        raise ValueError("Pass the severities of at least one detector.")
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    frame = pd.DataFrame(severities)
    values = frame.to_numpy(dtype="float64")
    none_scored = np.isnan(values).all(axis=1)
    if mode == "max":
        combined = frame.max(axis=1, skipna=True).to_numpy()
    elif mode == "mean":
        combined = frame.mean(axis=1, skipna=True).to_numpy()
    else:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a whole number of detectors, 1 or more; got {k!r}.")
        votes = min(k, values.shape[1])
        ordered = np.sort(np.nan_to_num(values, nan=0.0), axis=1)
        combined = ordered[:, values.shape[1] - votes]
    combined = np.where(none_scored, np.nan, combined)
    return pd.Series(combined, index=frame.index, name=f"ensemble_{mode}")
