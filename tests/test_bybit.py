"""Bybit source through the real pybit client, with its requests.Session answered by a fake
transport adapter that replays recorded v5 bodies (or plays a small kline server). Offline.
"""
from __future__ import annotations

import json
import time
import types
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pandas as pd
import pytest
import requests
from requests.adapters import BaseAdapter

from data import CandleQuery, DataError, bybit, load_candles, network
from data.cached import NoDataError, SourceUnavailableError
from tests.chaos_server import HOLD, ChaosServer, Reply, garbage

FIXTURES = Path(__file__).parent / "fixtures" / "bybit"
KLINE = "/v5/market/kline"
INSTRUMENTS = "/v5/market/instruments-info"
HOUR_MS = 3_600_000


def body(name: str) -> str:
    return (FIXTURES / name).read_text()


def query(start="2024-03-01", end="2024-03-02", interval="1h", symbol="BTCUSDT", **options):
    return CandleQuery("bybit", symbol, pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC"),
                       interval, tuple(sorted(options.items())))


def kline_server(first_bar: pd.Timestamp, count: int):
    """A kline endpoint over ``count`` hourly bars from ``first_bar``: both ends inclusive,
    newest first, at most ``limit`` rows, in the recorded body's shape."""
    template = json.loads(body("kline_spot_BTCUSDT_60.json"))
    first_ms = int(first_bar.timestamp() * 1000)

    def answer(params):
        start, end, limit = int(params["start"]), int(params["end"]), int(params["limit"])
        times = [t for t in range(first_ms, first_ms + count * HOUR_MS, HOUR_MS) if start <= t <= end]
        rows = [[str(t), "100.5", "101", "99.5", "100", "12.5", "1250"] for t in reversed(times)][:limit]
        return 200, json.dumps({**template, "result": {**template["result"], "list": rows}}), {}
    return answer


