"""Yahoo source: limits, yfinance frame shapes -> canonical candles, error mapping. Offline.

Two levels of fakes: recorded chart-API JSON served through yfinance's own parsing (so
frames have exactly yfinance's shape), and a fake ``yf.Ticker`` for call bookkeeping.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import yfinance as yf
import yfinance.exceptions as yfe
from curl_cffi.requests.exceptions import DNSError, HTTPError
from yfinance.data import YfData

from data import CandleQuery, DataError, load_candles, validate_candles, yahoo
from data.cached import NoDataError, SourceUnavailableError, SymbolNotFoundError
from store import data_dir
from tests.chaos_server import HOLD, ChaosServer, Reply, garbage, join_fetch_workers, yfinance_black_hole

pytestmark = pytest.mark.filterwarnings("ignore::Warning:yfinance")

FIXTURES = Path(__file__).parent / "fixtures" / "yahoo"
NOW = pd.Timestamp("2024-03-10 12:00", tz="UTC")


def utc(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts


def query(interval="1d", start="2024-01-02", end="2024-01-09", symbol="AAPL", **options):
    return CandleQuery("yahoo", symbol, utc(start), utc(end), interval, tuple(sorted(options.items())))


def read_history_csv(name: str, tz: str, unit: str) -> pd.DataFrame:
    """A saved ``Ticker.history`` frame with yfinance's dtypes under pandas 3 (index in the
    exchange tz at second/microsecond resolution, int64 Volume)."""
    frame = pd.read_csv(FIXTURES / name, index_col=0)
    name_ = frame.index.name
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True)).tz_convert(tz).as_unit(unit).rename(name_)
    return frame


def fetch(q: CandleQuery) -> pd.DataFrame:
    """What load_candles does without the cache, at the fixed clock NOW (fixtures are from 2024)."""
    return validate_candles(yahoo.to_frame(yahoo.fetch_raw(q, now=NOW), q))


class ChartResponse:
    """Just what yfinance reads from a curl_cffi response."""

    def __init__(self, body: dict, status: int, url: str) -> None:
        self.text, self.status_code, self.url = json.dumps(body), status, url

    def json(self):
        return json.loads(self.text)

    def raise_for_status(self):
        if self.status_code >= 400:
            raise HTTPError(f"{self.status_code} Client Error for url: {self.url}", response=self)


@pytest.fixture
def yahoo_server(monkeypatch):
    """Serve ``chart_<SYMBOL>_<interval>.json`` for chart calls (404 body otherwise) through
    yfinance's real parsing; records (url, params) of every call."""
    calls = []
    routes = {"chart_AAPL_1m.json": ("chart_AAPL_1m_422.json", 422)}

    def fake_get(self, url, params=None, timeout=30):
        calls.append((url, dict(params or {})))
        symbol = url.rsplit("/", 1)[-1]
        name = f"chart_{symbol}_{(params or {}).get('interval', '1d')}.json"
        name, status = routes.get(name, (name, 200))
        if "/v8/finance/chart/" not in url or not (FIXTURES / name).exists():
            name, status = "chart_ZZZZQ_404.json", 404
        return ChartResponse(json.loads((FIXTURES / name).read_text()), status, url)

    monkeypatch.setattr(YfData, "get", fake_get)
    monkeypatch.setattr(YfData, "cache_get", fake_get)
    return calls


class FakeTicker:
    """Stands in for ``yf.Ticker``: records history() calls, answers from ``answer``."""

    calls: list[dict] = []
    answer = None  # a DataFrame, or an exception to raise

    def __init__(self, symbol):
        self.symbol = symbol

    def history(self, **kwargs):
        FakeTicker.calls.append(kwargs)
        if isinstance(FakeTicker.answer, Exception):
            raise FakeTicker.answer
        return FakeTicker.answer


@pytest.fixture
def fake_ticker(monkeypatch):
    FakeTicker.calls = []
    FakeTicker.answer = read_history_csv("history_BTC-USD_1h.csv", "UTC", "us")
    monkeypatch.setattr(yf, "Ticker", FakeTicker)
    return FakeTicker


# --- limits -------------------------------------------------------------------------------

def test_1m_ranges_are_split_into_contiguous_7_day_chunks():
    q = query("1m", start="2024-02-20", end="2024-03-10")
    windows = yahoo.request_windows(q, NOW)
    assert len(windows) == 3
    assert windows[0][0] == q.start and windows[-1][1] == q.end
    assert all(b == c for (_, b), (c, _) in zip(windows[:-1], windows[1:]))
    assert all(b - a <= pd.Timedelta(days=7) for a, b in windows)


