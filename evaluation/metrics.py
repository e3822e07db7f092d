"""Scoring detectors against labelled anomaly windows (detection layer).

Two views, because analysts care about both: point-wise ranking quality (PR-AUC of the raw
score against "inside a labelled window", robust to the heavy class imbalance), and
event-wise usefulness (how many labelled events get at least one flag, and how many flagged
events are real), at a threshold and as the event-wise PR-AUC over all thresholds: an
analyst reviews events, not bars, so an event found by its one extreme bar counts as found,
where point-wise it still leaves the window's quiet bars unfound. Flagged bars are grouped into events the way
``detectors.to_events`` groups them. Positions and delays are counted in bars.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve

from detectors.pipeline import is_flagged
from events.build import MERGE_GAP, flag_runs

#: Bars after a label's end during which a flag still counts as finding it.
DEFAULT_TOLERANCE = 3
#: Cuts the event-wise PR-AUC sweeps: the scores at this many ranks, spaced geometrically.
EVENT_CURVE_CUTS = 200


def evaluate(scores: pd.Series, labels: pd.DataFrame, threshold: float | None = None, *,
             flagged: pd.Series | None = None, kinds=None, tolerance: int = DEFAULT_TOLERANCE,
             merge_gap: int = MERGE_GAP) -> dict:
    """Point-wise and event-wise quality of ``scores`` against ``labels``.

    Parameters
    ----------
    scores : Series
        Raw scores on a sorted DatetimeIndex, higher = more anomalous; NaN ranks lowest
        and is never flagged.
    labels : DataFrame
        Columns ``start``, ``end`` (inclusive, UTC) and ``kind``. Labels entirely outside
        the scored span are ignored.
    threshold : float, optional
        Bars with score >= threshold are flagged (``detectors.is_flagged``).
    flagged : bool Series, optional
        The flags themselves instead of a threshold (an ensemble's ``Detection.flagged``).
    kinds : iterable of str, optional
        Keep only labels of these kinds (the kinds a detector is meant to find).
    tolerance : int
        A flag up to this many bars after a label's end still finds it (and still counts
        as a true flag).
    merge_gap : int
        Flagged bars separated by at most this many unflagged bars form one flagged event.

    Returns
    -------
    dict
        ``pr_auc`` (NaN without labels), ``base_rate`` (the PR-AUC of a random score),
        ``event_pr_auc`` (see ``event_pr_auc``; NaN without labels), ``event_recall``,
        ``flag_precision``, ``f1``, ``recall_by_kind`` (kind -> recall),
        ``detection_delay`` (mean bars from label start to its first flag; NaN if none
        found), ``n_labels`` and ``n_flagged_events``.
    """
    windows = _label_windows(scores.index, labels, kinds)
    inside = _inside_mask(len(scores), windows)
    result = {"pr_auc": _pr_auc(scores, inside),
              "event_pr_auc": _event_pr_auc(scores, windows, tolerance, merge_gap),
              "base_rate": float(inside.mean()) if len(inside) else np.nan}
    if flagged is None:
        if threshold is None:
            raise ValueError("Pass threshold= (a cut in the score's unit) or flagged= (bool flags).")
        flagged = is_flagged(scores, threshold)
    result.update(_event_metrics(flagged.reindex(scores.index, fill_value=False).to_numpy(dtype=bool),
                                 windows, tolerance, merge_gap))
    return result


def threshold_sweep(scores: pd.Series, labels: pd.DataFrame, thresholds, *, kinds=None,
                    tolerance: int = DEFAULT_TOLERANCE, merge_gap: int = MERGE_GAP) -> pd.DataFrame:
    """Event-wise precision, recall and F1 at each threshold (columns in that order)."""
    cuts = [float(t) for t in thresholds]
    rows = [{"threshold": cut, "precision": m["flag_precision"], "recall": m["event_recall"], "f1": m["f1"]}
            for cut, m in zip(cuts, _sweep(scores, _label_windows(scores.index, labels, kinds), cuts,
                                           tolerance, merge_gap))]
    return pd.DataFrame(rows, columns=["threshold", "precision", "recall", "f1"])


def flag_metrics(flagged: pd.Series, labels: pd.DataFrame, *, kinds=None, tolerance: int = DEFAULT_TOLERANCE,
                 merge_gap: int = MERGE_GAP) -> dict:
    """The event-wise part of ``evaluate`` for flags alone (recall, precision, F1, recall by
    kind, delay, counts), without the PR-AUCs' sweep: what a scan needs per symbol."""
    return _event_metrics(flagged.to_numpy(dtype=bool), _label_windows(flagged.index, labels, kinds),
                          tolerance, merge_gap)