class FakeBybit(BaseAdapter):
    """Transport adapter: routes by path to a handler ``params -> (status, text, headers)``
    (a handler may also be a list, answered in turn, or raise a requests exception)."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, dict]] = []
        self.routes = {INSTRUMENTS: lambda p: (200, body("instruments_spot_BTCUSDT.json"), {}),
                       KLINE: lambda p: (200, body("kline_spot_BTCUSDT_60.json"), {})}

    def send(self, request, **kwargs):
        url = urlsplit(request.url)
        params = dict(parse_qsl(url.query))
        self.calls.append((url.path, params))
        handler = self.routes[url.path]
        if isinstance(handler, list):
            handler = handler.pop(0) if len(handler) > 1 else handler[0]
        if isinstance(handler, Exception):
            raise handler
        status, text, headers = handler(params)
        response = requests.Response()
        response.status_code, response._content, response.url = status, text.encode(), request.url
        response.headers.update(headers)
        response.request = request
        return response

    def close(self):
        pass

    def kline_calls(self):
        return [params for path, params in self.calls if path == KLINE]


@pytest.fixture
def server(monkeypatch):
    fake = FakeBybit()
    monkeypatch.setattr(requests.Session, "get_adapter", lambda self, url: fake)
    monkeypatch.setattr(bybit, "_RATE_LIMITER", bybit.RequestRateLimiter())
    return fake


@pytest.fixture
def sleeps():
    recorded: list[float] = []
    return recorded


def fetch(q, sleeps=None, progress=None):
    sleep = (sleeps.append if sleeps is not None else lambda s: None)
    return bybit.to_frame(bybit.fetch_raw(q, progress=progress, sleep=sleep,
                                          now=pd.Timestamp("2024-06-01", tz="UTC")), q)


# --- windows and limiter -----------------------------------------------------------------

def test_kline_windows_cover_the_range_newest_first_without_overlap():
    start, end = 0, 2500 * HOUR_MS
    windows = bybit.kline_windows(start, end, HOUR_MS)
    assert len(windows) == 3
    assert windows[0][1] == end - 1 and windows[-1][0] == start
    assert all(newer[0] == older[1] + 1 for newer, older in zip(windows[:-1], windows[1:]))
    assert all((last - first) // HOUR_MS + 1 <= 1000 for first, last in windows)


def test_rate_limiter_waits_when_the_window_is_full():
    clock = [0.0]
    limiter = bybit.RequestRateLimiter(max_requests=3, per_seconds=5.0, clock=lambda: clock[0])
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.reserve() == pytest.approx(5.0)
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        clock[0] += seconds
    limiter.acquire(sleep)
    assert waits == [pytest.approx(5.0)]


def test_client_has_a_timeout_and_leaves_retries_to_us():
    client = bybit._client()
    assert client.timeout == 10 and client.testnet is False and client.max_retries == 1
    assert client.retry_codes == {-1}   # pybit sleeps on no code (an empty set means its defaults)
    assert isinstance(client.client.get_adapter("https://api.bybit.com"), network.DeadlineAdapter)


# --- answers -----------------------------------------------------------------------------

def test_single_page_is_parsed_sorted_and_float(server):
    frame = load_candles("bybit", "BTCUSDT", "2024-03-01", "2024-03-02", "1h", use_cache=False)
    assert len(frame) == 24 and frame.index.is_monotonic_increasing
    assert frame.index[0] == pd.Timestamp("2024-03-01", tz="UTC")
    assert (frame.dtypes == "float64").all()
    first = json.loads(body("kline_spot_BTCUSDT_60.json"))["result"]["list"][-1]
    assert frame["open"].iloc[0] == float(first[1]) and frame["volume"].iloc[0] == float(first[5])
    assert [path for path, _ in server.calls] == [INSTRUMENTS, KLINE]
    kline = server.kline_calls()[0]
    assert kline == {"category": "spot", "symbol": "BTCUSDT", "interval": "60", "limit": "1000",
                     "start": str(1709251200000), "end": str(1709337600000 - 1)}


def test_2500_bars_come_in_three_pages_with_progress(server):
    server.routes[KLINE] = kline_server(pd.Timestamp("2024-01-01", tz="UTC"), 2500)
    q = query("2024-01-01", pd.Timestamp("2024-01-01") + pd.Timedelta(hours=2500))
    steps = []
    frame = fetch(q, progress=lambda fraction, message: steps.append(fraction))
    assert len(frame) == 2500 and frame.index.is_unique and frame.index.is_monotonic_increasing
    assert len(server.kline_calls()) == 3
    assert all("start" in c and "end" in c for c in server.kline_calls())
    assert steps == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_walking_back_stops_before_the_market_existed(server):
    server.routes[KLINE] = kline_server(pd.Timestamp("2024-03-01", tz="UTC"), 500)
    frame = fetch(query("2023-01-01", "2024-03-21 20:00"))
    assert len(frame) == 500
    assert len(server.kline_calls()) == 2  # the page with bars, then one empty page


def test_boundary_duplicates_and_bars_outside_the_range_are_dropped():
    page = json.loads(body("kline_spot_BTCUSDT_60.json"))
    rows = page["result"]["list"]
    newer = {**page, "result": {**page["result"], "list": rows[:13]}}
    older = {**page, "result": {**page["result"], "list": rows[12:]}}  # shares one bar with `newer`
    q = query("2024-03-01 02:00", "2024-03-01 22:00")
    frame = bybit.to_frame({"symbol": "BTCUSDT", "category": "spot", "pages": [newer, older]}, q)
    assert frame.index.is_unique and len(frame) == 20
    assert frame.index[0] == q.start and frame.index[-1] == pd.Timestamp("2024-03-01 21:00", tz="UTC")


def test_empty_list_is_no_data(server):
    server.routes[KLINE] = lambda p: (200, body("kline_empty.json"), {})
    with pytest.raises(NoDataError, match="No Bybit data for BTCUSDT"):
        fetch(query())


def test_linear_category_is_sent(server):
    server.routes[INSTRUMENTS] = lambda p: (200, body("instruments_linear_BTCUSDT.json"), {})
    fetch(query(category="linear"))
    assert {params["category"] for _, params in server.calls} == {"linear"}


def test_unknown_category_and_interval_are_refused_before_any_request(server):
    with pytest.raises(DataError, match="spot, linear or inverse"):
        fetch(query(category="futures"))
    with pytest.raises(DataError, match="Bybit has no"):
        fetch(query(interval="2h"))
    assert server.calls == []


# --- errors ------------------------------------------------------------------------------

def test_unknown_symbol_names_the_category_and_an_example(server):
    server.routes[INSTRUMENTS] = lambda p: (200, body("instruments_spot_unknown.json"), {})
    with pytest.raises(DataError) as info:
        fetch(query(symbol="NOPEUSDT"))
    assert "spot" in str(info.value) and "BTCUSDT" in str(info.value) and "NOPEUSDT" in str(info.value)
    assert not isinstance(info.value, SourceUnavailableError)
    assert server.kline_calls() == []


@pytest.mark.parametrize("fixture, expected", [
    ("error_10001_symbol.json", "does not list BTCUSDT in the spot category"),
    ("error_10001_period.json", "rejected the interval '60'"),
])
def test_ret_code_10001_is_a_data_error(server, fixture, expected):
    server.routes[KLINE] = lambda p: (200, body(fixture), {})
    with pytest.raises(DataError, match=expected) as info:
        fetch(query())
    assert not isinstance(info.value, SourceUnavailableError)


def test_403_ban_or_region_is_not_retried(server, sleeps):
    server.routes[KLINE] = lambda p: (403, body("forbidden_403.html"), {"Content-Type": "text/html"})
    with pytest.raises(SourceUnavailableError, match="HTTP 403.*10 minutes"):
        fetch(query(), sleeps)
    assert len(server.kline_calls()) == 1 and sleeps == []


def test_10006_is_retried_here_until_the_reset_then_reported_as_rate_limit(server, sleeps, monkeypatch):
    pybit_sleeps = []
    monkeypatch.setattr("pybit._http_manager.time", types.SimpleNamespace(sleep=pybit_sleeps.append))
    reset = str(int(pd.Timestamp.now(tz="UTC").timestamp() * 1000) + 2000)
    server.routes[KLINE] = lambda p: (200, body("error_10006.json"), {"X-Bapi-Limit-Reset-Timestamp": reset})
    with pytest.raises(SourceUnavailableError) as info:
        fetch(query(), sleeps)
    assert str(info.value) == bybit.RATE_LIMITED
    assert len(server.kline_calls()) == bybit.MAX_ATTEMPTS and pybit_sleeps == []
    assert len(sleeps) == 2 and all(0 < s <= 2.0 for s in sleeps)   # until the reset, through our sleep


def test_10006_reset_an_hour_ahead_is_reported_at_once(server, sleeps):
    reset = str(int(pd.Timestamp.now(tz="UTC").timestamp() * 1000) + 3_600_000)
    server.routes[KLINE] = lambda p: (200, body("error_10006.json"), {"X-Bapi-Limit-Reset-Timestamp": reset})
    with pytest.raises(SourceUnavailableError, match=r"rate-limiting requests .* until \d\d:\d\d:\d\d UTC"):
        fetch(query(), sleeps)
    assert len(server.kline_calls()) == 1 and sleeps == []


def test_reset_time_already_past_is_retried_at_once(server, sleeps):
    # pybit itself would call time.sleep(negative) here: "ValueError: sleep length must be non-negative"
    server.routes[KLINE] = lambda p: (200, body("error_10006.json"), {"X-Bapi-Limit-Reset-Timestamp": "1000"})
    with pytest.raises(SourceUnavailableError, match="rate-limiting"):
        fetch(query(), sleeps)
    assert len(server.kline_calls()) == bybit.MAX_ATTEMPTS and sleeps == []


def test_non_json_answer_is_reported(server):
    server.routes[KLINE] = lambda p: (200, body("maintenance.html"), {"Content-Type": "text/html"})
    with pytest.raises(SourceUnavailableError, match="not JSON"):
        fetch(query())


def test_malformed_body_without_result_is_reported(server):
    server.routes[KLINE] = lambda p: (200, body("kline_no_result.json"), {})
    with pytest.raises(SourceUnavailableError, match="no result list"):
        fetch(query())


def test_timeouts_are_retried_three_times_with_backoff(server, sleeps):
    server.routes[KLINE] = [requests.exceptions.ReadTimeout("Read timed out. (read timeout=10)")]
    with pytest.raises(SourceUnavailableError, match="Cannot reach Bybit"):
        fetch(query(), sleeps)
    assert len(server.kline_calls()) == bybit.MAX_ATTEMPTS == 3
    assert sleeps == list(bybit.BACKOFF_SECONDS)


def test_dns_failure_is_reported_as_no_network(server, sleeps):
    server.routes[INSTRUMENTS] = [requests.exceptions.ConnectionError("Failed to resolve 'api.bybit.com'")]
    with pytest.raises(SourceUnavailableError, match="no network"):
        fetch(query(), sleeps)


def test_server_error_then_success_recovers(server, sleeps):
    server.routes[KLINE] = [lambda p: (502, "<html>502 Bad Gateway</html>", {}),
                            lambda p: (200, body("kline_spot_BTCUSDT_60.json"), {})]
    frame = fetch(query(), sleeps)
    assert len(frame) == 24 and sleeps == [bybit.BACKOFF_SECONDS[0]]


def test_429_is_retried_then_reported(server, sleeps):
    server.routes[KLINE] = lambda p: (429, "", {})
    with pytest.raises(SourceUnavailableError, match="HTTP 429"):
        fetch(query(), sleeps)
    assert len(server.kline_calls()) == 3


# --- a misbehaving server on loopback: real sockets, real pybit, a total deadline ----------

@pytest.fixture
def chaos(monkeypatch):
    """pybit's shared client pointed at a ChaosServer that answers instruments and klines."""
    with ChaosServer() as chaos_server:
        chaos_server.route(INSTRUMENTS, Reply(body=body("instruments_spot_BTCUSDT.json")))
        chaos_server.route(KLINE, Reply(body=body("kline_spot_BTCUSDT_60.json")))
        client = bybit._client()
        monkeypatch.setattr(client, "endpoint", chaos_server.url)
        monkeypatch.setattr(client.client, "trust_env", False)
        monkeypatch.setattr(bybit, "_RATE_LIMITER", bybit.RequestRateLimiter())
        yield chaos_server


