"""Detection quality on the labelled demo markets, at each detector's default threshold.

Run: .venv/bin/python bench/detection.py [--no-lstm] [--lstm-epochs 3] [--seeds 1 2 3]

For every seed, symbol (DEMO, DEMO-USD) and interval (1h, 15m, 1d) the detectors are
fitted on the market (unsupervised: labels are never seen) and scored on it. Printed per
detector, pooled over the markets: mean event-wise PR-AUC (analysts review events: an event
found by its one extreme bar is found), mean point-wise PR-AUC (and the base rate a random
score gets; half the labelled bars are the 24 quiet bars of each regime shift, so it stays
low), event recall, flag precision (share of flagged events that overlap a label, 3 bars of
tolerance) and recall per labelled kind, flagged as ``detectors.detect`` flags. "default
detection" is what a new analyst sees (``detectors.DEFAULT_SPECS``, max). Target: it finds
>= 95% of pump_and_dump, flash_crash and volume_surge labels at flag precision >= 0.7, and
the event-wise PR-AUC of its combined calibrated severity is >= 0.8.

Last, the operating points of that combined severity: one cut on it in place of each
detector's threshold, swept, with pooled precision and recall per target kind, and the
highest precision any cut reaches while every target kind keeps recall >= 0.95. It tells a
default cut that is too low for the demo (real markets chose it) from a ranking that cannot
separate the labelled events from the rest at any cut.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import detectors  # noqa: E402
from data.demo import LABEL_KINDS, demo_market  # noqa: E402
from detectors.pipeline import DEFAULT_SPECS, is_flagged  # noqa: E402
from evaluation.metrics import evaluate, flag_metrics  # noqa: E402

SYMBOLS = ("DEMO", "DEMO-USD")
INTERVALS = ("1h", "15m", "1d")
TARGET_KINDS = ("pump_and_dump", "flash_crash", "volume_surge")
BASE = ("zscore", "isolation_forest", "pump_dump", "flash_crash")
DEFAULT = "default detection"


def score_market(market, names: list[str], lstm_epochs: int):
    """Each detector fitted, scored and calibrated on this market (the app's pipeline)."""
    specs = [(n, {"epochs": lstm_epochs, "cache": False} if n == "lstm_autoencoder" else {})
             for n in names]
    return detectors.score_detectors(market.candles, specs)


def pooled_flags(results: list[dict]) -> dict:
    """Pool flag counts over markets (so a market with more labels weighs more)."""
    labels = sum(r["n_labels"] for r in results)
    flagged = sum(r["n_flagged_events"] for r in results)
    true = sum(np.nan_to_num(r["flag_precision"]) * r["n_flagged_events"] for r in results)
    found = sum(r["event_recall"] * r["n_labels"] for r in results if r["n_labels"])
    by_kind = {}
    for kind in LABEL_KINDS:
        per = [(r["recall_by_kind"][kind], r["kind_counts"][kind]) for r in results
               if kind in r["recall_by_kind"]]
        count = sum(c for _, c in per)
        by_kind[kind] = sum(v * c for v, c in per) / count if count else np.nan
    return {"recall": found / labels if labels else np.nan,
            "precision": true / flagged if flagged else np.nan,
            "events": flagged, "labels": labels, **by_kind}


def pooled(results: list[dict]) -> dict:
    """``pooled_flags`` and the mean PR-AUCs of the markets."""
    return {"event_pr_auc": np.nanmean([r["event_pr_auc"] for r in results]),
            "pr_auc": np.nanmean([r["pr_auc"] for r in results]),
            "base_rate": np.mean([r["base_rate"] for r in results]), **pooled_flags(results)}


def with_kind_counts(result: dict, labels: pd.DataFrame) -> dict:
    """An evaluation with the label count of each kind, which pooling weighs recalls by."""
    return {**result, "kind_counts": labels["kind"].value_counts().to_dict()}


def evaluate_with_counts(detection, labels: pd.DataFrame) -> dict:
    """Flags as the app flags them; PR-AUCs of the (combined) calibrated severity."""
    return with_kind_counts(evaluate(detection.combined, labels, flagged=detection.flagged), labels)


def operating_points(markets: list[tuple[pd.Series, pd.DataFrame]],
                     cuts=np.round(np.arange(0.50, 0.70, 0.01), 2)) -> pd.DataFrame:
    """Pooled precision and recall per target kind at each cut on the combined severity."""
    rows = []
    for cut in cuts:
        total = pooled_flags([with_kind_counts(flag_metrics(is_flagged(combined, cut), labels), labels)
                              for combined, labels in markets])
        rows.append({"cut": cut, "events": total["events"], "precision": total["precision"],
                     **{kind: total[kind] for kind in TARGET_KINDS}})
    return pd.DataFrame(rows).set_index("cut")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--no-lstm", action="store_true", help="leave the LSTM out")
    parser.add_argument("--lstm-epochs", type=int, default=3)
    args = parser.parse_args()

    names = list(BASE)
    if not args.no_lstm:
        try:
            detectors.detector_class("lstm_autoencoder")
            import tensorflow  # noqa: F401  (the LSTM needs it at fit time)
            names.append("lstm_autoencoder")
        except ImportError as exc:
            print(f"lstm_autoencoder left out: {exc}")
    combos = {DEFAULT: tuple(n for n, _ in DEFAULT_SPECS), "ensemble (max)": BASE}
    if "lstm_autoencoder" in names:
        combos["ensemble (max) + lstm"] = BASE + ("lstm_autoencoder",)

    results: dict[str, list[dict]] = {n: [] for n in names + list(combos)}
    per_market, combined = [], []
    start = time.perf_counter()
    for seed in args.seeds:
        for symbol in SYMBOLS:
            for interval in INTERVALS:
                market = demo_market(seed=seed, symbol=symbol, interval=interval)
                scored = score_market(market, names, args.lstm_epochs)
                for name in names:
                    results[name].append(evaluate_with_counts(scored.subset([name]).detect(),
                                                              market.labels))
                for label, members in combos.items():
                    detection = scored.subset(members).detect()
                    results[label].append(evaluate_with_counts(detection, market.labels))
                    if label == DEFAULT:
                        combined.append((detection.combined, market.labels))
                latest = pooled([results[DEFAULT][-1]])
                per_market.append({"seed": seed, "market": f"{symbol} {interval}",
                                   "bars": len(market.candles),
                                   **{k: latest[k] for k in ("recall", "precision", "events",
                                                             "labels")}})
    print(f"{len(per_market)} markets ({', '.join(map(str, args.seeds))} x {', '.join(SYMBOLS)} x "
          f"{', '.join(INTERVALS)}), about {np.mean([m['bars'] for m in per_market]):,.0f} bars "
          f"each; {time.perf_counter() - start:.0f} s\n")

    table = pd.DataFrame({name: pooled(rows) for name, rows in results.items()}).T
    pd.set_option("display.width", 200)
    print("Pooled at default thresholds (recall columns per labelled kind):")
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))

    print(f"\n{DEFAULT} per market, pooled over seeds:")
    frame = pd.DataFrame(per_market)
    frame["true"] = frame["precision"].fillna(0) * frame["events"]
    frame["found"] = frame["recall"] * frame["labels"]
    by_market = frame.groupby("market")[["labels", "found", "events", "true"]].sum()
    by_market["recall"] = by_market["found"] / by_market["labels"]
    by_market["precision"] = by_market["true"] / by_market["events"]
    print(by_market[["labels", "events", "recall", "precision"]].to_string(
        float_format=lambda v: f"{v:.2f}"))

    best = table.loc[DEFAULT]
    ok = (all(best[k] >= 0.95 for k in TARGET_KINDS) and best["precision"] >= 0.7
          and best["event_pr_auc"] >= 0.8)
    print(f"\nTarget ({DEFAULT}: recall >= 0.95 on {', '.join(TARGET_KINDS)}, precision >= 0.70, "
          "event-wise PR-AUC of the combined severity >= 0.80): "
          + ", ".join(f"{k} {best[k]:.2f}" for k in TARGET_KINDS)
          + f", precision {best['precision']:.2f}, event-wise PR-AUC {best['event_pr_auc']:.2f} "
          f"(point-wise {best['pr_auc']:.2f}) -> {'met' if ok else 'NOT met'}")

    points = operating_points(combined)
    print(f"\n{DEFAULT}: one cut on the combined severity instead of each detector's threshold:")
    print(points.to_string(float_format=lambda v: f"{v:.2f}"))
    keeps = points[(points[list(TARGET_KINDS)] >= 0.95).all(axis=1)]
    if len(keeps):
        top = keeps["precision"].idxmax()
        print(f"Highest precision with recall >= 0.95 on every target kind: {keeps.loc[top, 'precision']:.2f} "
              f"at cut {top:.2f} ({int(keeps.loc[top, 'events'])} flagged events)")


if __name__ == "__main__":
    main()
