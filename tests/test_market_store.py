"""The DuckDB/Parquet market store: exact round trips, append-only writes, pushed-down reads,
and appends from several processes at once."""
import multiprocessing as mp

import pandas as pd
import pytest

from data import COLUMNS
from data.demo import demo_market
from data.market_store import MarketStore


@pytest.fixture(scope="module")
def candles():
    # Spans a year boundary, so one series lands in two year partitions.
    return demo_market(seed=4, symbol="DEMO-USD", start="2023-12-20", end="2024-01-12", interval="1h").candles


def canonical(frame):
    return frame[COLUMNS]


def files(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("part-*.parquet")}


def test_round_trip_is_exact_and_canonical(tmp_path, candles):
    store = MarketStore(tmp_path)
    assert store.append(candles) == len(candles)
    out = store.read("demo", "DEMO-USD", "1h")
    pd.testing.assert_frame_equal(out, canonical(candles), check_freq=False)
    assert str(out.index.dtype) == "datetime64[ns, UTC]" and out.index.name == "timestamp"
    assert (out.dtypes == "float64").all()
    assert out.attrs == {"symbol": "DEMO-USD", "source": "demo", "interval": "1h"}
    assert sorted(p.parent.name for p in files(tmp_path)) == ["year=2023", "year=2024"]


def test_append_writes_only_new_bars_and_never_touches_history(tmp_path, candles):
    store = MarketStore(tmp_path)
    assert store.append(candles.iloc[:300]) == 300
    before = files(tmp_path)
    assert store.append(candles.iloc[:300]) == 0          # nothing new: no file at all
    assert files(tmp_path) == before
    assert store.append(candles.iloc[250:]) == len(candles) - 300
    after = files(tmp_path)
    assert all(after[p] == mtime for p, mtime in before.items())   # old files unchanged
    pd.testing.assert_frame_equal(store.read("demo", "DEMO-USD", "1h"), canonical(candles), check_freq=False)


def test_replace_supersedes_and_compact_keeps_the_newest(tmp_path, candles):
    store = MarketStore(tmp_path)
    store.append(candles)
    fixed = candles.iloc[-5:].copy()
    fixed["volume"] += 1.0
    assert store.append(fixed, replace=True) == 5
    expected = canonical(candles).copy()
    expected.loc[fixed.index, "volume"] = fixed["volume"]
    pd.testing.assert_frame_equal(store.read("demo", "DEMO-USD", "1h"), expected, check_freq=False)
    assert store.compact("demo", "DEMO-USD", "1h") == 1
    assert len(files(tmp_path)) == 2
    pd.testing.assert_frame_equal(store.read("demo", "DEMO-USD", "1h"), expected, check_freq=False)


def test_read_filters_by_time_and_opens_only_that_symbol(tmp_path, candles):
    store = MarketStore(tmp_path)
    store.append(candles)
    other = candles.copy()
    other.attrs = {**candles.attrs, "symbol": "BTC/USDT"}
    store.append(other)
    # A damaged file of another symbol (or of another year) is never opened by a filtered read.
    bad = store.series_dir("demo", "BTC/USDT", "1h") / "year=2024" / "part-0000000000000000001-x.parquet"
    bad.write_bytes(b"not parquet")
    week = store.read("demo", "DEMO-USD", "1h", "2024-01-02", "2024-01-09")
    expected = canonical(candles).loc["2024-01-02":"2024-01-08 23:00"]
    pd.testing.assert_frame_equal(week, expected, check_freq=False)
    old = store.read("demo", "BTC/USDT", "1h", "2023-12-21", "2023-12-22")     # 2023 only
    assert len(old) == 24 and old.index[0] == pd.Timestamp("2023-12-21", tz="UTC")
    assert store.symbols("demo", "1h") == ["BTC/USDT", "DEMO-USD"]
    assert store.read("demo", "NOPE", "1h").empty
    assert store.read("demo", "DEMO-USD", "1h", "2030-01-01", "2030-02-01").empty


def test_sql_across_the_universe(tmp_path, candles):
    store = MarketStore(tmp_path)
    for sym in ("AAA", "B/B"):
        frame = candles.copy()
        frame.attrs = {**candles.attrs, "symbol": sym}
        store.append(frame)
    counts = store.sql("SELECT symbol, count(*) AS n FROM {candles} GROUP BY symbol ORDER BY symbol")
    assert counts.to_dict("list") == {"symbol": ["AAA", "B/B"], "n": [len(candles)] * 2}
    assert store.bounds("demo", "AAA", "1h") == (candles.index[0], candles.index[-1])


