"""The z-score's cut against both benches at once: real-market recall versus demo precision.

Run: .venv/bin/python bench/tradeoff.py [PATH] [--cuts 3.6 4.0 4.4 4.8]

For each base cut (the daily cut; intraday adds log10(bars per day), as ``default_cut``)
the default detection runs on the real markets in PATH (default ../shared/realdata, as
``bench/real_markets.py``) and on the 18 labelled demo markets (as ``bench/detection.py``).
Printed per cut: real daily and hourly recall and flagged days per year, demo recall per
target kind, flag precision and event-wise PR-AUC. It shows where the real-market targets
(daily recall >= 0.95 at <= 6 days/yr) and the demo's flag precision >= 0.7 meet, if anywhere.

Why they may not meet: "real quiet flags" counts flagged real days more than 3 days from
any dated event, per 1,000 daily bars, and "demo labels" the demo's labelled events per
1,000 bars, beside the demo's own unlabelled flags per 1,000 bars. A detector that flagged
the demo's unlabelled bars as often as real quiet days could not show a flag precision above
labels / (labels + quiet flags): the "ceiling at real rate" column. Precision 0.7 needs at
most 0.43 unlabelled flags per label.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detection import INTERVALS, SYMBOLS, TARGET_KINDS, evaluate_with_counts, pooled  # noqa: E402
from real_markets import events_root, load, tally, windows  # noqa: E402

import detectors  # noqa: E402
from data.demo import demo_market  # noqa: E402
from detectors.zscore import BASE_CUT, default_cut  # noqa: E402


def cuts_at(base_cut: float, candles: pd.DataFrame) -> dict[str, float]:
    """The z-score's cut at ``base_cut`` on these bars (the same bar-size rule as the default)."""
    return {"zscore": default_cut(candles.index) - BASE_CUT + base_cut}


def quiet_flags(flagged: pd.Series, spans, margin: pd.Timedelta = pd.Timedelta(days=3)) -> int:
    """Flagged bars more than ``margin`` from every event span (flags no dated event explains)."""
    times = flagged.index[flagged.to_numpy(dtype=bool)]
    near = np.zeros(len(times), dtype=bool)
    for start, end, _ in spans:
        near |= (times >= start - margin) & (times <= end + margin)
    return int((~near).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", help="the real-market folder (default ../shared/realdata)")
    parser.add_argument("--cuts", type=float, nargs="+", default=[3.6, 4.0, 4.4, 4.8])
    args = parser.parse_args()
    root = events_root(args.path)
    events = pd.read_csv(root / "events.csv")
    # Scored once: a cut never changes scores or severities, so each cut is only a detect().
    real = []
    for symbol, group in events.groupby("symbol"):
        candles = load(root, symbol)
        real.append((symbol, candles, detectors.score_detectors(candles), windows(group, not symbol.endswith("USDT"))))
    demos = [demo_market(seed=seed, symbol=symbol, interval=interval)
             for seed in (1, 2, 3) for symbol in SYMBOLS for interval in INTERVALS]
    demos = [(m, detectors.score_detectors(m.candles)) for m in demos]
    demo_bars = sum(len(m.candles) for m, _ in demos)
    rows = []
    for base in args.cuts:
        row = {"base cut": base}
        totals = {"daily": ([], 0, 0.0), "hourly": ([], 0, 0.0)}
        quiet, daily_bars = 0, 0
        for symbol, candles, scored, spans in real:
            flagged = scored.detect(cuts_at(base, candles)).flagged
            found, days, years = tally(flagged, spans)
            freq = "hourly" if symbol.endswith("USDT") else "daily"
            had = totals[freq]
            if freq == "daily":
                quiet, daily_bars = quiet + quiet_flags(flagged, spans), daily_bars + len(candles)
            totals[freq] = (had[0] + [f for _, f in found], had[1] + days, had[2] + years)
        for freq, (found, days, years) in totals.items():
            row[f"real {freq} recall"] = np.mean(found)
            row[f"real {freq} days/yr"] = days / years
        demo = pooled([evaluate_with_counts(scored.detect(cuts_at(base, m.candles)), m.labels)
                       for m, scored in demos])
        row.update({f"demo {k}": demo[k] for k in (*TARGET_KINDS, "precision", "event_pr_auc")})
        row["real quiet flags /1k"] = 1000 * quiet / daily_bars
        row["demo unlabelled flags /1k"] = 1000 * demo["events"] * (1 - demo["precision"]) / demo_bars
        row["demo labels /1k"] = 1000 * demo["labels"] / demo_bars
        row["ceiling at real rate"] = row["demo labels /1k"] / (row["demo labels /1k"]
                                                               + row["real quiet flags /1k"])
        rows.append(row)
    pd.set_option("display.width", 220)
    print(pd.DataFrame(rows).set_index("base cut").to_string(float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