@pytest.mark.parametrize("interval, start, days, suggestion", [
    ("1m", "2024-02-01", 30, "5m"),
    ("5m", "2024-01-01", 60, "1h"),
    ("30m", "2024-01-01", 60, "1h"),
    ("1h", "2022-01-01", 730, "1d"),
    ("4h", "2022-01-01", 730, "1d"),
])
def test_ranges_outside_yahoo_limits_say_the_limit_and_what_to_pick(interval, start, days, suggestion):
    with pytest.raises(DataError) as info:
        yahoo.request_windows(query(interval, start=start, end="2024-03-09"), NOW)
    assert f"last {days} days" in str(info.value) and suggestion in str(info.value)


def test_daily_ranges_have_no_limit_and_one_request():
    q = query("1d", start="1990-01-01", end="2024-03-09")
    assert yahoo.request_windows(q, NOW) == [(q.start, q.end)]


# --- frames shaped by yfinance itself ----------------------------------------------------

def test_daily_history_becomes_canonical_candles_on_exchange_dates(yahoo_server):
    frame = load_candles("yahoo", "AAPL", "2024-01-02", "2024-01-09", "1d", use_cache=False)
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert (frame.dtypes == "float64").all()
    assert str(frame.index.dtype) == "datetime64[ns, UTC]" and frame.index.name == "timestamp"
    assert list(frame.index.strftime("%Y-%m-%d %H:%M")) == [
        "2024-01-02 00:00", "2024-01-03 00:00", "2024-01-04 00:00", "2024-01-05 00:00", "2024-01-08 00:00"]
    assert frame["volume"].iloc[0] == 82488700.0
    assert frame.attrs["symbol"] == "AAPL" and frame.attrs["source"] == "yahoo"
    chart_call = yahoo_server[-1][1]
    assert chart_call["interval"] == "1d"
    assert chart_call["period1"] == int(pd.Timestamp("2024-01-02", tz="America/New_York").timestamp())


def test_hourly_history_is_converted_from_new_york_to_utc(yahoo_server):
    frame = fetch(query("1h", "2024-03-04", "2024-03-06"))
    assert len(frame) == 14
    assert frame.index[0] == pd.Timestamp("2024-03-04 14:30", tz="UTC")  # 09:30 EST
    assert frame.index[-1] == pd.Timestamp("2024-03-05 20:30", tz="UTC")
    chart_call = yahoo_server[-1][1]
    assert chart_call["period1"] == int(pd.Timestamp("2024-03-04", tz="UTC").timestamp())


def test_4h_is_fetched_as_1h_and_aggregated(yahoo_server):
    hourly = fetch(query("1h", "2024-03-04", "2024-03-06"))
    four = fetch(query("4h", "2024-03-04", "2024-03-06"))
    assert yahoo_server[-1][1]["interval"] == "1h"
    first_bin = hourly.loc["2024-03-04 12:00":"2024-03-04 15:59"]  # 14:30 and 15:30 UTC
    row = four.loc[pd.Timestamp("2024-03-04 12:00", tz="UTC")]
    assert row["open"] == first_bin["open"].iloc[0] and row["close"] == first_bin["close"].iloc[-1]
    assert row["high"] == first_bin["high"].max() and row["low"] == first_bin["low"].min()
    assert row["volume"] == first_bin["volume"].sum()
    assert four["volume"].sum() == hourly["volume"].sum()


def test_unknown_symbol_is_only_what_yahoo_says_not_found(yahoo_server):
    with pytest.raises(SymbolNotFoundError) as info:
        load_candles("yahoo", "ZZZZQ", "2024-01-02", "2024-01-09", "1d", use_cache=False)
    assert str(info.value) == yahoo.unknown_symbol_message("ZZZZQ", "No data found, symbol may be delisted")
    assert str(info.value).startswith("Yahoo Finance does not know the symbol ZZZZQ")


def test_yahoo_refusal_reason_is_passed_on(yahoo_server):
    q = query("1m", start=NOW - pd.Timedelta(days=3), end=NOW - pd.Timedelta(days=1))
    raw = yahoo.fetch_raw(q, now=NOW)
    with pytest.raises(NoDataError, match="Only 8 days worth of 1m granularity"):
        yahoo.to_frame(raw, q)


# --- frames saved from yfinance ----------------------------------------------------------

def test_tokyo_daily_bars_keep_their_local_date():
    frame = read_history_csv("history_7203.T_1d.csv", "Asia/Tokyo", "s")
    out = yahoo.to_frame({"frames": [frame], "reasons": []}, query("1d", "2024-03-04", "2024-03-09", "7203.T"))
    assert out.index[0] == pd.Timestamp("2024-03-04", tz="UTC")
    assert len(out) == 5 and out["volume"].dtype == "float64"


