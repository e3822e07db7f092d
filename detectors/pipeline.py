"""The one detection pipeline: fit -> score -> calibrate -> flag -> combine -> events.

Every caller (the Explorer, the scanner, the evaluation page, the live monitor, the benches)
runs this, so a severity or a flag means the same thing everywhere. It has two halves:

- ``score_detectors`` fits each detector, scores the candles and calibrates the scores
  (expensive: the app caches it per data and parameters);
- ``Scored.detect`` applies thresholds and the ensemble mode (cheap: a threshold slider runs
  only this, and it never changes a severity).

``detect(candles)`` runs both with the defaults: what a new analyst sees.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from detectors.base import Detector, is_real
from detectors.calibration import TailCalibration
from detectors.ensemble import MODES, combine_severities
from events.build import MERGE_GAP, build_events

#: The Explorer's default detectors and parameters: ``detect(candles)`` runs these. The two
#: shape rules find the pumps and crashes whose single bars do not stand out (demo P&D 0.97 ->
#: 1.00, flash crashes 0.92 -> 0.96) and keep real daily bars under 6 flagged days a year.
DEFAULT_SPECS: tuple[tuple[str, dict], ...] = (("zscore", {}), ("pump_dump", {}), ("flash_crash", {}))

Progress = Callable[[float, str], None]


def is_flagged(scores: pd.Series, threshold: float) -> pd.Series:
    """The one definition of a flag: a score at or above its detector's threshold (NaN never)."""
    return (scores >= threshold).fillna(False).astype(bool)


def normalise_specs(specs: Any = None) -> tuple[tuple[str, dict], ...]:
    """Specs as ((name, params), ...) from None (the defaults), names, pairs or a dict."""
    if specs is None:
        return DEFAULT_SPECS
    if isinstance(specs, str):
        specs = [specs]
    if isinstance(specs, Mapping):
        specs = list(specs.items())
    out = []
    if not isinstance(specs, Iterable):
        specs = [specs]
    for spec in specs:
        pair = (spec, {}) if isinstance(spec, str) else spec
        if (not isinstance(pair, (tuple, list)) or len(pair) != 2 or not isinstance(pair[0], str)
                or not isinstance(pair[1], Mapping)):
            raise ValueError("specs must be detector names or (name, params) pairs, e.g. "
                             f"[('zscore', {{'window': 100}})]; got {spec!r}.")
        out.append((pair[0], dict(pair[1])))
    if not out:
        raise ValueError("Pass at least one detector in specs, e.g. ['zscore'].")
    if len({n for n, _ in out}) != len(out):
        raise ValueError("specs lists a detector twice; list each once.")
    return tuple(out)


@dataclass
class Detection:
    """What the pipeline found on one series; every frame is aligned to the candles."""

    scores: dict[str, pd.Series]          # raw scores in each detector's unit
    severity: pd.DataFrame                # calibrated severity per detector, in [0, 1)
    combined: pd.Series                   # the ensemble's severity, in [0, 1)
    flagged: pd.Series                    # bool: the one definition of a flagged bar
    events: pd.DataFrame                  # one row per event (see ``events.build``)
    thresholds: dict[str, float]          # the cuts used, in each detector's unit
    detector_flags: pd.DataFrame = field(repr=False)   # bool per detector


@dataclass
class Scored:
    """Fitted and calibrated detectors and their scores on one series (the expensive half)."""

    candles: pd.DataFrame
    detectors: dict[str, Detector]
    scores: dict[str, pd.Series]
    severity: pd.DataFrame
    errors: dict[str, str] = field(default_factory=dict)   # detectors that could not run

    @property
    def defaults(self) -> dict[str, float]:
        return {name: det.threshold for name, det in self.detectors.items()}

    @property
    def units(self) -> dict[str, str]:
        return {name: det.unit for name, det in self.detectors.items()}

    def subset(self, names: Iterable[str]) -> "Scored":
        """The same fitted detectors, only those named (to compare detectors without refitting);
        a named detector that failed is left out (its error stays), one never scored is an error."""
        names = list(names)
        unknown = [n for n in names if n not in self.scores and n not in self.errors]
        if unknown:
            raise ValueError(f"Not scored here: {', '.join(unknown)}; score them first.")
        keep = [n for n in names if n in self.scores]
        return Scored(self.candles, {n: self.detectors[n] for n in keep},
                      {n: self.scores[n] for n in keep}, self.severity[keep], self.errors)

    def detect(self, thresholds: Mapping[str, float] | None = None, mode: str = "max", k: int = 2,
               headlines: pd.DataFrame | None = None, symbol: str | None = None) -> Detection:
        """Flags, ensemble and events at these thresholds (missing names: the defaults)."""
        if not self.scores:
            raise ValueError("No detector could run: " + "; ".join(self.errors.values()))
        cuts = {**self.defaults, **_check_thresholds(thresholds, self.scores)}
        calibrations = {n: d.calibration_ for n, d in self.detectors.items()}
        return _detection(self.candles, self.scores, self.severity, calibrations, cuts, mode, k,
                          headlines, symbol)


