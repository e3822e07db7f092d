"""Universes (which symbols a scan covers) and how one symbol's candles are loaded.

``demo:N`` is N synthetic symbols ``DEMO-0001`` .. with labelled injected events, built from
``data.demo`` (``demo_spec``): each name is one of the demo market's symbol specs at a seed derived
from (base seed, number), so the universe is the same on every machine, the Explorer opens the
same symbol, and the scan's recall can be measured against the labels.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from data import DataError, check_symbol, load_candles, parse_time_range
from data.demo import MAX_UNIVERSE, demo_market

__all__ = ["SOURCES", "parse_universe", "demo_universe", "load_symbol"]

#: Scan sources: the data layer's market sources plus a folder of ``SYMBOL.csv`` files.
SOURCES = ("demo", "yahoo", "bybit", "csv-folder")


def demo_universe(n: int) -> list[str]:
    """``DEMO-0001`` .. ``DEMO-{n:04d}``, at most ``MAX_UNIVERSE``."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_UNIVERSE:
        raise ValueError(f"A demo universe has 1 to {MAX_UNIVERSE:,} symbols, e.g. demo:50; "
                         f"got {n!r}.")
    return [f"DEMO-{i:04d}" for i in range(1, n + 1)]


def parse_universe(spec: str) -> list[str]:
    """Symbols from ``demo:N`` or a UTF-8 file: one symbol a line (``#`` comments), or a CSV
    with a ``symbol`` column (any case). Repeats are dropped, order kept."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("Name a universe: demo:N or a file with one symbol a line.")
    spec = spec.strip()
    if spec.lower().startswith("demo:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"Write a demo universe as demo:N with N a whole number, e.g. demo:50; "
                             f"got {spec!r}.") from None
        return demo_universe(n)
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"No universe file {spec!r}: pass demo:N or a file with one symbol a line.")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"The universe file {spec!r} is not UTF-8 text (byte {exc.start:,} cannot "
                         "be read): save it as UTF-8.") from None
    tokens = _csv_symbols(text, spec) if path.suffix.lower() == ".csv" else None
    if tokens is None:
        tokens = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    symbols = [check_symbol(t) for t in tokens if t]
    if not symbols:
        raise ValueError(f"The universe file {spec!r} lists no symbols.")
    return list(dict.fromkeys(symbols))


def _csv_symbols(text: str, spec: str) -> list[str] | None:
    """The ``symbol`` column (header in any case) of a CSV's text; None for a one-column file
    without that header (read as one symbol a line)."""
    if not text.strip():
        return []
    try:
        with warnings.catch_warnings():   # ragged rows: the columns named in the header are kept
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            table = pd.read_csv(io.StringIO(text), dtype=str, index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        detail = str(exc).split("C error: ")[-1].strip()[:120] or "unreadable"
        raise ValueError(f"The universe file {spec!r} is not a readable CSV ({detail}): check its "
                         "quotes and commas, or list one symbol a line.") from None
    column = next((c for c in table.columns if str(c).strip().lower() == "symbol"), None)
    if column is None:
        if len(table.columns) > 1:
            shown = ", ".join(str(c) for c in table.columns[:6])
            raise ValueError(f"The universe file {spec!r} has no symbol column (its columns: {shown}): "
                             "name the column of symbols 'symbol', or list one symbol a line.")
        return None
    return [s.strip() for s in table[column].dropna()]


def load_symbol(source: str, symbol: str, interval: str, start: Any, end: Any, *, seed: int = 7,
                folder: str | None = None, **options: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Canonical candles of one symbol (``attrs["symbol"]`` is the universe name) and, for the
    demo source, its labelled events (else None)."""
    labels = None
    if source == "demo":
        check_symbol(symbol)
        start, end = (None, None) if start is None and end is None else parse_time_range(start, end)
        market = demo_market(seed=seed, symbol=symbol, start=start, end=end, interval=interval)
        candles, labels = market.candles, market.labels
    elif source == "csv-folder":
        if not folder:
            raise DataError("The csv-folder source needs a folder (--folder DIR) of SYMBOL.csv files.")
        path = _folder_file(folder, symbol)
        candles = load_candles("csv", str(path), start=start, end=end, interval=interval, path=str(path))
    elif source in ("yahoo", "bybit"):
        candles = load_candles(source, symbol, start=start, end=end, interval=interval, **options)
    else:
        raise DataError(f"Unknown scan source {source!r}; choose one of {', '.join(SOURCES)}.")
    candles.attrs["symbol"] = symbol
    return candles, labels


def _folder_file(folder: str, symbol: str) -> Path:
    """``folder/SYMBOL.csv``, or DataError for a symbol that is no file name (``A/../x``) or a
    file (a link, say) that resolves outside ``folder``."""
    symbol = check_symbol(symbol)
    if not symbol or "/" in symbol:
        raise DataError(f"The csv-folder source reads SYMBOL.csv from its folder, so a symbol is a file "
                        f"name without /; got {symbol!r}.")
    root = Path(folder).resolve()
    path = root / f"{symbol}.csv"
    if not path.resolve().is_relative_to(root):
        raise DataError(f"{path.name} in {folder} links outside that folder; copy the file into it.")
    if not path.is_file():
        raise DataError(f"No file {path.name} in {folder}.")
    return path
