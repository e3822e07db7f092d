"""Data layer: Bybit v5 candles through pybit (spot, linear and inverse markets).

Plain Python, no Streamlit. ``fetch_raw`` is the only step that touches the network (it
imports pybit lazily): it checks the symbol once, then asks for klines in windows of at
most 1000 bars with both ``start`` and ``end`` set, newest window first. ``to_frame`` is
pure: it turns the decoded JSON pages (rows newest first, every field a string, both ends
inclusive) into canonical candles.

Every failure becomes a DataError that says what to do; transient ones (no network, rate
limits, server errors) are ``SourceUnavailableError`` so the disk cache can step in.
Timeouts, HTTP 429, 5xx and the 10006 rate limit are retried here (3 attempts in all), not
by pybit: pybit sleeps until Bybit's reset time, however far ahead, while every sleep here
is cut short by the fetch's total deadline (``data.network``). Requests stay under Bybit's
600 per 5 seconds per IP through one limiter per process.
"""
from __future__ import annotations

import collections
import functools
import threading
import time
from typing import Any, Callable

import pandas as pd

from data import COLUMNS, CandleQuery, DataError, network
from data.network import NoDataError, SourceUnavailableError

__all__ = ["DEFAULT_OPTIONS", "CATEGORIES", "BYBIT_INTERVALS", "PAGE_LIMIT", "MAX_ATTEMPTS",
           "RequestRateLimiter", "kline_windows", "fetch_raw", "to_frame"]

DEFAULT_OPTIONS = {"category": "spot"}
CATEGORIES = ("spot", "linear", "inverse")
#: App interval -> Bybit kline interval (minutes, or D/W/M).
BYBIT_INTERVALS = {"1m": "1", "5m": "5", "15m": "15", "30m": "30", "1h": "60", "4h": "240",
                   "1d": "D", "1wk": "W", "1mo": "M"}
#: Bar length used to size request windows (a month is sized at 30 days: a window still
#: holds fewer than 1000 monthly bars).
_BAR_MS = {"1": 60_000, "5": 300_000, "15": 900_000, "30": 1_800_000, "60": 3_600_000,
           "240": 14_400_000, "D": 86_400_000, "W": 604_800_000, "M": 2_592_000_000}
PAGE_LIMIT = 1000
MAX_ATTEMPTS = 3
BACKOFF_SECONDS = (0.5, 1.5)
_KLINE_FIELDS = ["start", "open", "high", "low", "close", "volume", "turnover"]

RATE_LIMITED = ("Bybit is rate-limiting requests (too many visits); wait a minute and retry "
                "(cached data, if any, is still shown).")
#: pybit's wait when Bybit gives no reset time.
DEFAULT_RESET_WAIT = 2.0
RESET_HEADER = "X-Bapi-Limit-Reset-Timestamp"