def test_download_multiindex_columns_pick_the_symbol():
    frame = pd.read_csv(FIXTURES / "download_AAPL_MSFT_1d.csv", header=[0, 1], index_col=0)
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index), name="Date")  # naive, as download gives
    for shaped in (frame, frame.swaplevel(axis=1)):  # (Price, Ticker) and group_by="ticker"
        out = yahoo.to_frame({"frames": [shaped], "reasons": []}, query("1d", "2024-01-02", "2024-01-05", "MSFT"))
        assert out["open"].iloc[0] == frame[("Open", "MSFT")].iloc[0]
        assert out.index[0] == pd.Timestamp("2024-01-02", tz="UTC")


def test_chunks_are_stitched_sorted_and_clipped_to_the_range():
    frame = read_history_csv("history_BTC-USD_1h.csv", "UTC", "us")
    q = query("1h", "2024-03-04 02:00", "2024-03-04 20:00", "BTC-USD")
    out = yahoo.to_frame({"frames": [frame.iloc[12:], frame.iloc[:13]], "reasons": []}, q)
    assert out.index.is_monotonic_increasing and out.index.is_unique
    assert out.index[0] == q.start and out.index[-1] == pd.Timestamp("2024-03-04 19:00", tz="UTC")


def test_empty_yfinance_frame_is_no_data():
    empty = pd.DataFrame(columns=["Open", "High", "Low", "Close", "Adj Close", "Volume"],
                         index=pd.Index([], name="Date"))
    with pytest.raises(NoDataError, match="No Yahoo Finance bars for AAPL in this range") as info:
        yahoo.to_frame({"frames": [empty], "reasons": []}, query())
    assert "unknown" not in str(info.value)   # an empty answer is no claim about the symbol


# --- calls and errors --------------------------------------------------------------------

def test_1m_fetch_sends_one_request_per_chunk_with_progress(fake_ticker):
    now = pd.Timestamp.now(tz="UTC").floor("min")
    q = query("1m", start=now - pd.Timedelta(days=20), end=now, symbol="BTC-USD", adjusted=False)
    steps = []
    yahoo.fetch_raw(q, progress=lambda fraction, message: steps.append(fraction))
    assert len(fake_ticker.calls) == 3 and steps == pytest.approx([1 / 3, 2 / 3, 1.0])
    for call in fake_ticker.calls:
        assert call["end"] - call["start"] <= 7 * 86400
        assert call["interval"] == "1m" and call["auto_adjust"] is False
        assert call["actions"] is False and call["timeout"] == 10


@pytest.mark.parametrize("error, message", [
    (yfe.YFRateLimitError(), yahoo.RATE_LIMITED),
    (DNSError("Could not resolve host: query2.finance.yahoo.com"), yahoo.UNREACHABLE),
])
def test_rate_limit_and_no_network_are_source_unavailable(fake_ticker, error, message):
    fake_ticker.answer = error
    with pytest.raises(SourceUnavailableError) as info:
        yahoo.fetch_raw(query("1d", symbol="BTC-USD"))
    assert str(info.value).startswith(message)
    if message == yahoo.UNREACHABLE:
        assert str(info.value).startswith("Cannot reach Yahoo Finance for BTC-USD: no network")


def test_yfinance_cache_lives_in_the_data_folder(fake_ticker, tmp_path):
    yahoo.fetch_raw(query("1d", symbol="BTC-USD"))
    from yfinance.cache import _TzDBManager
    assert Path(_TzDBManager.get_location()).is_relative_to(tmp_path)


# --- a misbehaving server on loopback: real sockets, real yfinance, a total deadline -------

def chart_reply(method, path, params):
    """Chart API answers from the fixtures (404 "Not Found" for symbols without one)."""
    name = f"chart_{path.rsplit('/', 1)[-1]}_{params.get('interval', '1d')}.json"
    if not (FIXTURES / name).exists():
        return Reply(404, (FIXTURES / "chart_ZZZZQ_404.json").read_text())
    return Reply(body=(FIXTURES / name).read_text())


@pytest.fixture
def chaos(monkeypatch):
    """yfinance's shared session replaced by one that sends every Yahoo URL to a ChaosServer;
    ``chaos.use(server)`` points it at another server (e.g. a closed port)."""
    data = YfData()
    original = data._session
    real_ticker = yf.Ticker
    with ChaosServer() as server:
        server.route("/v8/finance/chart/", chart_reply)
        server.route("/v1/test/getcrumb", Reply(body="crumb", headers={"Content-Type": "text/plain"}))
        server.default = Reply(404, (FIXTURES / "chart_ZZZZQ_404.json").read_text())   # as Yahoo does
        target = {"session": server.session()}
        server.use = lambda other: target.update(session=other.session())
        monkeypatch.setattr(yf, "Ticker", lambda symbol: real_ticker(symbol, session=target["session"]))
        YfData.cache_get.cache_clear()
        yield server
    join_fetch_workers()   # none may reach the real session restored below
    YfData(session=original)
    data._cookie = data._crumb = None
    YfData.cache_get.cache_clear()


