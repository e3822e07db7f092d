"""Universes (which symbols a scan covers) and how one symbol's candles are loaded.

``demo:N`` is N synthetic symbols ``DEMO-0001`` .. with labelled injected events, built from
``data.demo``: each name maps to one of the demo market's symbol specs and a seed derived from
(base seed, number), so the universe is the same on every machine and the scan's recall can
be measured against the labels.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pandas as pd

from data import DataError, check_symbol, load_candles, parse_time_range

__all__ = ["SOURCES", "DEMO_BASES", "parse_universe", "demo_universe", "demo_spec", "load_symbol"]

#: Scan sources: the data layer's market sources plus a folder of ``SYMBOL.csv`` files.
SOURCES = ("demo", "yahoo", "bybit", "csv-folder")
#: The demo specs a universe cycles through: the 24/7 ones, so every symbol has the same bars
#: per range (the stock-like DEMO and ACME trade 6.5 h a weekday: a short range is too short).
DEMO_BASES = ("DEMO-USD", "PUMPCOIN")
_DEMO_NAME = re.compile(r"DEMO-(\d{4,})")


def demo_universe(n: int) -> list[str]:
    """``DEMO-0001`` .. ``DEMO-{n:04d}``."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"A demo universe needs at least one symbol, e.g. demo:50; got {n!r}.")
    return [f"DEMO-{i:04d}" for i in range(1, n + 1)]


def demo_spec(symbol: str, seed: int = 7) -> tuple[str, int]:
    """(demo market symbol, seed) behind a universe name; other demo symbols keep ``seed``."""
    match = _DEMO_NAME.fullmatch(symbol)
    if not match:
        return symbol, seed
    number = int(match.group(1))
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    # Seeds stay within the Explorer's seed box (0-10,000), so any universe symbol opens there.
    return DEMO_BASES[(number - 1) % len(DEMO_BASES)], int.from_bytes(digest[:4], "big") % 10_001


def parse_universe(spec: str) -> list[str]:
    """Symbols from ``demo:N`` or a file: one symbol a line (``#`` comments), or a CSV with a
    ``symbol`` column. Repeats are dropped, order kept."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("Name a universe: demo:N or a file with one symbol a line.")
    spec = spec.strip()
    if spec.lower().startswith("demo:"):
        try:
            return demo_universe(int(spec.split(":", 1)[1]))
        except ValueError:
            raise ValueError(f"Write a demo universe as demo:N with N a whole number, e.g. demo:50; "
                             f"got {spec!r}.") from None
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"No universe file {spec!r}: pass demo:N or a file with one symbol a line.")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv" and "symbol" in text.splitlines()[0].lower().split(","):
        tokens = [str(s) for s in pd.read_csv(path)["symbol"].dropna()]
    else:
        tokens = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    symbols = [check_symbol(t) for t in tokens if t]
    if not symbols:
        raise ValueError(f"The universe file {spec!r} lists no symbols.")
    return list(dict.fromkeys(symbols))


def load_symbol(source: str, symbol: str, interval: str, start: Any, end: Any, *, seed: int = 7,
                folder: str | None = None, **options: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Canonical candles of one symbol (``attrs["symbol"]`` is the universe name) and, for the
    demo source, its labelled events (else None)."""
    labels = None
    if source == "demo":
        from data.demo import demo_market
        base, base_seed = demo_spec(symbol, seed)
        check_symbol(symbol)
        start, end = (None, None) if start is None and end is None else parse_time_range(start, end)
        market = demo_market(seed=base_seed, symbol=base, start=start, end=end, interval=interval)
        candles, labels = market.candles, market.labels
    elif source == "csv-folder":
        if not folder:
            raise DataError("The csv-folder source needs a folder (--folder DIR) of SYMBOL.csv files.")
        path = Path(folder) / f"{symbol}.csv"
        if not path.is_file():
            raise DataError(f"No file {path.name} in {folder}.")
        candles = load_candles("csv", str(path), start=start, end=end, interval=interval, path=str(path))
    elif source in ("yahoo", "bybit"):
        candles = load_candles(source, symbol, start=start, end=end, interval=interval, **options)
    else:
        raise DataError(f"Unknown scan source {source!r}; choose one of {', '.join(SOURCES)}.")
    candles.attrs["symbol"] = symbol
    return candles, labels
