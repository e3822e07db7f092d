"""Watchlist scanning: each symbol loaded and scored with bounded concurrency."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from typing import Callable

import pandas as pd

import detectors
from components.controls import DataChoice, DetectorChoice
from data import DataError, load_candles
from detectors.calibration import rarity_text

#: Parallel requests per source: well inside Yahoo's informal limits and Bybit's 600 per 5 s.
MAX_WORKERS = {"demo": 4, "yahoo": 2, "bybit": 4, "csv": 1}
SCAN_COLUMNS = ["symbol", "max_severity", "rarity", "events", "recent_events", "last_event", "top_kind",
                "last_close", "return_pct", "error"]


def parse_symbols(text: str) -> list[str]:
    """Symbols typed one per line or separated by commas/spaces, upper-cased, without repeats."""
    seen: dict[str, None] = {}
    for token in text.replace(",", " ").split():
        token = token.strip().upper()
        if token and len(token) <= 32:
            seen.setdefault(token, None)
    return list(seen)


def scan_symbol(choice: DataChoice, chosen: tuple[DetectorChoice, ...], thresholds: dict[str, float],
                recent_bars: int = 24, mode: str = "max", k: int = 2) -> dict:
    """One scanner row: events and highest severity of one symbol (errors become the row's message)."""
    row = {"symbol": choice.symbol, "max_severity": 0.0, "rarity": "", "events": 0, "recent_events": 0,
           "last_event": pd.NaT, "top_kind": "", "last_close": float("nan"), "return_pct": float("nan"),
           "error": ""}
    try:
        candles = load_candles(choice.source, choice.symbol, **choice.load_kwargs())
        # The same pipeline and calibration as the Explorer: equal data, equal severities.
        events = detectors.score_detectors(candles, [(d.name, dict(d.params)) for d in chosen]).detect(
            thresholds, mode, k, symbol=choice.symbol).events
    except (DataError, ValueError) as exc:
        row["error"] = str(exc)
        return row
    row.update(last_close=float(candles["close"].iat[-1]),
               return_pct=float(candles["close"].iat[-1] / candles["close"].iat[0] * 100 - 100))
    if len(events):
        recent_from = candles.index[max(0, len(candles) - recent_bars)]
        recent = events[events["end"] >= recent_from]
        row.update(max_severity=float(events["severity"].max()), rarity=rarity_text(events["severity"].max()),
                   events=len(events),
                   recent_events=len(recent), last_event=events["end"].max(),
                   top_kind=str(events.loc[events["severity"].idxmax(), "kind"]))
    return row


def scan_watchlist(base: DataChoice, symbols: list[str], chosen: tuple[DetectorChoice, ...],
                   thresholds: dict[str, float],
                   progress: Callable[[float, str], None] | None = None) -> pd.DataFrame:
    """Scan ``symbols`` like ``base`` (source, interval, range); ranked by highest severity."""
    rows = []
    with ThreadPoolExecutor(max_workers=MAX_WORKERS.get(base.source, 2)) as pool:
        futures = {pool.submit(scan_symbol, replace(base, symbol=s), chosen, thresholds): s for s in symbols}
        for done, future in enumerate(as_completed(futures), start=1):
            rows.append(future.result())
            if progress:
                progress(done / len(symbols), f"Scanned {futures[future]} ({done}/{len(symbols)})")
    table = pd.DataFrame(rows, columns=SCAN_COLUMNS)
    return table.sort_values(["max_severity", "recent_events"], ascending=False, ignore_index=True)
