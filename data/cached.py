"""Data layer: the disk cache in front of the network sources ("yahoo", "bybit").

Plain Python, no Streamlit. Bars live in the market store (``data.market_store``: DuckDB over
Hive-partitioned Parquet; an update appends new files, history is never rewritten), one
series per source/symbol/interval (plus non-default options); a JSON sidecar records *when
and what* was fetched (``start``, ``end``, ``fetched_at`` per fetch), and a file lock lets one
thread or process at a time fill a series' gaps. A request fetches only the parts
of its range that no earlier fetch covered, so a second look is instant and works offline.

A fetch covers its range only up to ``fetched_at - one bar - PUBLISH_DELAY``: later bars may
have been incomplete (or not yet published) when fetched, so they are always fetched again.

Sources raise two kinds of ``DataError`` that the cache treats specially:
``SourceUnavailableError`` (no network, rate limit, server trouble, deadline passed: the
cached part of the range is served with a notice naming what is missing and why) and
``NoDataError`` (the source answered but had no bars; never recorded as covered, so an
answer such as "unknown symbol" is not remembered).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pandas as pd

from data import COLUMNS, INTERVALS, CandleQuery, DataError
from data.network import NoDataError, SourceUnavailableError, SymbolNotFoundError
from store import data_dir

__all__ = ["SourceUnavailableError", "NoDataError", "SymbolNotFoundError", "PUBLISH_DELAY",
           "load_through_cache", "cache_paths", "covered_ranges", "missing_ranges",
           "describe_age", "describe_spans"]

log = logging.getLogger(__name__)

#: Providers publish the newest bars late (Yahoo delays some exchanges by 15-20 minutes),
#: so the last half hour before a fetch is never trusted as complete.
PUBLISH_DELAY = pd.Timedelta(minutes=30)



#: Longest file-name part kept as it is; longer ones are cut and told apart by a hash
#: (file systems allow 255 bytes per name).
MAX_NAME = 64


def _safe_name(text: str) -> str:
    """A file-system-safe name of at most ``MAX_NAME + 9`` characters, whatever ``text`` is;
    a short hash keeps names apart once characters are replaced or the name is cut."""
    safe = re.sub(r"[^A-Za-z0-9._=^-]", "_", text)
    if safe != text or safe.startswith(".") or len(safe) > MAX_NAME:
        safe = safe.lstrip(".")[:MAX_NAME] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return safe


def _cache_options(module: ModuleType, query: CandleQuery) -> dict[str, Any]:
    """Options that change the data, without those left at the source's default."""
    defaults = getattr(module, "DEFAULT_OPTIONS", {})
    return {k: v for k, v in sorted(dict(query.options).items())
            if v is not None and defaults.get(k, object()) != v}


def cache_paths(module: ModuleType, query: CandleQuery) -> tuple[str, Path]:
    """The series key in the market store and the JSON sidecar of fetches for ``query``
    (options other than the defaults go into both, because e.g. Bybit spot and linear BTCUSDT
    are different series)."""
    options = "".join(f".{k}-{v}" for k, v in _cache_options(module, query).items())
    folder = data_dir() / "candles" / _safe_name(query.source) / _safe_name(query.symbol.upper())
    return query.symbol.upper() + options, folder / f"{_safe_name(query.interval + options)}.json"


def _store():
    """The market store of the current data folder (one per folder: it holds DuckDB connections)."""
    return _store_at(str(data_dir() / "market"))


@functools.lru_cache(maxsize=8)
def _store_at(root: str):
    from data.market_store import MarketStore
    return MarketStore(root)


def _settle_time(interval: str) -> pd.Timedelta:
    """How long after its label a bar is complete (months run up to 31 days)."""
    return pd.Timedelta(days=31) if interval == "1mo" else INTERVALS[interval]