def merge(candles: pd.DataFrame, parts: Iterable[Scored]) -> Scored:
    """One ``Scored`` from several scored separately on the same candles (cached per detector)."""
    models, scores, severity, errors = {}, {}, {}, {}
    for part in parts:
        models.update(part.detectors)
        scores.update(part.scores)
        severity.update({n: part.severity[n] for n in part.scores})
        errors.update(part.errors)
    return Scored(candles, models, scores, pd.DataFrame(severity, index=candles.index), errors)


def score_detectors(candles: pd.DataFrame, specs: Any = None, *, progress: Progress | None = None,
                    skip_failed: bool = False, fitted: Mapping[str, Detector] | None = None) -> Scored:
    """Fit, score and calibrate each detector in ``specs`` on ``candles``.

    ``progress(fraction, message)`` reaches slow detectors (the LSTM reports each epoch).
    With ``skip_failed`` a detector that raises ValueError is left out and its message kept
    in ``errors``; otherwise the error propagates. ``fitted`` reuses detectors already
    fitted on these candles (by name).
    """
    import detectors as registry
    _check_candles(candles)
    models, scores, severity, errors = {}, {}, {}, {}
    for name, params in normalise_specs(specs):
        try:
            det = (fitted or {}).get(name) or registry.create(name, **params)
            if not hasattr(det, "calibration_"):
                if det.slow:
                    det.fit(candles, progress=progress)
                else:
                    det.fit(candles)
            values = det.score(candles)
            if not hasattr(det, "calibration_"):
                det.calibrate(values)
        except ValueError as exc:
            if not skip_failed:
                raise
            errors[name] = f"{registry.detector_class(name).label}: {exc}"
            continue
        models[name], scores[name], severity[name] = det, values, det.severity(values)
    return Scored(candles, models, scores, pd.DataFrame(severity, index=candles.index), errors)


def detect(candles: pd.DataFrame, specs: Any = None, thresholds: Mapping[str, float] | None = None,
           mode: str = "max", k: int = 2, headlines: pd.DataFrame | None = None,
           progress: Progress | None = None) -> Detection:
    """The whole pipeline; ``detect(candles)`` is the Explorer's default detection.

    ``specs``: detector names or (name, params) pairs (default ``DEFAULT_SPECS``);
    ``thresholds``: cuts in each detector's unit (default: each detector's own);
    ``mode``/``k``: how detectors combine ("max": any flags; "vote": at least k flag;
    "mean": the mean severity reaches the mean severity at the cuts of the detectors scoring
    that bar); ``headlines`` adds news context to the events.
    """
    return score_detectors(candles, specs, progress=progress).detect(thresholds, mode, k, headlines)


def from_scores(candles: pd.DataFrame, scores: Mapping[str, pd.Series],
                thresholds: Mapping[str, float] | None = None, *, mode: str = "max", k: int = 2,
                symbol: str | None = None, headlines: pd.DataFrame | None = None,
                merge_gap: int = MERGE_GAP) -> Detection:
    """The pipeline's second half for raw scores computed elsewhere, each calibrated on itself.

    ``thresholds`` missing a detector use its registered default (detectors that learn their
    cut in fit need it passed)."""
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError("scores must be a non-empty dict of detector name -> score Series.")
    _check_candles(candles)
    raw = {}
    for name, values in scores.items():
        if not isinstance(values, pd.Series):
            raise ValueError(f"scores[{name!r}] must be a pandas Series aligned to the candles; "
                             f"got {type(values).__name__}.")
        raw[name] = _score_series(name, values, candles.index)
    given = _check_thresholds(thresholds, raw)
    cuts = {**_registered_defaults(candles, [n for n in raw if n not in given]), **given}
    calibrations = {n: TailCalibration(v) for n, v in raw.items()}
    severity = pd.DataFrame({n: calibrations[n].severity(v) for n, v in raw.items()}, index=candles.index)
    return _detection(candles, raw, severity, calibrations, cuts, mode, k, headlines, symbol, merge_gap)


