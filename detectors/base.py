"""The detector contract shared by every detector (scikit-learn style, PyOD/ADTK inspired).

``__init__`` only stores parameters; ``fit`` validates and learns ``*_`` attributes and
returns self; ``score`` is pure and returns a float Series on the input's index, higher =
more anomalous, NaN during warm-up; ``threshold`` is the default cut in the score's unit.
A threshold never requires a re-fit: severities are plain arithmetic on cached scores.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError


def severity(scores: pd.Series, threshold: float) -> pd.Series:
    """Map raw scores to [0, 1]: 0.5 exactly at ``threshold``, 1.0 at twice the threshold.

    Because every detector's severity crosses 0.5 at its own threshold, severities of
    different detectors can be combined (max, mean, k-of-n) and the combination is flagged
    at 0.5. NaN stays NaN.
    """
    if not np.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"Threshold must be a positive number, got {threshold!r}.")
    return (0.5 * scores / threshold).clip(lower=0.0, upper=1.0)


class Detector(BaseEstimator, ABC):
    """Base class. Subclasses set ``input_kind``, ``label`` and ``unit`` and implement
    ``_fit(frame)`` and ``_score(frame) -> np.ndarray | pd.Series``."""

    input_kind = "candles"   # or "headlines"
    label = ""               # human name for the UI
    unit = ""                # unit of the raw score, for the slider ("|z|", "error", ...)

    def fit(self, frame: pd.DataFrame) -> "Detector":
        self._check_frame(frame)
        self._fit(frame)
        return self

    def score(self, frame: pd.DataFrame) -> pd.Series:
        self._check_frame(frame)
        values = self._score(frame)
        out = pd.Series(np.asarray(values, dtype="float64"), index=frame.index, name=self.name)
        return out

    @property
    def name(self) -> str:
        from detectors import REGISTRY
        for key, path in REGISTRY.items():
            if path.endswith(":" + type(self).__name__):
                return key
        return type(self).__name__

    @property
    def threshold(self) -> float:
        """The default cut in the score's unit: the ``threshold`` parameter when a detector
        has one and it is set, else the cut learned in ``fit`` (``threshold_``)."""
        given = getattr(self, "_threshold", None)
        if given is not None:
            return float(given)
        if hasattr(self, "threshold_"):
            return float(self.threshold_)
        raise NotFittedError(f"{type(self).__name__} learns its threshold from the data: call fit() "
                             "first or pass threshold=.")

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        self._threshold = value

    def get_params(self, deep: bool = True) -> dict:
        # The parameter as passed (None = learn it at fit), not the effective cut above.
        return {name: self._threshold if name == "threshold" else getattr(self, name)
                for name in self._get_param_names()}

    def severity(self, scores: pd.Series, threshold: float | None = None) -> pd.Series:
        return severity(scores, self.threshold if threshold is None else threshold)

    def _check_frame(self, frame: pd.DataFrame) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"{type(self).__name__} takes a DataFrame, got {type(frame).__name__}.")
        if self.input_kind == "candles":
            missing = {"open", "high", "low", "close", "volume"} - set(frame.columns)
            if missing or not isinstance(frame.index, pd.DatetimeIndex):
                raise ValueError("Pass canonical candles (DatetimeIndex; open, high, low, close, "
                                 "volume), e.g. from data.load_candles.")

    def _fit(self, frame: pd.DataFrame) -> None:
        """Learn from ``frame`` (set ``*_`` attributes); detectors that learn nothing keep this."""

    @abstractmethod
    def _score(self, frame: pd.DataFrame):
        """Raw scores for ``frame``'s rows, higher = more anomalous, NaN during warm-up."""