class RequestRateLimiter:
    """Sliding-window limiter: at most ``max_requests`` calls per ``per_seconds``.

    Bybit bans an IP for about 10 minutes after 600 requests in 5 seconds, so one limiter
    is shared by every thread of the process. ``clock`` is injectable for tests.
    """

    def __init__(self, max_requests: int = 600, per_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_requests = max_requests
        self.per_seconds = per_seconds
        self.clock = clock
        self._sent: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a slot now and return 0, or return the seconds to wait before asking again."""
        with self._lock:
            now = self.clock()
            while self._sent and self._sent[0] <= now - self.per_seconds:
                self._sent.popleft()
            if len(self._sent) < self.max_requests:
                self._sent.append(now)
                return 0.0
            return self._sent[0] + self.per_seconds - now

    def acquire(self, sleep: Callable[[float], None]) -> None:
        """Block (through ``sleep``) until a slot is free, then take it."""
        while (wait := self.reserve()) > 0:
            sleep(wait)


_RATE_LIMITER = RequestRateLimiter()


@functools.lru_cache(maxsize=1)
def _client() -> Any:
    """One shared pybit client: each new one would add another log handler to pybit's logger.

    ``retry_codes={-1}`` (an empty set means pybit's defaults) and one attempt: pybit then
    retries nothing, in particular it does not sleep until a 10006 reset time; ``_call``
    retries instead, within the deadline. The adapter cuts each socket timeout to the
    deadline, so a worker given up on ends soon too.
    """
    from pybit.unified_trading import HTTP

    client = HTTP(testnet=False, timeout=10, max_retries=1, retry_codes={-1})
    adapter = network.DeadlineAdapter()
    client.client.mount("https://", adapter)
    client.client.mount("http://", adapter)
    return client


def kline_windows(start_ms: int, end_ms: int, bar_ms: int, limit: int = PAGE_LIMIT
                  ) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` millisecond windows covering ``[start_ms, end_ms)``,
    newest first, none holding more than ``limit`` bars; consecutive windows do not overlap."""
    windows = []
    last = end_ms - 1
    while last >= start_ms:
        first = max(start_ms, last - (limit - 1) * bar_ms)
        windows.append((first, last))
        last = first - 1
    return windows


def _failed_request(exc: Exception) -> tuple[DataError, bool]:
    """Map pybit's FailedRequestError to (error to raise, worth retrying)."""
    status = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", "") or "")
    if "Retries exceeded" in message:
        return SourceUnavailableError(RATE_LIMITED), False
    if status == 403:
        return SourceUnavailableError(
            "Bybit refused access (HTTP 403): too many requests from this IP (the ban lasts about "
            "10 minutes) or Bybit does not serve your region (e.g. the USA). Wait 10 minutes and "
            "retry, or use the yahoo source (e.g. BTC-USD)."), False
    if status == 429:
        return SourceUnavailableError(
            "Bybit is overloaded (HTTP 429, system protection); wait a minute and retry."), True
    if isinstance(status, int) and status >= 500:
        return SourceUnavailableError(
            f"Bybit had a server error (HTTP {status}); retry in a few minutes."), True
    if status == 409:
        return SourceUnavailableError(
            "Bybit sent a page that is not JSON (maintenance, or a proxy in the way); retry later."), False
    return DataError(f"Bybit refused the request (HTTP {status}): {message}"), False


def _reset_wait(exc: Exception) -> float:
    """Seconds until Bybit's rate-limit reset (header in epoch ms), as pybit reads it."""
    headers = getattr(exc, "resp_headers", None) or {}
    try:
        reset_ms = float(headers.get(RESET_HEADER))
    except (TypeError, ValueError):
        return DEFAULT_RESET_WAIT
    return max(reset_ms / 1000 - time.time(), 0.0)


def _rate_limited(wait: float) -> SourceUnavailableError:
    """The rate-limit error, saying when the limit resets if that is past the deadline."""
    if wait <= network.remaining():
        return SourceUnavailableError(RATE_LIMITED)
    reset = pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=wait)
    return SourceUnavailableError(
        f"Bybit is rate-limiting requests (too many visits) until {reset:%H:%M:%S} UTC, "
        f"{wait / 60:.0f} minute(s) from now, longer than this fetch may wait; retry then "
        "(cached data, if any, is still shown).")


def _invalid_request(exc: Exception, params: dict[str, Any]) -> DataError:
    """Map pybit's InvalidRequestError (a non-zero retCode) to a DataError."""
    code = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", "") or "")
    if code in (10006, 10018):
        return _rate_limited(_reset_wait(exc))
    if code == 10001 and "symbol" in message.lower():
        return DataError(
            f"Bybit does not list {params.get('symbol')} in the {params.get('category')} category: "
            "check the symbol (e.g. BTCUSDT) or pick another category (spot, linear, inverse).")
    if code == 10001 and "period" in message.lower():
        return DataError(f"Bybit rejected the interval {params.get('interval')!r}; "
                         f"pick one of {', '.join(BYBIT_INTERVALS)}.")
    return DataError(f"Bybit rejected the request: {message} (code {code}).")


def _call(method: Callable[..., dict], sleep: Callable[[float], None], **params: Any) -> dict:
    """One pybit call with the rate limiter, bounded retries and DataErrors for failures.

    Every wait (limiter, backoff, rate-limit reset) is made only if it ends before the
    deadline; otherwise the error is raised at once.
    """
    import requests
    from pybit.exceptions import FailedRequestError, InvalidRequestError

    attempt = 1
    while True:
        while (wait := _RATE_LIMITER.reserve()) > 0:
            network.sleep_within(wait, sleep, SourceUnavailableError(
                "This app is at Bybit's limit of 600 requests per 5 s; retry in a few seconds."))
        try:
            return method(**params)
        except requests.exceptions.RequestException as exc:
            why = "timed out" if isinstance(exc, requests.exceptions.Timeout) else "no network"
            error, retry, cause = SourceUnavailableError(
                f"Cannot reach Bybit for {params.get('symbol', 'announcements')}: {why} "
                f"after {attempt} attempt(s); check the connection and "
                "retry (cached data, if any, is still shown)."), True, exc
            wait = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS)) - 1]
        except FailedRequestError as exc:
            (error, retry), cause = _failed_request(exc), exc
            wait = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS)) - 1]
        except InvalidRequestError as exc:
            if getattr(exc, "status_code", None) != 10006:
                raise _invalid_request(exc, params) from exc
            wait = _reset_wait(exc)
            error, retry, cause = _rate_limited(wait), True, exc
        if not retry or attempt == MAX_ATTEMPTS:
            raise error from cause
        network.sleep_within(wait, sleep, error)
        attempt += 1


