"""Scoring detectors against labelled windows: PR-AUC, event recall and precision, sweeps."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation.metrics import (
    DEFAULT_TOLERANCE,
    best_threshold,
    evaluate,
    event_pr_auc,
    labels_in_range,
    pr_curve,
    threshold_sweep,
)
from events.build import MERGE_GAP, flag_runs

INDEX = pd.date_range("2024-01-01", periods=100, freq="h", tz="UTC", name="timestamp")


def labels(*windows: tuple[int, int, str]) -> pd.DataFrame:
    return pd.DataFrame({"start": [INDEX[a] for a, _, _ in windows],
                         "end": [INDEX[b] for _, b, _ in windows],
                         "kind": [k for _, _, k in windows]})


@pytest.fixture
def scores() -> pd.Series:
    """Flags (5.0) inside window A (bar 11), between the windows (30) and 3 bars after B (55)."""
    values = np.zeros(len(INDEX))
    values[:5] = np.nan        # warm-up
    values[[11, 30, 55]] = 5.0
    return pd.Series(values, index=INDEX)


LABELS = labels((10, 12, "a"), (50, 52, "b"))


def test_evaluate_worked_example(scores):
    result = evaluate(scores, LABELS, threshold=1.0)
    assert result["event_recall"] == 1.0             # 55 is within 3 bars of B's end
    assert result["flag_precision"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(0.8)
    assert result["recall_by_kind"] == {"a": 1.0, "b": 1.0}
    assert result["detection_delay"] == pytest.approx((1 + 5) / 2)
    assert result["n_labels"] == 2 and result["n_flagged_events"] == 3
    assert result["base_rate"] == pytest.approx(6 / 100)
    # by hand: at 5.0, 1 of 3 flags is inside (recall 1/6); at 0.0, 6 of 95 (recall 1);
    # the NaN bars rank lowest and add no recall
    assert result["pr_auc"] == pytest.approx((1 / 6) * (1 / 3) + (5 / 6) * (6 / 95))


def test_event_pr_auc_worked_example(scores):
    # At 5.0 the three flags find both labels, two of them true: precision 2/3 over recall 1.
    assert evaluate(scores, LABELS, threshold=1.0)["event_pr_auc"] == pytest.approx(2 / 3)
    ranked = scores.copy()
    ranked.iloc[[11, 30, 55]] = [9.0, 7.0, 5.0]
    # cut 9: A found, precision 1 (recall +1/2); cut 7: nothing new; cut 5: B found with
    # 2 of 3 flags true (recall +1/2); the cut at 0 flags one run over all (nothing new).
    assert event_pr_auc(ranked, LABELS) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # The order matters: the false flag ranked first costs precision on every later cut.
    ranked.iloc[[11, 30, 55]] = [7.0, 9.0, 5.0]
    assert event_pr_auc(ranked, LABELS) == pytest.approx(0.5 * 1 / 2 + 0.5 * 2 / 3)
    assert np.isnan(event_pr_auc(ranked, LABELS.iloc[:0]))
    assert event_pr_auc(ranked, LABELS, kinds=["a"]) == pytest.approx(1 / 2)


def test_tolerance_and_kinds(scores):
    strict = evaluate(scores, LABELS, threshold=1.0, tolerance=2)
    assert strict["recall_by_kind"] == {"a": 1.0, "b": 0.0}
    assert strict["flag_precision"] == pytest.approx(1 / 3)
    assert strict["f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    only_b = evaluate(scores, LABELS, threshold=1.0, kinds=["b"])
    assert only_b["n_labels"] == 1 and only_b["recall_by_kind"] == {"b": 1.0}


def test_nothing_flagged_and_nothing_labelled(scores):
    silent = evaluate(scores, LABELS, threshold=10.0)
    assert silent["event_recall"] == 0.0 and np.isnan(silent["flag_precision"])
    assert silent["f1"] == 0.0 and np.isnan(silent["detection_delay"])
    outside = labels((10, 12, "a")).assign(start=pd.Timestamp("2030-01-01", tz="UTC"),
                                           end=pd.Timestamp("2030-01-02", tz="UTC"))
    unlabelled = evaluate(scores, outside, threshold=1.0)
    assert unlabelled["n_labels"] == 0 and np.isnan(unlabelled["pr_auc"])
    assert unlabelled["flag_precision"] == 0.0 and unlabelled["f1"] == 0.0


def test_merge_gap_groups_flags_like_events():
    values = np.zeros(len(INDEX))
    values[[30, 32]] = 5.0
    result = evaluate(pd.Series(values, index=INDEX), LABELS, threshold=1.0, merge_gap=2)
    assert result["n_flagged_events"] == 1
    result = evaluate(pd.Series(values, index=INDEX), LABELS, threshold=1.0, merge_gap=0)
    assert result["n_flagged_events"] == 2


def test_threshold_sweep_and_best_threshold(scores):
    sweep = threshold_sweep(scores, LABELS, [0.5, 5.0, 6.0])
    assert list(sweep.columns) == ["threshold", "precision", "recall", "f1"]
    assert sweep["recall"].tolist() == [1.0, 1.0, 0.0]
    # 0.5 and 5.0 flag the same bars: the tie goes to the higher threshold
    assert best_threshold(sweep) == 5.0
    with pytest.raises(ValueError, match="F1"):
        best_threshold(sweep.assign(f1=np.nan))


def test_pr_curve(scores):
    curve = pr_curve(scores, LABELS)
    assert list(curve.columns) == ["precision", "recall", "threshold"]
    assert curve["threshold"].is_monotonic_increasing
    assert curve["recall"].is_monotonic_decreasing
    assert curve["threshold"].iloc[0] == -np.inf and curve["recall"].iloc[0] == 1.0
    assert curve.loc[curve["threshold"] == 5.0, "precision"].item() == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="labelled"):
        pr_curve(scores, labels((10, 12, "a")).iloc[:0])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000),
       cuts=st.lists(st.floats(min_value=0.0, max_value=4.0), min_size=2, max_size=6))
def test_recall_never_rises_as_the_threshold_rises(seed, cuts):
    rng = np.random.default_rng(seed)
    random_scores = pd.Series(np.abs(rng.normal(size=len(INDEX))), index=INDEX)
    sweep = threshold_sweep(random_scores, LABELS, sorted(cuts))
    assert sweep["recall"].is_monotonic_decreasing


@pytest.mark.parametrize("seed", range(20))
def test_run_overlap_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    # Flag precision is the share of flagged runs near some label, counted by brute force.
    flagged = pd.Series(rng.random(len(INDEX)) < 0.1, index=INDEX)
    first = rng.integers(0, 95, size=8)
    windows = labels(*[(a, a + int(rng.integers(0, 5)), "k") for a in first])
    run_starts, run_ends = flag_runs(flagged.to_numpy(), MERGE_GAP)
    true = [any(a <= e and a_end + DEFAULT_TOLERANCE >= s for a, a_end in
                zip(INDEX.get_indexer(windows["start"]), INDEX.get_indexer(windows["end"])))
            for s, e in zip(run_starts, run_ends)]
    precision = evaluate(flagged.astype(float), windows, flagged=flagged)["flag_precision"]
    assert precision == pytest.approx(np.mean(true)) if true else np.isnan(precision)


def test_labels_in_range_counts_labels_holding_a_bar():
    assert labels_in_range(INDEX, LABELS) == 2
    assert labels_in_range(INDEX, LABELS, kinds=["b"]) == 1
    between_bars = pd.DataFrame({"start": [INDEX[3] + pd.Timedelta(minutes=10)],
                                 "end": [INDEX[3] + pd.Timedelta(minutes=50)], "kind": ["a"]})
    assert labels_in_range(INDEX, between_bars) == 0
