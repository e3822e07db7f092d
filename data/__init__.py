"""Data layer: every source turns (symbol, start, end, interval) into canonical candles.

Plain Python, no Streamlit. ``load_candles`` is the one entry point; each source module
(``demo``, ``csv``, ``yahoo``, ``bybit``) supplies ``fetch_raw(query)`` and a pure
``to_frame(raw, query)``, and the validator below enforces the shape for all of them.
"""
from __future__ import annotations

import contextlib
import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

__all__ = [
    "DataError", "CandleQuery", "INTERVALS", "SOURCES", "COLUMNS", "MAX_SYMBOL_LENGTH",
    "EARLIEST", "LATEST", "load_candles", "validate_candles", "parse_time_range", "check_symbol",
]

COLUMNS = ["open", "high", "low", "close", "volume"]

#: The app's intervals and their bar length. Sources map these to their own codes.
INTERVALS: dict[str, pd.Timedelta] = {
    "1m": pd.Timedelta(minutes=1), "5m": pd.Timedelta(minutes=5),
    "15m": pd.Timedelta(minutes=15), "30m": pd.Timedelta(minutes=30),
    "1h": pd.Timedelta(hours=1), "4h": pd.Timedelta(hours=4),
    "1d": pd.Timedelta(days=1), "1wk": pd.Timedelta(weeks=1), "1mo": pd.Timedelta(days=30),
}

#: Longest symbol accepted (the UI's text box uses it too). Real ones are far shorter:
#: AAPL, ^VIX, BRK-B, EURUSD=X, M&M.NS, 7203.T, BTCUSDT, BTC-27DEC24, BTC/USDT (CSV files).
MAX_SYMBOL_LENGTH = 32
_SYMBOL = re.compile(r"[A-Za-z0-9^][A-Za-z0-9.\-_^=/&]*")
_SYMBOL_HINT = "e.g. AAPL, ^VIX, BRK-B, EURUSD=X or BTCUSDT"

#: Times the data layer handles: pandas holds nanosecond times only within 1677-2262, and a
#: margin inside that leaves room for bar arithmetic.
EARLIEST = pd.Timestamp("1678-01-01", tz="UTC")
LATEST = pd.Timestamp("2262-01-01", tz="UTC")

#: source name -> module under ``data`` (imported lazily so yfinance/pybit load only when used).
SOURCES = {"demo": "data.demo", "csv": "data.csv", "yahoo": "data.yahoo", "bybit": "data.bybit"}


class DataError(ValueError):
    """A data problem with a message an analyst can act on (what is wrong, what to change)."""


@dataclass(frozen=True)
class CandleQuery:
    """What to load. ``start`` inclusive, ``end`` exclusive, both tz-aware UTC."""

    source: str
    symbol: str
    start: pd.Timestamp
    end: pd.Timestamp
    interval: str = "1h"
    options: tuple[tuple[str, Any], ...] = field(default=())

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)


def _to_utc(value: Any, what: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
        if ts is not pd.NaT:
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"Cannot read the {what} time {str(value)[:40]!r}: use a date like "
                        f"2024-01-31 between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}.") from exc
    if ts is pd.NaT:
        raise DataError(f"The {what} time is missing: pick a date.")
    if not EARLIEST <= ts <= LATEST:
        raise DataError(f"The {what} time {ts.year:04d}-{ts.month:02d}-{ts.day:02d} is outside the supported range "
                        f"{EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}: pick a date inside it.")
    return ts.as_unit("ns")


def check_symbol(value: Any, *, strict: bool = True) -> str:
    """``value`` stripped, or DataError naming the fix. ``strict`` (market symbols, which
    also name cache files) limits it to ``MAX_SYMBOL_LENGTH`` letters, digits and . - _ ^ = / &."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"The symbol must be text ({_SYMBOL_HINT}), not {type(value).__name__} "
                        f"{str(value)[:40]!r}.")
    symbol = value.strip()
    if not strict or not symbol:
        return symbol
    if len(symbol) > MAX_SYMBOL_LENGTH:
        raise DataError(f"The symbol {symbol[:20]!r}... is {len(symbol)} characters long; symbols "
                        f"have at most {MAX_SYMBOL_LENGTH} ({_SYMBOL_HINT}).")
    if not _SYMBOL.fullmatch(symbol):
        odd = "".join(dict.fromkeys(c for c in symbol if not re.fullmatch(r"[A-Za-z0-9.\-_^=/&]", c)))
        what = f"the character(s) {odd!r}" if odd else f"{symbol[0]!r} as its first character"
        raise DataError(f"The symbol {symbol!r} has {what}; symbols use letters, digits and "
                        f". - _ ^ = / & ({_SYMBOL_HINT}).")
    return symbol


def _check_choice(value: Any, what: str, choices: Any) -> str:
    """``value`` if it is one of ``choices`` (text), else DataError listing them."""
    if not isinstance(value, str) or value not in choices:
        shown = repr(value) if isinstance(value, str) else f"{type(value).__name__} {str(value)[:40]!r}"
        raise DataError(f"Unknown {what} {shown}; choose one of {', '.join(choices)}.")
    return value


def parse_time_range(start: Any, end: Any) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Both ends as UTC timestamps; naive dates are read as UTC. Raises DataError if empty."""
    start_ts, end_ts = _to_utc(start, "start"), _to_utc(end, "end")
    if end_ts <= start_ts:
        raise DataError(
            f"The range is empty: end {end_ts:%Y-%m-%d %H:%M} is not after start "
            f"{start_ts:%Y-%m-%d %H:%M}. Pick an end after the start.")
    return start_ts, end_ts