def _append_chunks(root, frame, chunks):
    store = MarketStore(root)
    for lo, hi in chunks:
        store.append(frame.iloc[lo:hi])


def test_concurrent_appends_from_processes_all_land_once(tmp_path, candles):
    # Four processes append overlapping slices of the same series at once: the file lock makes
    # each skip what another stored, so every bar lands exactly once.
    ctx = mp.get_context("spawn")
    n = len(candles)
    plans = [[(i * n // 8, (i + 3) * n // 8) for i in range(k, 8, 4)] for k in range(4)]
    procs = [ctx.Process(target=_append_chunks, args=(tmp_path, candles, plan)) for plan in plans]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = MarketStore(tmp_path)
    out = store.read("demo", "DEMO-USD", "1h")
    pd.testing.assert_frame_equal(out, canonical(candles), check_freq=False)
    rows = store.sql("SELECT count(*) AS n FROM {candles}")["n"].iat[0]
    assert rows == n     # no bar written twice


def test_a_bar_the_source_no_longer_returns_is_gone_after_a_covering_refetch(tmp_path, candles):
    store = MarketStore(tmp_path)
    store.append(candles)
    lo, hi = candles.index[100], candles.index[110]
    refetch = candles.iloc[100:110].drop(candles.index[104])        # the source dropped one bar
    store.append(refetch, replace=True, covering=[(lo, hi)])
    expected = canonical(candles).drop(candles.index[104])
    pd.testing.assert_frame_equal(store.read("demo", "DEMO-USD", "1h"), expected, check_freq=False)
    # An empty refetch of a range says every bar there is gone; the bars around it stay.
    store.append(candles.iloc[:0], covering=[(candles.index[200], candles.index[203])])
    expected = expected.drop(candles.index[200:203])
    pd.testing.assert_frame_equal(store.read("demo", "DEMO-USD", "1h"), expected, check_freq=False)
    # SQL over the store sees what read sees, before any compaction.
    assert_sql_sees(store, expected)
    # A later plain append inside a covered range is read (it is newer than the cover).
    assert store.append(candles.iloc[[104]]) == 1
    assert candles.index[104] in store.read("demo", "DEMO-USD", "1h").index
    assert store.compact("demo", "DEMO-USD", "1h") >= 1
    assert not list(tmp_path.rglob("cover-*.parquet")) and len(files(tmp_path)) == 2   # covers spent
    expected = pd.concat([expected, canonical(candles).iloc[[104]]]).sort_index()
    pd.testing.assert_frame_equal(store.read("demo", "DEMO-USD", "1h"), expected, check_freq=False)


def assert_sql_sees(store: MarketStore, expected: pd.DataFrame) -> None:
    seen = store.sql("SELECT timestamp, open, high, low, close, volume FROM {candles} ORDER BY timestamp")
    seen = seen.set_index(pd.DatetimeIndex(seen.pop("timestamp")).tz_convert("UTC").as_unit("ns"))
    pd.testing.assert_frame_equal(seen, expected, check_freq=False, check_names=False)


def test_sql_sees_the_newest_row_of_a_replaced_bar(tmp_path, candles):
    store = MarketStore(tmp_path)
    store.append(candles)
    fixed = candles.iloc[50:60].copy()
    fixed["close"] *= 1.01                                  # a refetched, now complete bar
    store.append(fixed, replace=True)
    expected = canonical(candles)
    expected.loc[fixed.index, "close"] = fixed["close"].to_numpy()
    assert_sql_sees(store, expected)


def test_a_covering_append_of_bars_already_stored_hides_nothing(tmp_path, candles):
    """Covering implies the bars are the truth there: given again, they stay readable, and no
    cover is written when nothing vanished (so covers stay rare)."""
    store = MarketStore(tmp_path)
    store.append(candles)
    lo, hi = candles.index[10], candles.index[14]
    store.append(candles.iloc[10:14], covering=[(lo, hi)])
    pd.testing.assert_frame_equal(store.read("demo", "DEMO-USD", "1h"), canonical(candles), check_freq=False)
    assert not list(tmp_path.rglob("cover-*.parquet"))
