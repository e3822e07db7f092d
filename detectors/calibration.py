"""Calibrated severity: how rare a score is for that detector on that series.

Raw scores come in each detector's own unit (|z|, pump z, isolation score, reconstruction
error), so they cannot be compared or combined. A ``TailCalibration`` learns, from the scores
a detector gave on the series it was fitted on, the tail probability of any score:

- up to the ``RANKED_BY_TAIL``-th highest fitted score, the empirical share at least as high;
- above it, a generalised Pareto tail fitted to the excesses over the ``TAIL_QUANTILE``
  (peaks over threshold, as in SPOT, Siffer et al., KDD 2017), so rarity grows with the score
  among a series' highest scores and beyond them: severities never saturate, and the worst
  events of different series do not tie at "1 in n".

Severity maps the tail probability p to [0, 1) through its decades of rarity d = -log10(p):
``severity = d / (d + HALF_SEVERITY_DECADES)``. So 0.5 means "about 1 in 30 bars", 0.8 "1 in
a million"; equal severities mean equally rare scores whatever the detector, and
``one_in_bars`` turns a severity back into "about 1 in N bars".
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: Fitted scores above this quantile are modelled by the Pareto tail, below it empirically.
TAIL_QUANTILE = 0.98
#: Decades of rarity at which severity is one half: 0.5 is about 1 in 30 bars, 0.7 about 1 in
#: 3,000, 0.8 about 1 in a million, so the analysts' action bands (0.5 / 0.7 / 0.9) keep a meaning.
HALF_SEVERITY_DECADES = 1.5
#: The highest fitted scores ranked by the Pareto tail rather than by their count (so a series'
#: worst bar is not simply "1 in n"): this many, at most one in 200 of them and at least 2,
#: when the tail has ``MIN_EXCESSES`` to fit; below them severities are exactly empirical.
RANKED_BY_TAIL = 10
#: Decades of rarity a severity can express at most (an infinite score gets these).
MAX_DECADES = 300.0
#: Fewest excesses a Pareto fit needs; with fewer the tail is exponential (shape 0).
MIN_EXCESSES = 10


class TailCalibration:
    """Tail probability of a score among the scores seen in fit (see the module notes)."""

    def __init__(self, scores: pd.Series | np.ndarray) -> None:
        values = np.asarray(scores, dtype="float64")
        self.sorted_ = np.sort(values[np.isfinite(values)])
        n = len(self.sorted_)
        self.n_ = n
        # No finite score (a detector that could not score any bar): every severity is NaN.
        self.tail_start_ = float(np.quantile(self.sorted_, TAIL_QUANTILE)) if n else math.inf
        excess = self.sorted_[self.sorted_ > self.tail_start_] - self.tail_start_
        self.tail_share_ = max(len(excess), 1) / (n + 1)
        self.shape_, self.scale_ = _pareto_fit(excess)
        self.fitted_tail_ = len(excess) >= MIN_EXCESSES and self.scale_ > 0

    def decades(self, scores: pd.Series | np.ndarray) -> np.ndarray:
        """-log10 P(score >= s) for each s: 0 for the lowest scores, NaN where s is NaN.

        Empirical up to the ``RANKED_BY_TAIL``-th highest fitted score (exact there: the share
        of bars at or above any such severity is the same for every detector); above it, the
        fitted Pareto tail continues from that score. So a series' own worst bars are ranked
        by how far out they are, not just "1 in n": a 60-sigma bad tick is rarer than a
        6-sigma spike of another series of the same length. Worked in logarithms, so no
        score far beyond the fitted ones underflows to a tie."""
        s = np.asarray(scores, dtype="float64")
        if self.n_ == 0:
            return np.full(s.shape, np.nan)
        above = self.n_ - np.searchsorted(self.sorted_, s, side="left")
        decades = -np.log10((above + 1.0) / (self.n_ + 1.0))
        # Only a real Pareto fit ranks fitted scores; an exponential guess from a handful of
        # excesses only extends the tail beyond the highest one.
        k = min(max(2, min(RANKED_BY_TAIL, self.n_ // 200)), self.n_) if self.fitted_tail_ else 1
        anchor = self.sorted_[-k]
        at_anchor = -math.log10((k + 1.0) / (self.n_ + 1.0))
        beyond = s > anchor
        if beyond.any():
            if self.scale_ > 0:
                with np.errstate(invalid="ignore"):
                    rarer = self._log_survival(anchor) - self._log_survival(s)
            else:   # every fitted tail score equal: a higher one is a decade rarer than all of them
                rarer = np.full(len(s), 1.0)
            decades = np.where(beyond, at_anchor + rarer, decades)
        # An infinite score is as rare as can be said (1 in 10^300), not undefined.
        return np.where(np.isnan(s), np.nan, np.minimum(decades, MAX_DECADES))

    def _log_survival(self, s):
        """log10 of the fitted Pareto survival of the excess over the tail threshold."""
        with np.errstate(over="ignore"):   # a huge score: inf here, capped at MAX_DECADES later
            x = np.maximum(np.asarray(s, dtype="float64") - self.tail_start_, 0.0) / self.scale_
            if self.shape_ < 1e-9:
                return -x / math.log(10)
            return -np.log10(1.0 + self.shape_ * x) / self.shape_

    def severity(self, scores: pd.Series) -> pd.Series:
        """Calibrated severity in [0, 1) on ``scores``' index (NaN stays NaN)."""
        d = self.decades(scores) + 0.0   # + 0.0: no -0.0 for the commonest scores
        return pd.Series(severity_from_decades(d), index=getattr(scores, "index", None),
                         name=getattr(scores, "name", None), dtype="float64")


def severity_from_decades(decades: np.ndarray) -> np.ndarray:
    return decades / (decades + HALF_SEVERITY_DECADES)


def decades_from_severity(severity: np.ndarray) -> np.ndarray:
    """Inverse of ``severity_from_decades`` (severity in [0, 1))."""
    severity = np.clip(severity, 0.0, 1.0 - 1e-15)
    return HALF_SEVERITY_DECADES * severity / (1.0 - severity)


def one_in_bars(severity: float) -> float:
    """The N in "about 1 in N bars" for a severity (inverse of ``TailCalibration.severity``)."""
    if severity is None or not np.isfinite(severity) or severity <= 0:
        return 1.0
    decades = HALF_SEVERITY_DECADES * severity / (1.0 - severity) if severity < 1 else math.inf
    return 10.0 ** min(decades, MAX_DECADES)


def rarity_text(severity: float) -> str:
    """"about 1 in 3,400 bars" (2 significant figures; beyond a billion in powers of ten)."""
    n = one_in_bars(severity)
    if n >= 1e9:
        return f"rarer than 1 in 10^{int(math.log10(n))} bars"
    return f"about 1 in {float(f'{n:.2g}'):,.0f} bars"


def _pareto_fit(excess: np.ndarray) -> tuple[float, float]:
    """Shape and scale of a generalised Pareto fit to the excesses (shape floored at 0, so the
    tail never ends; an exponential tail when there are too few excesses)."""
    if len(excess) == 0 or not np.any(excess > 0):
        return 0.0, 0.0
    mean = float(excess.mean())
    if len(excess) < MIN_EXCESSES:
        return 0.0, mean
    # Method of moments (Hosking & Wallis): stable on small samples, no optimiser to fail.
    var = float(excess.var(ddof=1))
    if var <= 0:
        return 0.0, mean
    shape = 0.5 * (1.0 - mean * mean / var)
    shape = min(max(shape, 0.0), 0.9)
    return shape, mean * (1.0 - shape)