def covered_ranges(fetches: list[dict], interval: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Merged ``[start, end)`` ranges whose bars were complete when fetched, sorted."""
    settle = _settle_time(interval) + PUBLISH_DELAY
    spans = []
    for item in fetches:
        start = pd.Timestamp(item["start"])
        end = min(pd.Timestamp(item["end"]), pd.Timestamp(item["fetched_at"]) - settle)
        if end > start:
            spans.append((start, end))
    merged: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def missing_ranges(start: pd.Timestamp, end: pd.Timestamp,
                   covered: list[tuple[pd.Timestamp, pd.Timestamp]]
                   ) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Parts of ``[start, end)`` outside the sorted, merged ``covered`` ranges."""
    gaps = []
    cursor = start
    for cov_start, cov_end in covered:
        if cov_end <= cursor:
            continue
        if cov_start >= end:
            break
        if cov_start > cursor:
            gaps.append((cursor, cov_start))
        cursor = max(cursor, cov_end)
    if cursor < end:
        gaps.append((cursor, end))
    return gaps


def describe_age(then: pd.Timestamp, now: pd.Timestamp) -> str:
    """'3 hours ago' style age for notices."""
    seconds = max((now - then).total_seconds(), 0.0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "moments ago"


def _read_cache(query: CandleQuery, key: str, sidecar: Path) -> tuple[pd.DataFrame, list[dict]]:
    """Stored bars and fetch records; anything unreadable counts as no cache (refetch), and a
    damaged series is set aside so the next read does not trip on it again."""
    empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in COLUMNS},
                         index=pd.DatetimeIndex([], tz="UTC", name="timestamp"))
    if not sidecar.exists():
        return empty, []
    store = _store()
    try:
        fetches = json.loads(sidecar.read_text(encoding="utf-8"))["fetches"]
        covered_ranges(fetches, "1m")  # raises on a malformed record
        frame = store.read(query.source, key, query.interval)
    except Exception as exc:  # a damaged cache must never stop the app: fetch again
        log.warning("Ignoring unreadable candle cache %s: %s", sidecar, exc)
        folder = store.series_dir(query.source, key, query.interval)
        if folder.exists():
            folder.rename(folder.with_name(f"{folder.name}.damaged-{os.getpid()}-{threading.get_ident()}"))
        sidecar.unlink(missing_ok=True)
        return empty, []
    frame.attrs = {}
    return frame, fetches


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary file beside ``path`` then rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_cache(key: str, sidecar: Path, new_bars: pd.DataFrame, refetched: list[tuple[pd.Timestamp, pd.Timestamp]],
                 fetches: list[dict], query: CandleQuery, options: dict[str, Any]) -> None:
    """New bars appended to the market store first (new files only: history is never
    rewritten; a stored bar in a ``refetched`` range that the source no longer returns is
    gone), sidecar second: a crash in between only forgets a fetch (refetched)."""
    kept = [item for i, item in enumerate(fetches)
            if not any(pd.Timestamp(later["start"]) <= pd.Timestamp(item["start"])
                       and pd.Timestamp(item["end"]) <= pd.Timestamp(later["end"])
                       for later in fetches[i + 1:])]
    record = {"source": query.source, "symbol": query.symbol, "interval": query.interval,
              "options": {k: str(v) for k, v in options.items()}, "fetches": kept}
    bars = new_bars.copy(deep=False)
    bars.attrs = {}
    _store().append(bars, source=query.source, symbol=key, interval=query.interval, replace=True,
                    covering=refetched)
    _write_atomic(sidecar, lambda tmp: tmp.write_text(json.dumps(record, indent=1), encoding="utf-8"))


