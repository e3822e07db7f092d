"""Speed and peak memory of the detectors on large inputs.

Run: .venv/bin/python bench/speed.py [--no-lstm]

Prints one line per measurement: wall time (best of a few runs for the fast ones) and the
peak of Python-tracked memory (tracemalloc, which numpy reports to) during one more run.
Targets: z-score on 1,000,000 candles < 0.5 s; incremental z-score > 100,000 updates/s;
LSTM training on 10,000 hourly candles < 30 s and scoring 100,000 < 5 s; events from
100,000 candles and 3 detectors < 1 s; a threshold move (no refit) < 0.5 s. Also: reading a
CSV of 1,000,000 candles with ISO, US and 12-hour (AM/PM) times.
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import detectors  # noqa: E402
from data import load_candles  # noqa: E402
from detectors.zscore import IncrementalZScore  # noqa: E402


def synthetic_candles(n: int, seed: int = 0) -> pd.DataFrame:
    """A random walk with fat-tailed moves, hourly, in canonical shape."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_t(4, n) / np.sqrt(2)))
    open_ = np.concatenate([[100.0], close[:-1]])
    frame = pd.DataFrame({
        "open": open_, "high": np.maximum(open_, close) * 1.002,
        "low": np.minimum(open_, close) * 0.998, "close": close,
        "volume": rng.lognormal(10.0, 0.4, n)},
        index=pd.date_range("2015-01-01", periods=n, freq="h", tz="UTC", name="timestamp"))
    frame.attrs = {"symbol": "SYNTH", "source": "bench", "interval": "1h"}
    return frame


def measure(label: str, run: Callable[[], object], repeat: int = 3) -> object:
    """Print best-of-``repeat`` wall time and the tracemalloc peak of one extra run."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"{label:<52} {best:8.3f} s   peak {peak / 2**20:8.1f} MiB", flush=True)
    return result


def bench_incremental(candles: pd.DataFrame) -> None:
    rows = candles[["open", "high", "low", "close", "volume"]].to_numpy().tolist()

    def run() -> None:
        stream = IncrementalZScore()
        for o, h, lo, c, v in rows:
            stream.update(o, h, lo, c, v)

    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"{'incremental z-score, ' + format(len(rows), ',') + ' updates':<52} {elapsed:8.3f} s"
          f"   peak {peak / 2**20:8.1f} MiB   = {len(rows) / elapsed:,.0f} updates/s", flush=True)


def bench_csv(candles: pd.DataFrame) -> None:
    """The CSV reader on a million-row export, in three time styles analysts' tools write."""
    for style, fmt in (("ISO", "%Y-%m-%d %H:%M:%S"), ("US 01/31/2024 13:00", "%m/%d/%Y %H:%M"),
                       ("12-hour 01/31/2024 01:00 PM", "%m/%d/%Y %I:%M %p")):
        frame = candles.round(4).set_axis(candles.index.strftime(fmt)).rename_axis("Date")
        text = frame.to_csv().encode()
        measure(f"CSV read, {len(frame):,} rows, {style} times",
                lambda text=text: load_candles("csv", "", file=text, interval="1h"), repeat=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-lstm", action="store_true", help="skip the LSTM timings")
    args = parser.parse_args()

    million = synthetic_candles(1_000_000)
    hundred_k = synthetic_candles(100_000, seed=1)
    zscore = detectors.create("zscore").fit(hundred_k)
    measure("z-score, score 1,000,000 candles", lambda: zscore.score(million))
    # The robust form takes a median over each window: O(window) per bar, so the long
    # (1,000-bar) baseline costs about a minute per million candles; 100,000 here.
    measure("z-score robust (median/MAD), score 100,000 candles",
            lambda: detectors.create("zscore", robust=True).score(hundred_k), repeat=1)
    bench_incremental(hundred_k)
    bench_csv(million)
    measure("pump-and-dump, score 1,000,000 candles",
            lambda: detectors.create("pump_dump").score(million))
    forest = measure("isolation forest, fit 100,000 candles",
                     lambda: detectors.create("isolation_forest").fit(hundred_k), repeat=1)
    forest_scores = measure("isolation forest, score 100,000 candles",
                            lambda: forest.score(hundred_k), repeat=1)

    scores = {"zscore": zscore.score(hundred_k), "isolation_forest": forest_scores,
              "pump_dump": detectors.create("pump_dump").score(hundred_k)}
    cuts = {"zscore": zscore.threshold, "isolation_forest": forest.threshold,
            "pump_dump": detectors.create("pump_dump").threshold}
    events = measure("events, 100,000 candles x 3 detectors (max, calibration included)",
                     lambda: detectors.to_events(hundred_k, scores, cuts))
    scored = detectors.score_detectors(hundred_k, ["zscore", "pump_dump"])
    measure("threshold move: Scored.detect, 100,000 candles x 2 detectors",
            lambda: scored.detect({"zscore": 6.0}))
    print(f"{'':<52} ({len(events):,} events)")

    if args.no_lstm:
        return
    try:
        lstm = detectors.create("lstm_autoencoder", cache=False)
    except (ImportError, ValueError) as exc:
        print(f"lstm_autoencoder skipped: {exc}")
        return
    ten_k = synthetic_candles(10_000, seed=2)
    measure("LSTM autoencoder, fit 10,000 hourly candles (defaults)",
            lambda: lstm.fit(ten_k), repeat=1)
    measure("LSTM autoencoder, score 100,000 candles", lambda: lstm.score(hundred_k), repeat=1)


if __name__ == "__main__":
    main()