def validate_candles(frame: pd.DataFrame, *, symbol: str = "", source: str = "",
                     interval: str = "") -> pd.DataFrame:
    """Return ``frame`` in the canonical candle shape, or raise DataError.

    Repairs what is safe and records it in ``attrs["repairs"]`` (a list of sentences):
    unsorted rows are sorted, duplicate timestamps keep the last row, rows with a missing
    price are dropped, and high/low are widened to contain open and close. Anything else
    (missing columns, non-numeric prices, negative volume, no rows) is an error.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError("Candles must be a table (DataFrame).")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"Candles lack the column(s) {', '.join(missing)}; "
                        f"expected {', '.join(COLUMNS)}.")
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataError("Candles need a time index (DatetimeIndex).")
    repairs: list[str] = list(frame.attrs.get("repairs", []))
    out = frame[COLUMNS].copy()
    for col in COLUMNS:
        if pd.api.types.is_bool_dtype(out[col]) or not pd.api.types.is_numeric_dtype(out[col]):
            raise DataError(f"Column {col!r} is not numeric; remove text such as thousands "
                            "separators or currency signs.")
        out[col] = out[col].astype("float64")
    if out.index.tz is None:
        out.index = out.index.tz_localize("UTC")
        repairs.append("Timestamps had no time zone; read as UTC.")
    else:
        out.index = out.index.tz_convert("UTC")
    try:
        out.index = out.index.as_unit("ns")
    except (OverflowError, pd.errors.OutOfBoundsDatetime) as exc:
        raise DataError("Some timestamps are outside 1677-2262; check the time column.") from exc
    out.index.name = "timestamp"
    if out.index.hasnans:
        n = int(out.index.isna().sum())
        out = out[~out.index.isna()]
        repairs.append(f"Dropped {n} row(s) without a timestamp.")
    finite = np.isfinite(out[COLUMNS])
    bad = ~finite.all(axis=1)
    if len(out) and bad.all():
        worst = finite.sum().idxmin()
        raise DataError(f"Every row has a missing or infinite value (column {worst!r} has "
                        f"{int((~finite[worst]).sum()):,} of {len(out):,}): check that column.")
    if bad.any():
        out = out[~bad]
        repairs.append(f"Dropped {int(bad.sum())} row(s) with a missing or infinite value.")
    if not out.index.is_monotonic_increasing:
        out = out.sort_index(kind="stable")
        repairs.append("Rows were not in time order; sorted them.")
    dup = out.index.duplicated(keep="last")
    if dup.any():
        out = out[~dup]
        repairs.append(f"Dropped {int(dup.sum())} duplicate timestamp(s), keeping the last row.")
    if out.empty:
        raise DataError("No candles in this range: widen the range or check the symbol.")
    if (out[["open", "high", "low", "close"]] <= 0).any().any():
        raise DataError("Some prices are zero or negative; candles need positive prices.")
    if (out["volume"] < 0).any():
        raise DataError("Some volumes are negative; volume must be zero or more.")
    body_hi = out[["open", "close"]].max(axis=1)
    body_lo = out[["open", "close"]].min(axis=1)
    fix = (out["high"] < body_hi) | (out["low"] > body_lo)
    if fix.any():
        out["high"] = np.maximum(out["high"], body_hi)
        out["low"] = np.minimum(out["low"], body_lo)
        repairs.append(f"Widened high/low on {int(fix.sum())} candle(s) to contain open and close.")
    out.attrs = {"symbol": symbol or frame.attrs.get("symbol", ""),
                 "source": source or frame.attrs.get("source", ""),
                 "interval": interval or frame.attrs.get("interval", ""),
                 "repairs": repairs}
    for key in ("notice", "fetched_at", "detected_interval"):
        if key in frame.attrs:
            out.attrs[key] = frame.attrs[key]
    return out


def load_candles(source: str, symbol: str, start: Any = None, end: Any = None,
                 interval: str = "1h", *, progress: Callable[[float, str], None] | None = None,
                 use_cache: bool = True, deadline: float | None = None,
                 **options: Any) -> pd.DataFrame:
    """Load canonical candles from ``source`` ("demo", "csv", "yahoo", "bybit").

    ``options`` are source-specific (``path=``/``file=`` for csv, ``seed=`` for demo,
    ``adjusted=`` for yahoo, ``category=`` for bybit). ``progress(fraction, message)`` is
    called during long fetches. Network sources go through the Parquet cache in ``store``
    and stop after ``deadline`` seconds in all (default: ``SURVEILLANCE_NETWORK_DEADLINE``,
    else 20), serving cached bars with a notice where there are some.
    Raises DataError for anything an analyst must fix.
    """
    source = _check_choice(source, "source", SOURCES)
    interval = _check_choice(interval, "interval", INTERVALS)
    symbol = check_symbol(symbol, strict=source != "csv")
    if source != "csv" and not symbol:
        raise DataError("Enter a symbol.")
    module = importlib.import_module(SOURCES[source])
    if source == "csv" and start is None and end is None:
        start_ts = end_ts = None
    else:
        start_ts, end_ts = parse_time_range(start, end)
    query = CandleQuery(source, symbol, start_ts, end_ts, interval,
                        tuple(sorted(options.items(), key=lambda kv: kv[0])))
    networked = source in ("yahoo", "bybit")
    scope: Any = contextlib.nullcontext()
    if networked:
        from data import network
        scope = network.deadline_scope(deadline)
    with scope:
        if networked and use_cache:
            from data.cached import load_through_cache
            frame = load_through_cache(module, query, progress=progress)
        else:
            frame = module.to_frame(module.fetch_raw(query, progress=progress), query)
    return validate_candles(frame, symbol=symbol or frame.attrs.get("symbol", ""),
                            source=source, interval=interval)