def _in_range(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    return (frame.index >= start) & (frame.index < end)


def load_through_cache(module: ModuleType, query: CandleQuery,
                       progress: Callable[[float, str], None] | None = None, *,
                       now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Candles for ``query`` from the disk cache, fetching only what it lacks.

    ``module`` is a source module with ``fetch_raw(query, progress=None)`` and
    ``to_frame(raw, query)``. Missing parts of the range are fetched one by one and merged
    into the cache (fetched rows replace cached rows in their range). If a fetch fails with
    ``SourceUnavailableError`` (the other gaps are then not tried) or the source no longer
    knows the symbol, and the cache holds bars in the range, those are returned with
    ``attrs["notice"]`` saying how old they are, which spans are missing and why; otherwise
    the error is raised. ``attrs["fetched_at"]`` is the time of the latest fetch that
    touched the range.
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    from filelock import FileLock
    key, sidecar = cache_paths(module, query)
    locks = data_dir() / "candles" / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    # One fetcher per series across threads and processes, so two never fetch the same gap
    # (the lock lives apart, so an unknown symbol leaves no folder behind).
    with FileLock(str(locks / f"{hashlib.sha1(str(sidecar).encode()).hexdigest()[:20]}.lock"), timeout=120):
        cached, fetches = _read_cache(query, key, sidecar)
        gaps = missing_ranges(query.start, query.end, covered_ranges(fetches, query.interval))
        new_parts: list[pd.DataFrame] = []
        refetched: list[tuple[pd.Timestamp, pd.Timestamp]] = []
        no_data: NoDataError | None = None
        failure: DataError | None = None   # why the spans in `unfetched` are missing
        unfetched: list[tuple[pd.Timestamp, pd.Timestamp]] = []
        for number, (gap_start, gap_end) in enumerate(gaps):
            if isinstance(failure, SourceUnavailableError):
                unfetched.append((gap_start, gap_end))   # the source is down: do not hammer it
                continue
            gap_query = CandleQuery(query.source, query.symbol, gap_start, gap_end,
                                    query.interval, query.options)
            step = _gap_progress(progress, number, len(gaps))
            try:
                fetched = module.to_frame(module.fetch_raw(gap_query, progress=step), gap_query)
            except (SourceUnavailableError, SymbolNotFoundError) as exc:
                failure = exc
                unfetched.append((gap_start, gap_end))
                continue
            except NoDataError as exc:
                no_data = exc
                continue
            fetched = fetched[COLUMNS].astype("float64")
            fetched.index = pd.DatetimeIndex(fetched.index).tz_convert("UTC").as_unit("ns").rename("timestamp")
            cached = cached[~_in_range(cached, gap_start, gap_end)]
            new_parts.append(fetched[_in_range(fetched, gap_start, gap_end)])
            refetched.append((gap_start, gap_end))
            fetches.append({"start": gap_start.isoformat(), "end": gap_end.isoformat(),
                            "fetched_at": now.isoformat()})
        if new_parts:
            fresh = pd.concat(new_parts)
            fresh = fresh[~fresh.index.duplicated(keep="last")].sort_index()
            cached = pd.concat([cached, fresh])
            cached = cached[~cached.index.duplicated(keep="last")].sort_index()
            _write_cache(key, sidecar, fresh, refetched, fetches, query, _cache_options(module, query))

    result = cached[_in_range(cached, query.start, query.end)].copy()
    if result.empty:
        raise failure or no_data or NoDataError(
            f"No {query.source} data for {query.symbol} in this range: widen the range or check the symbol.")
    touching = [pd.Timestamp(f["fetched_at"]) for f in fetches
                if pd.Timestamp(f["start"]) < query.end and pd.Timestamp(f["end"]) > query.start]
    result.attrs = {"symbol": query.symbol, "source": query.source, "interval": query.interval}
    if touching:
        result.attrs["fetched_at"] = max(touching)
    if failure is not None:
        age = describe_age(max(touching), now) if touching else "earlier"
        lead = "Offline" if isinstance(failure, SourceUnavailableError) else "Not refreshed"
        result.attrs["notice"] = (f"{lead}: showing cached data fetched {age}; could not fetch "
                                  f"{describe_spans(unfetched, now)} ({failure})")
    return result


def describe_spans(spans: list[tuple[pd.Timestamp, pd.Timestamp]], now: pd.Timestamp) -> str:
    """'2024-03-03 00:00 to 2024-03-04 00:00 UTC' for each span up to ``now``, at most three."""
    shown = [(start, min(end, now)) for start, end in spans if start < now]
    if not shown:
        return "the newest bars"
    text = ", ".join(f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}" for start, end in shown[:3])
    more = f" and {len(shown) - 3} more span(s)" if len(shown) > 3 else ""
    return f"{text} UTC{more}"


def _gap_progress(progress: Callable[[float, str], None] | None, number: int, count: int
                  ) -> Callable[[float, str], None] | None:
    """Scale a source's per-gap progress into the whole request's 0..1."""
    if progress is None:
        return None
    return lambda fraction, message: progress((number + fraction) / count, message)