def timed(call):
    started = time.monotonic()
    try:
        call()
    except DataError as exc:
        return exc, time.monotonic() - started
    raise AssertionError("no DataError")


def test_chaos_slow_answer_within_the_deadline_is_served(chaos):
    chaos.route(KLINE, Reply(body=body("kline_spot_BTCUSDT_60.json"), delay=0.2))
    frame = load_candles("bybit", "BTCUSDT", "2024-03-01", "2024-03-02", "1h", use_cache=False, deadline=2)
    assert len(frame) == 24


@pytest.mark.parametrize("reply", [HOLD, Reply(body=body("kline_spot_BTCUSDT_60.json"), trickle=0.2)],
                         ids=["never-answers", "trickles-a-byte-at-a-time"])
def test_chaos_stalled_server_ends_at_the_deadline(chaos, reply):
    chaos.route(KLINE, reply)
    error, took = timed(lambda: load_candles("bybit", "BTCUSDT", "2024-03-01", "2024-03-02", "1h",
                                             use_cache=False, deadline=0.5))
    assert isinstance(error, SourceUnavailableError) and took < 3
    assert str(error).startswith("Cannot reach Bybit for BTCUSDT: no answer within 0.5 s")


def test_chaos_deadline_comes_from_the_environment(chaos, monkeypatch):
    monkeypatch.setenv(network.DEADLINE_ENV, "0.5")
    chaos.route(INSTRUMENTS, HOLD)
    error, took = timed(lambda: load_candles("bybit", "BTCUSDT", "2024-03-01", "2024-03-02", "1h"))
    assert "no answer within 0.5 s" in str(error) and took < 3