def _sweep(scores: pd.Series, windows: pd.DataFrame, cuts, tolerance: int, merge_gap: int) -> list[dict]:
    """Event metrics of the flags at each cut (flagged as everywhere: ``is_flagged``)."""
    return [_event_metrics(is_flagged(scores, cut).to_numpy(dtype=bool), windows, tolerance, merge_gap)
            for cut in cuts]


def event_pr_auc(scores: pd.Series, labels: pd.DataFrame, *, kinds=None,
                 tolerance: int = DEFAULT_TOLERANCE, merge_gap: int = MERGE_GAP) -> float:
    """Area under the event-wise precision-recall curve of ``scores`` (NaN without labels).

    Average precision over cuts from the highest score down: the sum of each cut's flag
    precision times the event recall it adds. The cuts are the scores at
    ``EVENT_CURVE_CUTS`` ranks spaced geometrically (fine at the top, where analysts look).
    """
    return _event_pr_auc(scores, _label_windows(scores.index, labels, kinds), tolerance, merge_gap)


def _event_pr_auc(scores: pd.Series, windows: pd.DataFrame, tolerance: int, merge_gap: int) -> float:
    values = scores.to_numpy(dtype="float64")
    finite = np.sort(values[np.isfinite(values)])[::-1]
    if windows.empty or not len(finite):
        return np.nan
    ranks = np.unique(np.geomspace(1, len(finite), EVENT_CURVE_CUTS).round().astype(int))
    curve = _sweep(scores, windows, np.unique(finite[ranks - 1])[::-1], tolerance, merge_gap)
    recall = np.array([m["event_recall"] for m in curve])
    precision = np.array([m["flag_precision"] for m in curve])
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def best_threshold(sweep: pd.DataFrame) -> float:
    """The threshold with the highest F1 in a ``threshold_sweep``; ties go to the highest
    threshold (fewer flags for the same quality)."""
    valid = sweep.dropna(subset=["f1"])
    if valid.empty:
        raise ValueError("No threshold in the sweep has an F1: add labels or lower the thresholds.")
    best = valid[valid["f1"] == valid["f1"].max()]
    return float(best["threshold"].max())


def pr_curve(scores: pd.Series, labels: pd.DataFrame, *, kinds=None) -> pd.DataFrame:
    """Point-wise precision-recall curve (columns precision, recall, threshold).

    NaN scores rank lowest; the point that flags them too has threshold -inf.
    """
    windows = _label_windows(scores.index, labels, kinds)
    inside = _inside_mask(len(scores), windows)
    if not inside.any():
        raise ValueError("No labelled bar in the scored range: widen the range or pick "
                         "other kinds.")
    filled, sentinel = _nan_lowest(scores.to_numpy(dtype="float64"))
    precision, recall, thresholds = precision_recall_curve(inside, filled)
    thresholds = np.where(thresholds == sentinel, -np.inf, thresholds)
    # The last point (precision 1, recall 0) has no threshold in scikit-learn's output.
    return pd.DataFrame({"precision": precision[:-1], "recall": recall[:-1],
                         "threshold": thresholds})


def labels_in_range(index: pd.DatetimeIndex, labels: pd.DataFrame, *, kinds=None) -> int:
    """How many labels hold at least one bar of ``index``: the labels the metrics count
    (0 means there is nothing to evaluate, and ``pr_curve`` raises)."""
    return len(_label_windows(index, labels, kinds))