def refusing_server() -> ChaosServer:
    """A port that refuses connections (bound, never served, closed)."""
    server = ChaosServer()
    server._server.server_close()
    return server


def test_chaos_yahoo_answers_through_real_sockets(chaos):
    frame = load_candles("yahoo", "AAPL", "2024-01-02", "2024-01-09", "1d", use_cache=False, deadline=5)
    assert len(frame) == 5 and chaos.calls("/v8/finance/chart/AAPL")


@pytest.mark.parametrize("reply", [HOLD, Reply(body="{" + " " * 200 + "}", trickle=0.1)],
                         ids=["never-answers", "trickles"])
def test_chaos_stalled_yahoo_ends_at_the_deadline(chaos, reply):
    chaos.everything(reply)
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError) as info:
        load_candles("yahoo", "AAPL", "2024-01-02", "2024-01-09", "1d", use_cache=False, deadline=0.5)
    assert time.monotonic() - started < 3
    assert str(info.value).startswith("Cannot reach Yahoo Finance for AAPL: no answer within 0.5 s")


@pytest.fixture
def black_hole():
    with yfinance_black_hole() as proxy:
        yield proxy


def test_black_holed_network_ends_at_the_deadline_on_yfinance_own_session(black_hole):
    for _ in range(2):   # the second waits behind the first's cookie lookup: still bounded
        started = time.monotonic()
        with pytest.raises(SourceUnavailableError, match="Cannot reach Yahoo Finance for AAPL: "
                                                         "no answer within 0.5 s"):
            load_candles("yahoo", "AAPL", "2024-01-02", "2024-01-09", "1d", deadline=0.5)
        assert time.monotonic() - started < 3
    assert black_hole.calls() and black_hole.requests[0].method == "CONNECT"


def test_chaos_no_network_is_never_an_unknown_symbol(chaos):
    chaos.use(refusing_server())
    for _ in range(3):   # yfinance changes its path after the first failures in a process
        with pytest.raises(SourceUnavailableError) as info:
            load_candles("yahoo", "AAPL", "2024-01-02", "2024-01-09", "1d", deadline=5)
        assert str(info.value).startswith("Cannot reach Yahoo Finance for AAPL: no network")
        assert "unknown" not in str(info.value) and "does not know" not in str(info.value)


@pytest.mark.parametrize("reply, expected", [
    (garbage(500), "Yahoo"),
    (garbage(200), "Yahoo"),
    (Reply(429, "Too Many Requests", {"Content-Type": "text/plain"}), "rate-limiting"),
    (Reply(503, "", {"Content-Type": "text/html"}), "Yahoo"),
], ids=["garbage-500", "garbage-200", "429", "503"])
def test_chaos_yahoo_trouble_is_unavailable_not_unknown(chaos, reply, expected):
    chaos.everything(reply)
    with pytest.raises(SourceUnavailableError, match=expected) as info:
        load_candles("yahoo", "AAPL", "2024-01-02", "2024-01-09", "1d", use_cache=False, deadline=5)
    assert not isinstance(info.value, NoDataError)


def test_chaos_explicit_not_found_is_unknown_and_not_remembered(chaos):
    for attempt in (1, 2):
        with pytest.raises(SymbolNotFoundError, match="does not know the symbol ZZZZQ"):
            load_candles("yahoo", "ZZZZQ", "2024-01-02", "2024-01-09", "1d", deadline=5)
        assert len(chaos.calls("/v8/finance/chart/ZZZZQ")) >= 2 * attempt   # asked again
    assert not (data_dir() / "candles" / "yahoo" / "ZZZZQ").exists()


@pytest.mark.parametrize("outage", ["refused", "stalled"])
def test_chaos_partly_cached_range_comes_with_a_notice_of_what_is_missing(chaos, outage):
    first = load_candles("yahoo", "AAPL", "2024-01-02", "2024-01-09", "1d", deadline=5)
    if outage == "refused":
        chaos.use(refusing_server())
    else:
        chaos.everything(HOLD)
    for _ in range(2):   # also after a first failure in the process
        frame = load_candles("yahoo", "AAPL", "2024-01-02", "2024-01-20", "1d", deadline=0.5)
        assert len(frame) == len(first) == 5
        notice = frame.attrs["notice"]
        assert notice.startswith("Offline: showing cached data fetched moments ago; could not fetch "
                                 "2024-01-09 00:00 to 2024-01-20 00:00 UTC (Cannot reach Yahoo Finance for AAPL")
