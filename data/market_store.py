"""Market store: candles as Hive-partitioned Parquet, read through DuckDB.

Layout under ``root`` (default ``store.data_dir()/market``)::

    source=yahoo/interval=1m/symbol=AAPL/year=2024/part-<seq>.parquet

Why this shape: an append writes *new* files only (history is never rewritten, so appending a
day to a year of minute bars costs a day's bytes, not the year's), and a read prunes by path and
partition (symbol, year) and by Parquet row-group statistics (timestamp), so one week of one
symbol out of thousands opens a handful of small files.

Each part carries ``_seq`` (its write sequence). ``append`` skips bars already stored; with
``replace=True`` its bars supersede stored ones (a refetched, now complete bar): both rows stay
on disk and reads keep the newest. ``covering`` names the time ranges a refetch is the whole
truth for: a stored bar there that the source no longer returns is named in a small
``covers/`` file and dropped from reads (and from ``sql``) too. ``compact`` merges a series'
parts per year and drops the superseded rows. Writers of one series are serialised across processes by a file lock
(``filelock``); files appear atomically (written beside, then renamed), so readers need no lock.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd

from data import COLUMNS, DataError

__all__ = ["MarketStore", "LOCK_TIMEOUT"]

#: Seconds a writer waits for another process's lock before giving up with a clear error.
LOCK_TIMEOUT = 60.0
_PART = "part-*.parquet"


def _part_value(text: str) -> str:
    """A Hive partition value: percent-encoded like Hive (safe for any symbol: ^VIX, BTC/USDT)."""
    if not isinstance(text, str) or not text:
        raise DataError(f"A market-store key must be non-empty text, got {text!r}.")
    return quote(text, safe="-_.^")


def _utc(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64") for c in COLUMNS},
                        index=pd.DatetimeIndex([], tz="UTC", name="timestamp").as_unit("ns"))


class MarketStore:
    """Append-only candle store; ``append`` and ``read`` are the whole API most callers need."""

    def __init__(self, root: str | Path | None = None):
        if root is None:
            from store import data_dir
            root = data_dir() / "market"
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()   # one DuckDB connection per thread

    # ---- paths and locks ------------------------------------------------------------------

    def series_dir(self, source: str, symbol: str, interval: str) -> Path:
        return (self.root / f"source={_part_value(source)}" / f"interval={_part_value(interval)}"
                / f"symbol={_part_value(symbol)}")

    def _lock(self, source: str, symbol: str, interval: str):
        from filelock import FileLock
        key = hashlib.sha1(f"{source}\0{interval}\0{symbol}".encode()).hexdigest()[:20]
        locks = self.root / ".locks"
        locks.mkdir(exist_ok=True)
        return FileLock(str(locks / f"{key}.lock"), timeout=LOCK_TIMEOUT)

    def _parts(self, source: str, symbol: str, interval: str) -> list[Path]:
        return sorted(self.series_dir(source, symbol, interval).glob(f"year=*/{_PART}"))

    def _next_seq(self, source: str, symbol: str, interval: str) -> int:
        """Larger than every part's and cover's sequence (called under the lock, so it is unique)."""
        covers = (self.series_dir(source, symbol, interval) / "covers").glob("cover-*.parquet")
        seqs = [int(p.stem.split("-")[1]) for p in [*self._parts(source, symbol, interval), *covers]]
        return max([time.time_ns(), *(s + 1 for s in seqs)])

    # ---- DuckDB ---------------------------------------------------------------------------

    def _con(self):
        con = getattr(self._local, "con", None)
        if con is None:
            import duckdb
            con = duckdb.connect()
            con.execute("SET TimeZone = 'UTC'")
            self._local.con = con
        return con

    def sql(self, query: str, params: list | None = None) -> pd.DataFrame:
        """Any DuckDB SQL over the store: ``{candles}`` in ``query`` stands for the stored bars
        of every series as ``read`` returns them (the newest row of each time, refetched-away
        bars dropped), with columns timestamp, open, high, low, close, volume, _seq, source,
        interval, symbol, year."""
        series = self.root.as_posix() + "/*/*/*"
        keys = "'source': VARCHAR, 'interval': VARCHAR, 'symbol': VARCHAR"
        rows = (f"read_parquet('{series}/*/{_PART}', hive_partitioning = true, union_by_name = true, "
                f"hive_types = {{{keys}, 'year': INTEGER}})")
        gone = ""
        if any(self.root.glob("*/*/*/covers/cover-*.parquet")):
            covers = (f"read_parquet('{series}/covers/cover-*.parquet', hive_partitioning = true, "
                      f"hive_types = {{{keys}}})")
            gone = (f"WHERE NOT EXISTS (SELECT 1 FROM {covers} v WHERE v.source = c.source AND "
                    "v.interval = c.interval AND v.symbol = c.symbol AND c._seq < v._seq AND "
                    'c.timestamp >= v.start::TIMESTAMPTZ AND c.timestamp < v."end"::TIMESTAMPTZ)')
        table = (f"(SELECT * FROM {rows} c {gone} QUALIFY row_number() OVER (PARTITION BY c.source, "
                 "c.interval, c.symbol, c.timestamp ORDER BY c._seq DESC) = 1)")
        return self._con().sql(query.replace("{candles}", table), params=params).to_arrow_table().to_pandas()

    # ---- writing --------------------------------------------------------------------------

    def append(self, candles: pd.DataFrame, *, source: str | None = None, symbol: str | None = None,
               interval: str | None = None, replace: bool = False, covering=()) -> int:
        """Store the bars of ``candles`` not stored yet; returns how many bars were written.

        ``source``/``symbol``/``interval`` default to ``candles.attrs``. With ``replace`` every
        given bar is written and supersedes a stored bar at the same time (reads keep the
        newest). ``covering``: ``(start, end)`` ranges these bars are all there is in (a
        refetch): these bars supersede stored ones there (as with ``replace``), and a stored
        bar there that is not among them is no longer read (a small ``covers/`` file names
        it; written only when a bar did vanish, so they stay rare). Existing files are never
        changed.
        """
        source = source or candles.attrs.get("source")
        symbol = symbol or candles.attrs.get("symbol")
        interval = interval or candles.attrs.get("interval")
        frame = self._checked(candles)
        covers = [(_utc(a), _utc(b)) for a, b in covering]
        if frame.empty and not covers:
            return 0
        with self._lock(source, symbol, interval):
            # Stored bars inside a covered range that these bars lack: the source withdrew them.
            last = pd.Timedelta(microseconds=1)   # ranges are [start, end); stored times are in µs
            gone = pd.DatetimeIndex([], tz="UTC", name="timestamp")
            for lo, hi in covers:
                gone = gone.union(self._timestamps(source, symbol, interval, lo, hi - last))
            gone = gone.difference(frame.index)
            if not replace and not covers and len(frame):
                stored = self._timestamps(source, symbol, interval, frame.index[0], frame.index[-1])
                frame = frame[~frame.index.isin(stored)]
            if frame.empty and gone.empty:
                return 0
            seq = self._next_seq(source, symbol, interval)
            base = self.series_dir(source, symbol, interval)
            if len(gone):   # first: a crash before the bars only hides bars that a refetch restores
                table = pd.DataFrame({"start": gone, "end": gone + pd.Timedelta(microseconds=1)})
                self._write_table(base / "covers", table.assign(_seq=np.int64(seq)), f"cover-{seq:019d}")
            for year, part in frame.groupby(frame.index.year):
                self._write(base / f"year={year}", part, seq)
        return len(frame)

    def _write(self, folder: Path, part: pd.DataFrame, seq: int) -> Path:
        table = part.reset_index()
        table["timestamp"] = table["timestamp"].dt.as_unit("us")
        table["_seq"] = np.int64(seq)
        return self._write_table(folder, table, f"part-{seq:019d}")

    @staticmethod
    def _write_table(folder: Path, table: pd.DataFrame, stem: str) -> Path:
        """One new Parquet file, atomically (written beside, then renamed)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}-{uuid.uuid4().hex[:8]}.parquet"
        table.attrs = {}
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        try:
            table.to_parquet(tmp, index=False, compression="zstd", row_group_size=100_000)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @staticmethod
    def _checked(candles: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(candles, pd.DataFrame) or not isinstance(candles.index, pd.DatetimeIndex):
            raise DataError("Pass canonical candles (a DataFrame with a DatetimeIndex).")
        missing = [c for c in COLUMNS if c not in candles.columns]
        if missing:
            raise DataError(f"Candles lack the column(s) {', '.join(missing)}.")
        frame = candles[COLUMNS].astype("float64")
        index = candles.index if candles.index.tz is not None else candles.index.tz_localize("UTC")
        frame.index = index.tz_convert("UTC").as_unit("ns").rename("timestamp")
        frame = frame[~frame.index.duplicated(keep="last")].sort_index()
        return frame

    def compact(self, source: str, symbol: str, interval: str) -> int:
        """Merge each year's parts of one series into one file, newest bar kept and refetched-away
        bars dropped (then the covers are spent); returns the number of files removed.
        Rewrites files: run it off-hours, not on every append."""
        removed = 0
        with self._lock(source, symbol, interval):
            covers = self._covers(source, symbol, interval)
            for folder in sorted(self.series_dir(source, symbol, interval).glob("year=*")):
                parts = sorted(folder.glob(_PART))
                if not parts or (len(parts) < 2 and covers is None):
                    continue
                frame = self._select([p.as_posix() for p in parts], None, None, covers)
                seq = max(int(p.stem.split("-")[1]) for p in parts)
                self._write(folder, frame, seq)
                for p in parts:
                    p.unlink()
                removed += len(parts) - 1
            for spent in (self.series_dir(source, symbol, interval) / "covers").glob("cover-*.parquet"):
                spent.unlink()
                removed += 1
        return removed

    # ---- reading --------------------------------------------------------------------------

    def read(self, source: str, symbol: str, interval: str, start: Any = None, end: Any = None
             ) -> pd.DataFrame:
        """Stored candles of one series in ``[start, end)`` (UTC), canonical shape; empty frame
        when nothing is stored. Only that symbol's files for the years asked are opened."""
        start_ts, end_ts = _utc(start), _utc(end)
        folder = self.series_dir(source, symbol, interval)
        if not folder.exists():
            out = _empty()
        else:
            years = sorted(int(p.name.split("=", 1)[1]) for p in folder.glob("year=*"))
            lo = start_ts.year if start_ts is not None else -1
            hi = (end_ts - pd.Timedelta(1)).year if end_ts is not None else 10_000
            files = [(folder / f"year={y}" / _PART).as_posix() for y in years if lo <= y <= hi
                     and any((folder / f"year={y}").glob(_PART))]
            out = (self._select(files, start_ts, end_ts, self._covers(source, symbol, interval))
                   if files else _empty())
        out.attrs = {"symbol": symbol, "source": source, "interval": interval}
        return out

    def _covers(self, source: str, symbol: str, interval: str) -> pd.DataFrame | None:
        """The series' refetched ranges (start, end, _seq), or None when it has none."""
        frames = []
        for path in sorted((self.series_dir(source, symbol, interval) / "covers").glob("cover-*.parquet")):
            try:
                frames.append(pd.read_parquet(path))
            except FileNotFoundError:   # a compaction spent it between the glob and the read
                continue
        return pd.concat(frames, ignore_index=True) if frames else None

    def _select(self, files: list[str], start: pd.Timestamp | None, end: pd.Timestamp | None,
                covers: pd.DataFrame | None = None) -> pd.DataFrame:
        where, params = [], []
        if start is not None:
            where.append("timestamp >= ?")
            params.append(start.ceil("us").to_pydatetime())  # stored times are microseconds
        if end is not None:
            where.append("timestamp < ?")
            params.append(end.ceil("us").to_pydatetime())
        # Sorted by time then write sequence; the newest row of a time wins below (cheaper than
        # DISTINCT ON in SQL, and a no-op for the usual series that was never replaced).
        query = (f"SELECT timestamp, {', '.join(COLUMNS)}, _seq FROM read_parquet(?, union_by_name = true) "
                 f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY timestamp, _seq")
        for attempt in range(3):
            try:
                table = self._con().sql(query, params=[files, *params]).to_arrow_table()
                break
            except Exception as exc:  # a compaction removed a file between glob and open
                if attempt == 2 or "No files found" not in str(exc) and "IO Error" not in str(exc):
                    raise
        frame = table.to_pandas()
        index = pd.DatetimeIndex(frame.pop("timestamp")).tz_convert("UTC").as_unit("ns")
        frame.index = index.rename("timestamp")
        if covers is not None and len(frame):
            # A bar written before a refetch that covered its time, and not in that refetch, is gone.
            seq = frame["_seq"].to_numpy()
            gone = np.zeros(len(frame), dtype=bool)
            for lo, hi, cover_seq in covers[["start", "end", "_seq"]].itertuples(index=False):
                gone |= (index >= lo) & (index < hi) & (seq < cover_seq)
            frame = frame[~gone]
        frame = frame[COLUMNS].astype("float64")
        return frame[~frame.index.duplicated(keep="last")]

    def _timestamps(self, source: str, symbol: str, interval: str, start: pd.Timestamp,
                    end: pd.Timestamp) -> pd.DatetimeIndex:
        """Stored bar times in ``[start, end]`` (what an append must not write again)."""
        return self.read(source, symbol, interval, start, end + pd.Timedelta(microseconds=1)).index

    def symbols(self, source: str, interval: str) -> list[str]:
        """Symbols stored for a source and interval."""
        folder = self.root / f"source={_part_value(source)}" / f"interval={_part_value(interval)}"
        return sorted(unquote(p.name.split("=", 1)[1]) for p in folder.glob("symbol=*"))

    def bounds(self, source: str, symbol: str, interval: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """First and last stored bar time, or None."""
        files = [p.as_posix() for p in self._parts(source, symbol, interval)]
        if not files:
            return None
        lo, hi = self._con().execute("SELECT min(timestamp), max(timestamp) FROM read_parquet(?)",
                                     [files]).fetchall()[0]
        return _utc(lo), _utc(hi)
