"""Data layer: Yahoo Finance candles through yfinance (stocks, ETFs, indices, FX, crypto pairs).

Plain Python, no Streamlit. ``fetch_raw`` is the only step that touches the network (it
imports yfinance lazily); ``to_frame`` is pure and turns yfinance's frames (Title-case
columns, ``Date``/``Datetime`` index in the exchange's time zone, MultiIndex columns from
``yf.download``) into canonical candles.

Yahoo's intraday limits are checked before calling, because Yahoo answers a request
outside them with an empty frame that looks like an unknown symbol: 1m bars only for the
last 30 days and at most 7 days per request (longer ranges are split into 7-day chunks),
other sub-hour bars for the last 60 days, 1h (and 4h, resampled from 1h) for 730 days.

yfinance reports "no time zone found" (``YFTzMissingError``) both for an unknown symbol and
when its own time-zone lookup failed (no network: it swallows that error). So a symbol is
called unknown only when Yahoo itself answers "Not Found" for it; anything else is a
network or service problem. Each fetch runs under ``data.network``'s total deadline.
"""
from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Any, Callable, Iterator

import pandas as pd

from data import COLUMNS, CandleQuery, DataError, network
from data.network import NoDataError, SourceUnavailableError, SymbolNotFoundError
from store import data_dir

__all__ = ["DEFAULT_OPTIONS", "YAHOO_INTERVALS", "LOOKBACK", "MAX_REQUEST_SPAN",
           "request_windows", "fetch_raw", "to_frame", "yahoo_errors", "yahoo_ticker",
           "no_data_message", "unknown_symbol_message", "unreachable_message"]

# history(raise_errors=True) is the per-call way to get exceptions in yfinance 1.7 (the
# alternative, yf.config.debug.hide_exceptions, is process-wide); silence its deprecation note.
warnings.filterwarnings("ignore", message="'raise_errors' deprecated", category=DeprecationWarning)

DEFAULT_OPTIONS = {"adjusted": True}

#: App interval -> interval sent to Yahoo (4h is fetched as 1h and resampled).
YAHOO_INTERVALS = {"1m": "1m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "1h",
                   "4h": "1h", "1d": "1d", "1wk": "1wk", "1mo": "1mo"}
#: How far back Yahoo serves each intraday interval.
LOOKBACK = {"1m": pd.Timedelta(days=30), "5m": pd.Timedelta(days=60),
            "15m": pd.Timedelta(days=60), "30m": pd.Timedelta(days=60),
            "1h": pd.Timedelta(days=730), "4h": pd.Timedelta(days=730)}
#: Longest span Yahoo serves in one request (Yahoo says 8 days for 1m; 7 leaves a margin).
MAX_REQUEST_SPAN = {"1m": pd.Timedelta(days=7)}
#: What to pick instead when a range is older than an interval's lookback.
_COARSER = {"1m": "5m, 15m or 30m (last 60 days), 1h (last 730 days) or 1d (full history)",
            "5m": "1h (last 730 days) or 1d (full history)",
            "15m": "1h (last 730 days) or 1d (full history)",
            "30m": "1h (last 730 days) or 1d (full history)",
            "1h": "1d (full history)", "4h": "1d (full history)"}