def test_chaos_rate_limit_reset_an_hour_ahead_does_not_sleep(chaos):
    reset = str(int(time.time() * 1000) + 3_600_000)
    chaos.route(KLINE, Reply(body=body("error_10006.json"), headers={"X-Bapi-Limit-Reset-Timestamp": reset}))
    error, took = timed(lambda: load_candles("bybit", "BTCUSDT", "2024-03-01", "2024-03-02", "1h",
                                             use_cache=False, deadline=5))
    assert isinstance(error, SourceUnavailableError) and "until" in str(error) and took < 2.5
    assert len(chaos.calls(KLINE)) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_chaos_server_errors_are_retried_then_unavailable(chaos, status, sleeps):
    chaos.route(KLINE, Reply(status, "<html>busy</html>", {"Content-Type": "text/html"}))
    with pytest.raises(SourceUnavailableError, match=f"HTTP {status}"):
        fetch(query(), sleeps)
    assert len(chaos.calls(KLINE)) == bybit.MAX_ATTEMPTS and sleeps == list(bybit.BACKOFF_SECONDS)


@pytest.mark.parametrize("reply, expected", [
    (Reply(403, body("forbidden_403.html"), {"Content-Type": "text/html"}), "HTTP 403"),
    (garbage(), "not JSON"),
    (Reply(raw=b"SSH-2.0-OpenSSH_9.6\r\n"), "Cannot reach Bybit for BTCUSDT"),
])
def test_chaos_refusals_and_garbage_are_reported_without_retrying(chaos, reply, expected, sleeps):
    chaos.route(KLINE, reply)
    with pytest.raises(SourceUnavailableError, match=expected):
        fetch(query(), sleeps)
    assert len(chaos.calls(KLINE)) == (bybit.MAX_ATTEMPTS if "reach" in expected else 1)


