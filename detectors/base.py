"""The detector contract shared by every detector (scikit-learn style, PyOD/ADTK inspired).

The scikit-learn estimator conventions (``get_params``/``set_params``, so ``sklearn.clone``
works) are implemented here rather than inherited: importing scikit-learn costs the Explorer's
first page about 0.7 s, and only the Isolation Forest and the LSTM's scaler need it.

``__init__`` only stores parameters; ``fit`` validates and learns ``*_`` attributes and
returns self; ``score`` is pure and returns a float Series on the input's index, higher =
more anomalous, NaN during warm-up; ``threshold`` is the default cut in the score's unit;
``calibrate(scores)`` then ``severity(scores)`` say how rare each score is on that series.
A threshold never requires a re-fit, and never changes a severity.
"""
from __future__ import annotations

import inspect
import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from detectors.calibration import TailCalibration

#: Largest random seed: NumPy's legacy seeding and scikit-learn take 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


class NotFittedError(ValueError, AttributeError):
    """A detector used before ``fit`` (a ValueError and an AttributeError, as scikit-learn's)."""


def is_real(value: Any) -> bool:
    """A finite real number: int, float or a numpy number, but not a bool (nor text)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):   # np.bool_ is no Real
        return False
    try:
        return math.isfinite(value)
    except OverflowError:   # an int too large for a float is still a finite number
        return True


def check_whole(name: str, value: Any, least: int, most: int) -> None:
    """ValueError naming the fix unless ``value`` is a whole number in [least, most]."""
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
            or not least <= value <= most):
        raise ValueError(f"{name} must be a whole number from {least:,} to {most:,}; got {value!r}.")


def check_number(name: str, value: Any, above: float, most: float, example: str) -> None:
    """ValueError naming the fix unless ``value`` is a real number in (above, most]."""
    if not (is_real(value) and above < value <= most):
        raise ValueError(f"{name} must be a number above {above:g} and at most {most:g}, "
                         f"e.g. {example}; got {value!r}.")


def check_flag(name: str, value: Any) -> None:
    """ValueError naming the fix unless ``value`` is True or False (1, "yes" or None are not)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}.")


def check_seed(name: str, value: Any) -> None:
    """ValueError naming the fix unless ``value`` is None or a seed NumPy and scikit-learn take."""
    if value is not None:
        check_whole(name, value, 0, MAX_SEED)


def check_names(name: str, value: Any, choices: Iterable[str], example: str) -> None:
    """ValueError naming the fix unless ``value`` is a non-empty list or tuple of distinct
    names from ``choices``."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name} must be a non-empty list of names such as {example}; got {value!r}.")
    choices = tuple(choices)
    unknown = [v for v in value if not isinstance(v, str) or v not in choices]
    if unknown:
        raise ValueError(f"Unknown {name} {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(choices)}.")
    if len(set(value)) != len(value):
        raise ValueError(f"{name} lists a name twice; list each once: {value!r}.")


@dataclass(frozen=True)
class ParamSpec:
    """One whole-number parameter an analyst may tune, with its sensible range (for the UI)."""

    name: str
    label: str
    low: int
    high: int
    step: int = 1


class Detector(ABC):
    """Base class. Subclasses set the metadata below and implement ``_fit(frame)`` and
    ``_score(frame) -> np.ndarray | pd.Series``."""

    input_kind = "candles"   # or "headlines"
    label = ""               # human name for the UI
    unit = ""                # unit of the raw score, for the slider ("|z|", "error", ...)
    parameters: tuple[ParamSpec, ...] = ()   # what the sidebar offers to tune
    slow = False             # trains a model: the UI shows progress and offers to cancel

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

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The keyword parameters of ``__init__``, sorted (each is stored as an attribute)."""
        signature = inspect.signature(cls.__init__)
        return sorted(p.name for p in signature.parameters.values()
                      if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))

    def get_params(self, deep: bool = True) -> dict:
        # The parameter as passed (None = learn it at fit), not the effective cut above.
        return {name: self._threshold if name == "threshold" else getattr(self, name)
                for name in self._get_param_names()}

    def set_params(self, **params: Any) -> "Detector":
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {name!r}; "
                                 f"choose from {', '.join(valid)}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def calibrate(self, scores: pd.Series) -> "Detector":
        """Learn how rare each score is on this series (``calibration_``) from its scores."""
        self.calibration_ = TailCalibration(scores)
        return self

    def severity(self, scores: pd.Series) -> pd.Series:
        """Calibrated severity in [0, 1): equal values mean equally rare, whatever the detector."""
        if not hasattr(self, "calibration_"):
            raise NotFittedError(f"{type(self).__name__}: call calibrate(scores) before severity().")
        return self.calibration_.severity(scores)

    def _check_frame(self, frame: pd.DataFrame) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"{type(self).__name__} takes a DataFrame, got {type(frame).__name__}.")
        if self.input_kind == "candles":
            missing = {"open", "high", "low", "close", "volume"} - set(frame.columns)
            if missing or not isinstance(frame.index, pd.DatetimeIndex):
                raise ValueError("Pass canonical candles (DatetimeIndex; open, high, low, close, "
                                 "volume), e.g. from data.load_candles.")
            prices = frame[["open", "high", "low", "close"]].to_numpy(dtype="float64")
            if (prices <= 0).any():   # NaN compares False: a gap is not refused here
                raise ValueError("Candles need positive prices (a zero or negative price has no log "
                                 "return); data.validate_candles says which rows.")

    def _fit(self, frame: pd.DataFrame) -> None:
        """Learn from ``frame`` (set ``*_`` attributes); detectors that learn nothing keep this."""

    @abstractmethod
    def _score(self, frame: pd.DataFrame):
        """Raw scores for ``frame``'s rows, higher = more anomalous, NaN during warm-up."""