_DAILY = ("1d", "1wk", "1mo")
_ALIASES = {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume"}

RATE_LIMITED = ("Yahoo is rate-limiting requests; wait a minute and retry "
                "(cached data, if any, is still shown)")
UNREACHABLE = "Cannot reach Yahoo Finance"
#: The chart endpoint yfinance asks (also for the time zone); asked directly to tell an
#: unknown symbol from a failed lookup.
CHART_URL = "https://query2.finance.yahoo.com/v8/finance/chart/"


def no_data_message(symbol: str) -> str:
    """Yahoo answered for the symbol but had no bars (not a claim that the symbol is unknown)."""
    return (f"No Yahoo Finance bars for {symbol} in this range (market closed, or before the "
            "symbol traded): widen or move the range.")


def unknown_symbol_message(symbol: str, reason: str = "") -> str:
    said = f" (Yahoo said: {reason})" if reason else ""
    return (f"Yahoo Finance does not know the symbol {symbol}{said}: check it on "
            "finance.yahoo.com (e.g. AAPL, ^VIX, BRK-B, EURUSD=X, BTC-USD).")


def unreachable_message(symbol: str, exc: BaseException) -> str:
    kind = type(exc).__name__
    why = "timed out" if "timeout" in kind.lower() or "timed out" in str(exc).lower() else "no network"
    return (f"{UNREACHABLE} for {symbol}: {why}, or Yahoo is not answering. Check the "
            "connection and retry (cached data, if any, is still shown).")


def request_windows(query: CandleQuery, now: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The ``[start, end)`` spans to request, oldest first; DataError if Yahoo cannot serve them.

    Only 1m is split (7-day chunks); the end is clipped to ``now`` for splitting so a
    future end does not create empty requests.
    """
    if query.interval not in YAHOO_INTERVALS:
        raise DataError(f"Yahoo has no {query.interval!r} bars; choose one of {', '.join(YAHOO_INTERVALS)}.")
    lookback = LOOKBACK.get(query.interval)
    if lookback is not None and query.start < now - lookback:
        earliest = now - lookback
        raise DataError(
            f"Yahoo keeps {query.interval} bars only for the last {lookback.days} days "
            f"(since {earliest:%Y-%m-%d %H:%M} UTC). Move the start after that, or pick "
            f"{_COARSER[query.interval]}.")
    span = MAX_REQUEST_SPAN.get(query.interval)
    if span is None:
        return [(query.start, query.end)]
    end = max(min(query.end, now), query.start + pd.Timedelta(minutes=1))
    edges = list(pd.date_range(query.start, end, freq=span)) + [end]
    windows = [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    return windows or [(query.start, query.end)]


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of an HTTPError (curl_cffi's or requests', which yfinance passes on
    when it runs on requests), else None."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) and status >= 100 else None   # curl says 0 for DNS


def _mapped(exc: BaseException, symbol: str) -> DataError | None:
    """The DataError for a yfinance/curl failure, or None when it is not one we know."""
    import yfinance.exceptions as yfe

    if isinstance(exc, yfe.YFRateLimitError):
        return SourceUnavailableError(RATE_LIMITED)
    if isinstance(exc, yfe.YFDataException):  # "Yahoo! Finance is currently down"
        return SourceUnavailableError(f"Yahoo Finance is not answering properly for {symbol} "
                                      f"({exc}); retry later.")
    status = _http_status(exc)
    if status is not None:
        return SourceUnavailableError(f"Yahoo Finance answered HTTP {status} for {symbol}; "
                                      "retry later.")
    if isinstance(exc, ValueError) and "json" in type(exc).__name__.lower() + str(exc).lower():
        return SourceUnavailableError(f"Yahoo sent an unreadable answer for {symbol} (not JSON); "
                                      "retry later.")
    if isinstance(exc, OSError):  # curl_cffi's and requests' DNS, connection, timeout errors
        return SourceUnavailableError(unreachable_message(symbol, exc))
    if isinstance(exc, yfe.YFException):
        return DataError(f"Yahoo refused the request for {symbol}: {exc}")
    return None


def _raise_if_not_found(symbol: str) -> None:
    """Ask Yahoo's chart API about ``symbol``: SymbolNotFoundError if Yahoo answers "Not
    Found", SourceUnavailableError for an unreadable answer, nothing if the symbol exists.

    yfinance's failed lookup may stay in its in-memory response cache; it is cleared so the
    next attempt asks again.
    """
    from yfinance.data import YfData

    clear = getattr(YfData.cache_get, "cache_clear", None)   # absent when a test replaced it
    if clear is not None:
        clear()
    response = YfData().get(url=CHART_URL + symbol, params={"range": "1d", "interval": "1d"},
                            timeout=network.socket_timeout(10))
    try:
        error = (response.json().get("chart") or {}).get("error") or {}
    except (ValueError, AttributeError):
        raise SourceUnavailableError(f"Yahoo sent an unreadable answer for {symbol} (HTTP "
                                     f"{getattr(response, 'status_code', '?')}); retry later.") from None
    if error.get("code") == "Not Found":
        raise SymbolNotFoundError(unknown_symbol_message(symbol, str(error.get("description") or "")))


@contextlib.contextmanager
def yahoo_errors(symbol: str) -> Iterator[None]:
    """Turn yfinance/curl failures into DataErrors an analyst can act on: rate limits and
    network failures into SourceUnavailableError; only Yahoo's explicit "Not Found" into
    SymbolNotFoundError (Yahoo is asked when yfinance says the ticker is missing)."""
    import yfinance.exceptions as yfe

    try:
        yield
    except DataError:
        raise
    except Exception as exc:
        if isinstance(exc, yfe.YFTickerMissingError) or _http_status(exc) == 404:
            try:
                _raise_if_not_found(symbol)
            except DataError:
                raise
            except Exception as probe_exc:
                raise (_mapped(probe_exc, symbol) or SourceUnavailableError(
                    unreachable_message(symbol, probe_exc))) from exc
            if isinstance(exc, yfe.YFTickerMissingError):   # the symbol exists after all
                raise SourceUnavailableError(f"Yahoo Finance did not give the time zone of "
                                             f"{symbol}; retry in a minute.") from exc
        mapped = _mapped(exc, symbol)
        if mapped is None:
            raise
        raise mapped from exc


_cache_lock = threading.Lock()
_cache_location: list[str] = []


def yahoo_ticker(symbol: str) -> Any:
    """A ``yf.Ticker`` on yfinance's own session, its time-zone/cookie cache in the data folder."""
    import yfinance as yf

    location = str(data_dir() / "yfinance")
    with _cache_lock:
        if _cache_location != [location]:
            yf.set_tz_cache_location(location)
            _cache_location[:] = [location]
    return yf.Ticker(symbol)


def _history_args(window: tuple[pd.Timestamp, pd.Timestamp], interval: str) -> dict[str, Any]:
    """Daily bars by exchange date (as Yahoo reads dates); intraday by exact epoch seconds."""
    start, end = window
    if interval in _DAILY:
        return {"start": start.floor("D").strftime("%Y-%m-%d"), "end": end.ceil("D").strftime("%Y-%m-%d")}
    return {"start": int(start.timestamp()), "end": int(end.timestamp())}


def fetch_raw(query: CandleQuery, progress: Callable[[float, str], None] | None = None, *,
              now: pd.Timestamp | None = None, deadline: float | None = None) -> dict[str, list]:
    """Ask Yahoo (through yfinance and its own session) for the bars of ``query``.

    Returns ``{"frames": [one yfinance frame per request], "reasons": [Yahoo's explanation
    for each empty answer]}``. Raises SourceUnavailableError for a rate limit, no network or
    no answer within ``deadline`` seconds in all (see ``data.network``), SymbolNotFoundError
    when Yahoo says it does not know the symbol.
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    windows = request_windows(query, now)
    return network.run_with_deadline(lambda step: _fetch_windows(query, windows, step),
                                     f"Yahoo Finance for {query.symbol}", seconds=deadline,
                                     progress=progress)


def _fetch_windows(query: CandleQuery, windows: list[tuple[pd.Timestamp, pd.Timestamp]],
                   progress: Callable[[float, str], None] | None) -> dict[str, list]:
    import yfinance.exceptions as yfe

    adjusted = bool(query.option("adjusted", DEFAULT_OPTIONS["adjusted"]))
    ticker = yahoo_ticker(query.symbol)
    frames, reasons = [], []
    for number, window in enumerate(windows, start=1):
        with yahoo_errors(query.symbol):
            try:
                # raise_errors: otherwise a network failure comes back as the same empty
                # frame as an unknown symbol, and cached data could not be offered.
                frames.append(ticker.history(
                    **_history_args(window, query.interval), interval=YAHOO_INTERVALS[query.interval],
                    auto_adjust=adjusted, actions=False, timeout=network.socket_timeout(10),
                    raise_errors=True))
            except yfe.YFPricesMissingError as exc:
                if exc.yahoo_reason:
                    reasons.append(exc.yahoo_reason)
        if progress is not None:
            progress(number / len(windows), f"Yahoo {query.symbol}: request {number} of {len(windows)}")
    return {"frames": frames, "reasons": reasons}


def _flatten_columns(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """``yf.download`` columns are (Price, Ticker) or (Ticker, Price): keep this symbol's."""
    if not isinstance(frame.columns, pd.MultiIndex):
        return frame
    price_level = next((level for level in range(frame.columns.nlevels)
                        if "close" in {str(v).lower() for v in frame.columns.get_level_values(level)}), 0)
    ticker_level = 1 - price_level
    tickers = list(dict.fromkeys(frame.columns.get_level_values(ticker_level)))
    pick = symbol.upper() if symbol.upper() in tickers else (tickers[0] if len(tickers) == 1 else None)
    if pick is None:
        raise DataError(f"Yahoo's answer holds {', '.join(map(str, tickers))} but not {symbol}.")
    return frame.xs(pick, axis=1, level=ticker_level)


def _standardize(frame: pd.DataFrame, interval: str, symbol: str) -> pd.DataFrame:
    """One yfinance frame -> canonical columns on a UTC index.

    Daily, weekly and monthly bars are labelled with their exchange-local date at 00:00 UTC,
    so a Tokyo or New York session keeps its own date instead of shifting to the day before.
    """
    frame = _flatten_columns(frame, symbol)
    frame = frame.rename(columns=lambda c: _ALIASES.get(str(c).lower(), str(c)))
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"Yahoo's answer lacks {', '.join(missing)}; it may have changed format.")
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataError("Yahoo's answer has no time index; it may have changed format.")
    index = frame.index
    if interval in _DAILY:
        local = index.tz_localize(None) if index.tz is not None else index
        index = local.normalize().tz_localize("UTC")
    else:
        index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    out = frame[COLUMNS].astype("float64")
    out.index = index.as_unit("ns").rename("timestamp")
    return out.dropna(how="all", subset=["open", "high", "low", "close"])


def _resample_4h(frame: pd.DataFrame) -> pd.DataFrame:
    """Hourly bars -> 4-hour bars on UTC boundaries (00, 04, ... 20), empty bins dropped."""
    bins = frame.resample("4h", label="left", closed="left", origin="epoch")
    out = bins.agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    return out.dropna(subset=["open", "close"])


def to_frame(raw: dict[str, list], query: CandleQuery) -> pd.DataFrame:
    """Canonical candles from ``fetch_raw``'s answer, limited to ``[query.start, query.end)``.

    Raises NoDataError when no bar is left (Yahoo's own reason is appended when it gave one).
    """
    parts = [_standardize(f, query.interval, query.symbol) for f in raw["frames"]
             if f is not None and not f.empty]
    if parts:
        frame = pd.concat(parts)
        frame = frame[~frame.index.duplicated(keep="last")].sort_index()
        if query.interval == "4h":
            frame = _resample_4h(frame)
        frame = frame[(frame.index >= query.start) & (frame.index < query.end)]
    if not parts or frame.empty:
        reason = f" Yahoo said: {raw['reasons'][-1]}" if raw.get("reasons") else ""
        raise NoDataError(no_data_message(query.symbol) + reason)
    frame.attrs = {"symbol": query.symbol, "source": "yahoo", "interval": query.interval}
    return frame