def test_chaos_connection_refused_is_no_network(chaos, sleeps, monkeypatch):
    closed = ChaosServer()          # bound, never started, then closed: the port refuses
    closed._server.server_close()
    monkeypatch.setattr(bybit._client(), "endpoint", closed.url)
    with pytest.raises(SourceUnavailableError, match="Cannot reach Bybit for BTCUSDT: no network"):
        fetch(query(), sleeps)


def test_chaos_cached_bars_are_served_with_a_notice_when_the_server_stalls(chaos):
    first = load_candles("bybit", "BTCUSDT", "2024-03-01", "2024-03-02", "1h")
    chaos.route(INSTRUMENTS, HOLD)
    took = time.monotonic()
    frame = load_candles("bybit", "BTCUSDT", "2024-03-01", "2024-03-03", "1h", deadline=0.5)
    took = time.monotonic() - took
    pd.testing.assert_frame_equal(frame, first, check_like=True, check_flags=False)
    notice = frame.attrs["notice"]
    assert notice.startswith("Offline: showing cached data fetched moments ago; could not fetch "
                             "2024-03-02 00:00 to 2024-03-03 00:00 UTC")
    # the deadline ends it either way: as the total deadline or as a socket timeout cut to the time left
    assert ("Cannot reach Bybit for BTCUSDT: no answer within 0.5 s" in notice
            or "Cannot reach Bybit for BTCUSDT: timed out" in notice) and took < 3