def _detection(candles, scores, severity, calibrations, cuts, mode, k, headlines, symbol,
               merge_gap: int = MERGE_GAP) -> Detection:
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    names = list(scores)
    raw = pd.DataFrame({n: scores[n].reindex(candles.index) for n in names}, index=candles.index)
    per = pd.DataFrame({n: is_flagged(raw[n], cuts[n]) for n in names}, index=candles.index)
    combined = combine_severities({n: severity[n] for n in names}, mode=mode, k=k)
    flagged = _combine_flags(per, severity[names], calibrations, cuts, mode, k)
    events = build_events(candles, raw, severity[names], per, combined, flagged, merge_gap=merge_gap,
                          symbol=symbol if symbol is not None else candles.attrs.get("symbol"))
    if headlines is not None and len(events):
        from events.news_context import add_news_context
        events = add_news_context(events, headlines)
    return Detection(dict(scores), severity[names], combined, flagged, events,
                     {n: float(cuts[n]) for n in names}, per)


def _combine_flags(per: pd.DataFrame, severity: pd.DataFrame, calibrations, cuts, mode: str,
                   k: int) -> pd.Series:
    if mode == "max":
        out = per.any(axis=1)
    elif mode == "vote":
        out = per.sum(axis=1) >= min(k, per.shape[1])
    else:
        # The mean severity against the mean severity at the cuts of the same detectors: a bar
        # where one detector is still warming up compares with the others' cuts only.
        at_cut = pd.Series({n: calibrations[n].severity(pd.Series([cuts[n]])).iat[0] for n in per})
        scored = severity.notna()
        out = severity.mean(axis=1, skipna=True) >= scored.mul(at_cut.fillna(0.0)).sum(axis=1) / scored.sum(axis=1)
    return out.fillna(False).astype(bool).rename("flagged")


def _check_thresholds(thresholds, scores: Iterable[str]) -> dict[str, float]:
    if thresholds is None:
        return {}
    if not isinstance(thresholds, Mapping):
        raise ValueError("thresholds must be a dict of detector name -> cut in its unit, "
                         f"e.g. {{'zscore': 4.0}}; got {type(thresholds).__name__}.")
    out = {}
    for name, value in thresholds.items():
        if name not in scores:
            continue
        if not is_real(value) or abs(value) > 1e300:   # is_real: finite, yet an int may pass float's range
            raise ValueError(f"The threshold of {name!r} must be a finite number in its unit; "
                             f"got {value!r}.")
        out[name] = float(value)
    return out


def _registered_defaults(candles: pd.DataFrame, names) -> dict[str, float]:
    """Each detector's default cut on these candles (a cut learned in fit needs a fit)."""
    from detectors import create
    out = {}
    for name in names:
        det = create(name)
        try:
            out[name] = det.threshold
        except ValueError:  # NotFittedError is a ValueError: the cut is learned in fit
            out[name] = det.fit(candles).threshold
    return out


def _score_series(name: str, values: pd.Series, index: pd.DatetimeIndex) -> pd.Series:
    """A detector's raw scores on the candles' bars, as float (NaN: not scored)."""
    if not values.index.is_unique:
        raise ValueError(f"scores[{name!r}] has a timestamp twice; give one score per bar.")
    try:
        out = values.reindex(index).astype("float64")
    except (TypeError, ValueError):
        raise ValueError(f"scores[{name!r}] must hold numbers (NaN where not scored).") from None
    if np.isinf(out).any():
        raise ValueError(f"scores[{name!r}] holds an infinite score; use NaN where a bar cannot be scored.")
    return out


def _check_candles(candles: Any) -> None:
    if (not isinstance(candles, pd.DataFrame) or not isinstance(candles.index, pd.DatetimeIndex)
            or candles.index.tz is None):
        raise ValueError("Pass canonical candles (a DataFrame with a UTC DatetimeIndex), e.g. from "
                         "data.load_candles or data.validate_candles.")