def _label_windows(index: pd.DatetimeIndex, labels: pd.DataFrame, kinds) -> pd.DataFrame:
    """Labels as bar positions: columns first, last (inclusive) and kind."""
    if not isinstance(labels, pd.DataFrame) or not {"start", "end", "kind"} <= set(labels.columns):
        raise ValueError("labels must be a DataFrame with columns start, end and kind, e.g. from "
                         "data.labels.read_labels or the demo market's labels.")
    if kinds is not None:
        labels = labels[labels["kind"].isin(list(kinds))]
    starts = pd.to_datetime(labels["start"], utc=True)
    ends = pd.to_datetime(labels["end"], utc=True)
    first = index.searchsorted(starts.to_numpy(), side="left")
    last = index.searchsorted(ends.to_numpy(), side="right") - 1
    keep = first <= last
    return pd.DataFrame({"first": first[keep], "last": last[keep],
                         "kind": labels["kind"].to_numpy()[keep]})


def _inside_mask(n: int, windows: pd.DataFrame) -> np.ndarray:
    # Difference array: +1 at each window start, -1 after its end; cumsum > 0 is inside.
    marks = np.zeros(n + 1, dtype=np.int64)
    np.add.at(marks, windows["first"].to_numpy(), 1)
    np.add.at(marks, windows["last"].to_numpy() + 1, -1)
    return np.cumsum(marks[:n]) > 0


def _nan_lowest(values: np.ndarray) -> tuple[np.ndarray, float]:
    """NaN and -inf ranked below every score, +inf above (the PR curve needs finite values)."""
    finite = values[np.isfinite(values)]
    sentinel = float(finite.min() - 1.0) if len(finite) else 0.0
    top = float(finite.max() + 1.0) if len(finite) else 1.0
    ranked = np.where(values == np.inf, top, values)
    return np.where(np.isnan(ranked) | (ranked == -np.inf), sentinel, ranked), sentinel


def _pr_auc(scores: pd.Series, inside: np.ndarray) -> float:
    if not inside.any():
        return np.nan
    filled, _ = _nan_lowest(scores.to_numpy(dtype="float64"))
    return float(average_precision_score(inside, filled))


def _event_metrics(flagged: np.ndarray, windows: pd.DataFrame, tolerance: int,
                   merge_gap: int) -> dict:
    run_starts, run_ends = flag_runs(flagged, merge_gap)
    first = windows["first"].to_numpy()
    reach = windows["last"].to_numpy() + tolerance
    # Flagged positions before or at each bar: a window holds a flag iff the count grows.
    flag_count = np.concatenate([[0], np.cumsum(flagged)])
    reach_clipped = np.minimum(reach, len(flagged) - 1)
    found = flag_count[reach_clipped + 1] - flag_count[first] > 0
    # First flag at or after each label's start (-1 if none; only read where found).
    flag_positions = np.append(np.flatnonzero(flagged), -1)
    first_flag = flag_positions[np.searchsorted(flag_positions[:-1], first)]
    delays = (first_flag - first)[found]
    # A flagged run is true if it overlaps some [first, last + tolerance] window.
    reached = _inside_mask(len(flagged), pd.DataFrame({"first": first, "last": reach_clipped}))
    reached_count = np.concatenate([[0], np.cumsum(reached)])
    true_run = reached_count[run_ends + 1] - reached_count[run_starts] > 0
    recall = float(found.mean()) if len(found) else np.nan
    precision = float(true_run.mean()) if len(true_run) else np.nan
    if np.isnan(recall) and np.isnan(precision):
        f1 = np.nan
    else:  # a missing side (no flags, or no labels) counts as 0
        p, r = np.nan_to_num(precision), np.nan_to_num(recall)
        f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    kinds, which = np.unique(windows["kind"].to_numpy(), return_inverse=True)
    by_kind = dict(zip(map(str, kinds), (np.bincount(which, weights=found, minlength=len(kinds))
                                         / np.bincount(which, minlength=len(kinds))).tolist()))
    return {"event_recall": recall, "flag_precision": precision, "f1": float(f1),
            "recall_by_kind": by_kind,
            "detection_delay": float(delays.mean()) if len(delays) else np.nan,
            "n_labels": int(len(found)), "n_flagged_events": int(len(run_starts))}