def _result_list(page: Any) -> list:
    """``page["result"]["list"]``, or SourceUnavailableError for a malformed answer."""
    try:
        rows = page["result"]["list"]
    except (KeyError, TypeError) as exc:
        raise SourceUnavailableError(
            "Bybit sent an unexpected answer (no result list); retry later.") from exc
    if not isinstance(rows, list):
        raise SourceUnavailableError("Bybit sent an unexpected answer (result list is not a list); retry later.")
    return rows


def _category(query: CandleQuery) -> str:
    category = str(query.option("category", DEFAULT_OPTIONS["category"])).lower()
    if category not in CATEGORIES:
        raise DataError(f"Unknown Bybit category {category!r}; choose spot, linear or inverse.")
    return category


def fetch_raw(query: CandleQuery, progress: Callable[[float, str], None] | None = None, *,
              sleep: Callable[[float], None] = time.sleep,
              now: pd.Timestamp | None = None, deadline: float | None = None) -> dict[str, Any]:
    """Ask Bybit for the klines of ``query``.

    Returns ``{"symbol", "category", "interval", "pages": [decoded JSON of each kline
    call]}``. Windows walk backwards from the end and stop early at an empty window once
    bars were seen (the market did not exist before). The whole fetch, waits included,
    ends within ``deadline`` seconds (see ``data.network``). ``sleep`` is injectable for tests.
    """
    if query.interval not in BYBIT_INTERVALS:
        raise DataError(f"Bybit has no {query.interval!r} bars; choose one of {', '.join(BYBIT_INTERVALS)}.")
    category = _category(query)
    return network.run_with_deadline(lambda step: _fetch_pages(query, category, step, sleep, now),
                                     f"Bybit for {query.symbol.upper()}", seconds=deadline,
                                     progress=progress)


def _fetch_pages(query: CandleQuery, category: str, progress: Callable[[float, str], None] | None,
                 sleep: Callable[[float], None], now: pd.Timestamp | None) -> dict[str, Any]:
    symbol = query.symbol.upper()
    interval = BYBIT_INTERVALS[query.interval]
    client = _client()

    info = _call(client.get_instruments_info, sleep, category=category, symbol=symbol)
    if not _result_list(info):
        raise DataError(
            f"Bybit has no {category} market {symbol!r}: check the symbol and category "
            "(spot or linear: e.g. BTCUSDT; inverse: e.g. BTCUSD).")

    now = pd.Timestamp.now(tz="UTC") if now is None else now
    bar_ms = _BAR_MS[interval]
    end_ms = int(min(query.end, now + pd.Timedelta(milliseconds=bar_ms)).timestamp() * 1000)
    windows = kline_windows(int(query.start.timestamp() * 1000), end_ms, bar_ms)
    pages: list[dict] = []
    seen_bars = False
    for number, (first, last) in enumerate(windows, start=1):
        page = _call(client.get_kline, sleep, category=category, symbol=symbol, interval=interval,
                     start=first, end=last, limit=PAGE_LIMIT)
        rows = _result_list(page)
        pages.append(page)
        if progress is not None:
            progress(number / len(windows), f"Bybit {symbol}: page {number} of {len(windows)}")
        if not rows and seen_bars:
            break
        seen_bars = seen_bars or bool(rows)
    return {"symbol": symbol, "category": category, "interval": interval, "pages": pages}


def to_frame(raw: dict[str, Any], query: CandleQuery) -> pd.DataFrame:
    """Canonical candles from ``fetch_raw``'s pages: strings to floats, boundary duplicates
    dropped, sorted ascending, limited to ``[query.start, query.end)``.

    Raises NoDataError when no bar is left, SourceUnavailableError for a malformed page.
    """
    rows = [row for page in raw["pages"] for row in _result_list(page)]
    if rows:
        try:
            table = pd.DataFrame([row[:7] for row in rows], columns=_KLINE_FIELDS)
            index = pd.to_datetime(table["start"].astype("int64"), unit="ms", utc=True)
            frame = table[COLUMNS].astype("float64").set_index(pd.DatetimeIndex(index, name="timestamp"))
        except (ValueError, TypeError) as exc:
            raise SourceUnavailableError(f"Bybit sent klines that are not numbers ({exc}); retry later.") from exc
        frame.index = frame.index.as_unit("ns")
        frame = frame[~frame.index.duplicated(keep="first")].sort_index()
        frame = frame[(frame.index >= query.start) & (frame.index < query.end)]
    if not rows or frame.empty:
        raise NoDataError(
            f"No Bybit data for {raw.get('symbol', query.symbol)} ({raw.get('category', '')}) in "
            "this range: the market may have opened later; move or widen the range.")
    frame.attrs = {"symbol": raw.get("symbol", query.symbol), "source": "bybit", "interval": query.interval}
    return frame
