"""Detection on real markets: recall of dated, confirmed events and how often the defaults flag.

Run: .venv/bin/python bench/real_markets.py [PATH] [--lstm]

PATH (default ../shared/realdata) holds prices/daily/*.csv, prices/hourly/*.csv and events.csv
(symbol, start, end, kind); see its SOURCES.md and EVIDENCE.md. The project never needs it to
run or test. Every detector runs at its default parameters and threshold through
``detectors.score_detectors`` (the pipeline the app uses); beside them, in the same run, the
peer rule: plain trailing |z| of log return and of log volume, window 48, cut 3.

Printed per rule: daily event recall (an event is found when a bar inside it is flagged) and
flagged days per symbol-year; hourly recall and flagged days per year; recall per kind.
Targets of the default detection: daily recall >= 0.95 at <= 6 flagged days per symbol-year;
hourly recall >= 0.9 at no more than a third of the peer's flagged days.
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
from data import validate_candles  # noqa: E402
from detectors.features import rolling_zscore  # noqa: E402
from detectors.pipeline import DEFAULT_SPECS  # noqa: E402

BASE = ("zscore", "pump_dump", "flash_crash", "isolation_forest")
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def events_root(path: str | None) -> Path:
    """The real-market folder. Without PATH and without the default folder the bench is
    skipped (exit 0, so ``make bench`` goes on); a PATH without events.csv is an error."""
    root = Path(path) if path else DEFAULT_ROOT
    if not (root / "events.csv").is_file():
        message = f"No events.csv under {root}: pass the real-market folder as PATH."
        if path:
            sys.exit(message)
        print(f"skipped: {message}")
        sys.exit(0)
    return root


def load(root: Path, symbol: str) -> pd.DataFrame:
    hourly = symbol.endswith("USDT")
    path = root / "prices" / ("hourly" if hourly else "daily") / f"{symbol}.csv"
    frame = pd.read_csv(path)
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp"), utc=True), name="timestamp")
    return validate_candles(frame.astype("float64"), symbol=symbol, source="csv",
                            interval="1h" if hourly else "1d")


def peer_flags(candles: pd.DataFrame) -> pd.Series:
    """The peer: |z| of log return or of log volume against the 48 bars before >= 3."""
    z_ret = rolling_zscore(np.log(candles["close"]).diff(), 48).abs()
    z_vol = rolling_zscore(np.log(candles["volume"].where(candles["volume"] > 0)), 48).abs()
    return (np.fmax(z_ret, z_vol) >= 3).fillna(False)


def windows(events: pd.DataFrame, daily: bool) -> list[tuple[pd.Timestamp, pd.Timestamp, str]]:
    out = []
    for row in events.itertuples():
        start, end = pd.Timestamp(row.start), pd.Timestamp(row.end)
        start = start.tz_localize("UTC") if start.tzinfo is None else start
        end = end.tz_localize("UTC") if end.tzinfo is None else end
        out.append((start, end + pd.Timedelta(hours=23, minutes=59) if daily else end, row.kind))
    return out


def tally(flags: pd.Series, spans) -> tuple[list[tuple[str, bool]], int, float]:
    """(kind, found) per event, flagged days and years of data."""
    times = flags.index[flags.to_numpy(dtype=bool)]
    found = [(kind, bool(((times >= a) & (times <= b)).any())) for a, b, kind in spans]
    years = (flags.index[-1] - flags.index[0]).days / 365.25
    return found, len(times.normalize().unique()), years


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", help="the real-market folder (default ../shared/realdata)")
    parser.add_argument("--lstm", action="store_true", help="also the LSTM autoencoder (slow)")
    args = parser.parse_args()
    root = events_root(args.path)
    events = pd.read_csv(root / "events.csv")
    names = list(BASE) + (["lstm_autoencoder"] if args.lstm else [])
    rules = ["default detection"] + names + ["peer (z48, cut 3)"]
    totals = {(rule, freq): {"found": [], "days": 0, "years": 0.0} for rule in rules for freq in ("daily", "hourly")}
    started = time.perf_counter()
    for symbol, group in events.groupby("symbol"):
        candles = load(root, symbol)
        freq = "hourly" if symbol.endswith("USDT") else "daily"
        spans = windows(group, freq == "daily")
        specs = [(n, {"cache": False} if n == "lstm_autoencoder" else {}) for n in names]
        scored = detectors.score_detectors(candles, specs)
        flags = {"default detection": scored.subset([n for n, _ in DEFAULT_SPECS]).detect().flagged,
                 "peer (z48, cut 3)": peer_flags(candles)}
        flags.update({n: scored.subset([n]).detect().flagged for n in names})
        for rule, flagged in flags.items():
            found, days, years = tally(flagged, spans)
            total = totals[(rule, freq)]
            total["found"] += found
            total["days"] += days
            total["years"] += years
    kinds = sorted(events["kind"].unique())
    rows = []
    for rule in rules:
        row = {"rule": rule}
        for freq in ("daily", "hourly"):
            total = totals[(rule, freq)]
            hits = [f for _, f in total["found"]]
            row[f"{freq} recall"] = f"{np.mean(hits):.2f} ({sum(hits)}/{len(hits)})"
            row[f"{freq} days/yr"] = total["days"] / total["years"]
        both = totals[(rule, "daily")]["found"] + totals[(rule, "hourly")]["found"]
        for kind in kinds:
            hits = [f for k, f in both if k == kind]
            row[kind] = np.mean(hits) if hits else np.nan
        rows.append(row)
    table = pd.DataFrame(rows).set_index("rule")
    pd.set_option("display.width", 220)
    print(f"{events['symbol'].nunique()} instruments, {len(events)} events; "
          f"{time.perf_counter() - started:.0f} s\n")
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    default, peer = table.loc["default detection"], table.loc["peer (z48, cut 3)"]
    daily_ok = float(default["daily recall"].split()[0]) >= 0.95 and default["daily days/yr"] <= 6
    hourly_ok = (float(default["hourly recall"].split()[0]) >= 0.9
                 and default["hourly days/yr"] <= peer["hourly days/yr"] / 3)
    print(f"\nTargets: daily recall >= 0.95 at <= 6 days/yr -> {'met' if daily_ok else 'NOT met'}; "
          f"hourly recall >= 0.9 at <= {peer['hourly days/yr'] / 3:.0f} days/yr -> "
          f"{'met' if hourly_ok else 'NOT met'}")


if __name__ == "__main__":
    main()
