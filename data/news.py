"""Data layer: headline sources ("demo", "yahoo", "bybit", "csv") in one shape.

Plain Python, no Streamlit. ``load_headlines`` returns a DataFrame with columns
``timestamp`` (tz-aware UTC), ``headline``, ``source``, ``url`` (``""`` when unknown), plus
``label`` where the source knows it (demo, or a CSV with a ``label`` column). Rows are
sorted by time, oldest first, on a fresh RangeIndex.

Headline text is untrusted: control and format characters are removed, whitespace is
collapsed, the text is capped at ``MAX_HEADLINE_CHARS``, and links other than http(s)
are dropped. Nothing here ever evaluates or follows headline text.

Each network source is split the OpenBB way: a fetch function (the only step that touches
the network, importing its client lazily) and a pure ``*_to_frame`` function tested on
recorded answers.
"""
from __future__ import annotations

import io
import re
import unicodedata
from typing import Any

import numpy as np
import pandas as pd

from data import DataError, check_symbol, network, parse_time_range
from data.csv import EPOCH_FIRST, epoch_ns_per_unit, time_like

__all__ = ["HEADLINE_COLUMNS", "MAX_HEADLINE_CHARS", "NEWS_SOURCES", "load_headlines",
           "clean_text", "validate_headlines", "fetch_yahoo_news", "yahoo_news_to_frame",
           "fetch_bybit_announcements", "bybit_announcements_to_frame", "read_headlines_csv"]

HEADLINE_COLUMNS = ["timestamp", "headline", "source", "url"]
MAX_HEADLINE_CHARS = 500
NEWS_SOURCES = ("demo", "yahoo", "bybit", "csv")
#: Bybit's quote currencies, stripped from a pair to find the coin its news mention.
_QUOTES = ("USDT", "USDC", "USD", "PERP", "BTC", "EUR")
#: CSV header aliases (lower-case) for the canonical columns.
_CSV_ALIASES = {"timestamp": ("timestamp", "time", "datetime", "date", "published", "pubdate"),
                "headline": ("headline", "title", "text"),
                "source": ("source", "provider", "publisher"),
                "url": ("url", "link"),
                "label": ("label",)}
#: Headline times outside ``EPOCH_FIRST`` (1971: small numbers are not epoch times) to this
#: many years from now are typos, epoch numbers in the wrong unit or row numbers.
_YEARS_AHEAD = 5
HEADER_CHARS = 4096   # a headline file's header line is at most this long
#: The times pandas holds in nanoseconds: a source's date outside them is dropped.
_NS_FIRST, _NS_LAST = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")


def clean_text(value: Any, max_chars: int = MAX_HEADLINE_CHARS) -> str:
    """Untrusted text made safe to show and embed: one line, printable, at most ``max_chars``.

    Control (Cc) and format (Cf: zero-width, bidi overrides) characters are removed because
    they can hide or reorder what an analyst reads; the text is never interpreted.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = unicodedata.normalize("NFC", str(value))
    text = "".join(" " if ch in "\t\n\r\v\f" else ch for ch in text
                   if ch in "\t\n\r\v\f" or unicodedata.category(ch) not in ("Cc", "Cf"))
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return text


def _clean_url(value: Any) -> str:
    """Keep only http(s) links, so a headline can never carry a ``javascript:`` link."""
    url = clean_text(value, max_chars=2000)
    return url if re.match(r"^https?://", url, flags=re.IGNORECASE) else ""


def validate_headlines(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` in the canonical headline shape, or raise DataError.

    Cleans text and links, drops rows with an empty headline and exact duplicates
    (same time and text), sorts by time. ``timestamp`` must already be UTC datetimes.
    Columns other than the canonical ones and ``label`` are kept as they are.
    """
    missing = [c for c in ("timestamp", "headline") if c not in frame.columns]
    if missing:
        raise DataError(f"Headlines lack the column(s) {', '.join(missing)}; "
                        f"expected {', '.join(HEADLINE_COLUMNS)}.")
    out = frame.copy()
    times = pd.to_datetime(out["timestamp"], utc=True, errors="coerce")
    # A source's far-future date (9999-12-31) is dropped like a missing one, not a crash.
    out["timestamp"] = times.where((times >= _NS_FIRST) & (times <= _NS_LAST)).dt.as_unit("ns")
    out["headline"] = [clean_text(v) for v in out["headline"]]
    out["source"] = [clean_text(v, 80) for v in out["source"]] if "source" in out else ""
    out["url"] = [_clean_url(v) for v in out["url"]] if "url" in out else ""
    if "label" in out:
        out["label"] = [clean_text(v, 40).lower() for v in out["label"]]
    out = out[(out["headline"] != "") & out["timestamp"].notna()]
    out = out.drop_duplicates(subset=["timestamp", "headline"], keep="first")
    out = out.sort_values("timestamp", kind="stable").reset_index(drop=True)
    extra = [c for c in out.columns if c not in HEADLINE_COLUMNS]
    return out[HEADLINE_COLUMNS + extra]


def _empty_headlines() -> pd.DataFrame:
    return pd.DataFrame({"timestamp": pd.Series([], dtype="datetime64[ns, UTC]"),
                         "headline": pd.Series([], dtype="str"),
                         "source": pd.Series([], dtype="str"),
                         "url": pd.Series([], dtype="str")})


def _parse_timestamps(values: pd.Series) -> pd.Series:
    """UTC timestamps from ISO strings (naive = UTC) or epoch numbers, each number's unit (s,
    ms, us or ns) told by its size as ``data.csv`` documents, so one millisecond value cannot
    shift the seconds around it.

    Raises DataError naming the first cell that cannot be read, is a negative epoch number or
    falls outside ``EPOCH_FIRST`` to ``_YEARS_AHEAD`` years from now, so the analyst can fix it.
    """
    text = values.astype("str").str.strip()
    number = pd.to_numeric(text, errors="coerce").astype("float64").to_numpy()
    is_number = np.isfinite(number)   # "inf" and "nan" are read (and refused) as text
    size = np.abs(number)
    nanos = number * epoch_ns_per_unit(size)
    words = pd.to_datetime(time_like(text).where(~is_number), utc=True, errors="coerce", format="mixed")
    last = pd.Timestamp.now(tz="UTC").normalize() + pd.DateOffset(years=_YEARS_AHEAD)
    plausible = np.where(is_number, (nanos >= EPOCH_FIRST.value) & (nanos < last.value),
                         ((words >= EPOCH_FIRST) & (words < last)).to_numpy())
    if not plausible.all():
        row = int(np.flatnonzero(~plausible)[0])
        cell = f"timestamp {clean_text(values.iloc[row], 80)!r} in data row {row + 1}"
        if is_number[row] and number[row] < 0:
            raise DataError(f"The {cell} is a negative epoch number: epoch times count up from "
                            "1970-01-01, so give a positive one or ISO 8601 like 2024-01-31 14:05.")
        if is_number[row] or pd.notna(words.iloc[row]):
            fix = ("give epoch seconds, ms, us or ns since 1970 (told apart by size)"
                   if is_number[row] else "correct the date")
            raise DataError(f"The {cell} is not a time between {EPOCH_FIRST:%Y-%m-%d} and "
                            f"{last:%Y-%m-%d}: {fix}.")
        raise DataError(f"Cannot read the {cell}: use ISO 8601 like 2024-01-31 14:05 (UTC unless "
                        "it has an offset) or epoch seconds.")
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    parsed[is_number] = pd.to_datetime(nanos[is_number].astype("int64"), unit="ns", utc=True)
    parsed[~is_number] = words[~is_number].dt.as_unit("ns")
    return parsed


# ---- demo ------------------------------------------------------------------------------

def _demo_headlines(symbol: str, start: pd.Timestamp | None, end: pd.Timestamp | None,
                    seed: int) -> pd.DataFrame:
    from data.demo import demo_market

    kwargs: dict[str, Any] = {"seed": seed, "symbol": symbol or "DEMO"}
    if start is not None:
        kwargs.update(start=start, end=end)
    return demo_market(**kwargs).headlines


# ---- yahoo -----------------------------------------------------------------------------

def fetch_yahoo_news(symbol: str, limit: int, deadline: float | None = None) -> list:
    """Raw ``Ticker(symbol).get_news(count=limit)`` list, within the network deadline.
    Raises DataError on any failure."""
    def ask(_progress: Any) -> list:
        import yfinance as yf
        return yf.Ticker(symbol).get_news(count=limit)

    try:
        items = network.run_with_deadline(ask, f"Yahoo Finance news for {symbol}", seconds=deadline)
    except DataError:
        raise
    except Exception as exc:  # network client: curl_cffi OSError, YFRateLimitError, ...
        from data.yahoo import unreachable_message
        raise DataError(unreachable_message(f"{symbol} news", exc)) from exc
    return items


def yahoo_news_to_frame(items: Any, symbol: str = "") -> pd.DataFrame:
    """Headlines from yfinance's news list (items nested under ``content``; pure).

    Items without a title or a readable ``pubDate`` are skipped; the link is
    ``clickThroughUrl.url``, else ``canonicalUrl.url``; the provider's ``displayName`` is
    the source.
    """
    if not isinstance(items, list):
        raise DataError(f"Yahoo answered news for {symbol!r} in an unexpected form "
                        f"({type(items).__name__}); try again later.")
    rows = []
    for item in items:
        content = item.get("content") if isinstance(item, dict) else None
        if not isinstance(content, dict) or not content.get("title"):
            continue
        when = pd.to_datetime(content.get("pubDate") or content.get("displayTime"),
                              utc=True, errors="coerce")
        if pd.isna(when):
            continue
        link = (content.get("clickThroughUrl") or {}).get("url") or \
            (content.get("canonicalUrl") or {}).get("url") or ""
        provider = (content.get("provider") or {}).get("displayName") or "Yahoo Finance"
        rows.append({"timestamp": when, "headline": content["title"], "source": provider,
                     "url": link})
    return validate_headlines(pd.DataFrame(rows)) if rows else _empty_headlines()


# ---- bybit -----------------------------------------------------------------------------

def fetch_bybit_announcements(limit: int, page_size: int = 100,
                              deadline: float | None = None) -> list[dict]:
    """Up to ``limit`` newest announcements (``get_announcement(locale="en-US")``, paged).

    Raises DataError for network errors, a non-zero ``retCode`` or a malformed answer.
    """
    try:
        items = network.run_with_deadline(lambda _: _announcement_pages(limit, page_size),
                                          "Bybit's announcements", seconds=deadline)
    except DataError:
        raise
    except Exception as exc:  # pybit errors, requests exceptions
        import requests
        why = "no answer in time" if isinstance(exc, requests.exceptions.Timeout) else (
            "no network" if isinstance(exc, (requests.exceptions.ConnectionError, OSError)) else "Bybit refused")
        raise DataError(f"Cannot reach Bybit for its announcements: {why}. Check the connection and try "
                        "again in a minute.") from exc
    return items[:limit]


def _announcement_pages(limit: int, page_size: int) -> list[dict]:
    from pybit.unified_trading import HTTP

    # retry_codes={-1}: pybit would otherwise sleep until a rate-limit reset, however far ahead
    session = HTTP(testnet=False, timeout=10, max_retries=1, retry_codes={-1})
    items: list[dict] = []
    page = 1
    while len(items) < limit:
        answer = session.get_announcement(locale="en-US", page=page,
                                          limit=min(page_size, limit - len(items)))
        result = answer.get("result") if isinstance(answer, dict) else None
        batch = result.get("list") if isinstance(result, dict) else None
        if not isinstance(batch, list):
            raise DataError("Bybit answered announcements in an unexpected form; try again later.")
        items.extend(batch)
        if not batch or len(items) >= int(result.get("total") or 0):
            break
        page += 1
    return items


def _coin_of(symbol: str) -> str:
    coin = symbol.upper().replace("/", "").replace("-", "")
    for quote in _QUOTES:
        if coin.endswith(quote) and len(coin) > len(quote):
            return coin[: -len(quote)]
    return coin


def bybit_announcements_to_frame(items: Any, symbol: str = "") -> pd.DataFrame:
    """Headlines from Bybit announcement rows (pure).

    Title is the headline, ``type.title`` the source, ``publishTime`` (else
    ``dateTimestamp``; JSON numbers in ms) the time. Announcements are exchange-wide: with
    a ``symbol`` only those naming its coin (``BTCUSDT`` -> ``BTC``) as a word in the title or
    tags are kept; with no symbol all are.
    """
    if not isinstance(items, list):
        raise DataError("Bybit announcements came in an unexpected form; try again later.")
    coin = _coin_of(symbol) if symbol else ""
    rows = []
    for item in items:
        if not isinstance(item, dict) or not item.get("title"):
            continue
        millis = pd.to_numeric(item.get("publishTime") or item.get("dateTimestamp"),
                               errors="coerce")
        if pd.isna(millis) or not 0 < millis < 1e14:   # missing, or not a time since 1970 in ms
            continue
        words = " ".join([str(item["title"])] + [str(t) for t in item.get("tags") or []])
        if coin and not re.search(rf"(?<![A-Z0-9]){re.escape(coin)}(?![A-Z0-9])", words.upper()):
            continue
        kind = item.get("type") if isinstance(item.get("type"), dict) else {}
        rows.append({"timestamp": pd.Timestamp(int(millis), unit="ms", tz="UTC"),
                     "headline": item["title"], "source": kind.get("title") or "Bybit",
                     "url": item.get("url") or ""})
    return validate_headlines(pd.DataFrame(rows)) if rows else _empty_headlines()


# ---- csv -------------------------------------------------------------------------------

def read_headlines_csv(file: Any) -> pd.DataFrame:
    """Headlines from a CSV (path, bytes or file-like): ``timestamp, headline[, source, url,
    label]``, header names case-insensitive (``title``/``time``/``link`` also accepted).

    Raises DataError naming what to fix: unreadable file, missing column, bad timestamp.
    """
    from data.csv import MAX_COLUMNS, parser_detail, read_content

    content, _ = read_content(file)   # regular files of bounded size only: never /dev/zero or a FIFO
    head = content[:HEADER_CHARS]
    header = head.splitlines()[0] if head.strip() else head
    if len(header) >= HEADER_CHARS or header.count(b"," if isinstance(header, bytes) else ",") >= MAX_COLUMNS:
        raise DataError("The headlines file's first line is no header (over 4 KiB or "
                        f"{MAX_COLUMNS} columns): start it with timestamp,headline[,source,url].")
    buffer = io.BytesIO(content) if isinstance(content, bytes) else io.StringIO(content)
    try:
        raw = pd.read_csv(buffer, dtype="str", keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"Cannot read the headlines file as CSV ({clean_text(parser_detail(exc), 120)}). "
                        "Save it as UTF-8 CSV with a header row: timestamp,headline[,source,url].") from exc
    by_lower = {str(c).strip().lower(): c for c in raw.columns}
    picked: dict[str, Any] = {}
    for name, aliases in _CSV_ALIASES.items():
        found = next((by_lower[a] for a in aliases if a in by_lower), None)
        if found is not None:
            picked[name] = found
    missing = [c for c in ("timestamp", "headline") if c not in picked]
    if missing:
        raise DataError(f"The headlines file lacks the column(s) {', '.join(missing)}; its header "
                        f"has {clean_text(', '.join(map(str, raw.columns)), 200) or 'nothing'}. Expected "
                        "timestamp,headline[,source,url].")
    out = raw[list(picked.values())].rename(columns={v: k for k, v in picked.items()})
    if out.empty:
        raise DataError("The headlines file has a header but no rows.")
    out["timestamp"] = _parse_timestamps(out["timestamp"]).to_numpy()
    if "source" not in out:
        out["source"] = "csv"
    out["source"] = out["source"].where(out["source"].str.strip() != "", "csv")
    return validate_headlines(out)


# ---- entry point -----------------------------------------------------------------------

def load_headlines(source: str, symbol: str = "", start: Any = None, end: Any = None, *,
                   file: Any = None, seed: int = 7, limit: int = 100,
                   deadline: float | None = None) -> pd.DataFrame:
    """Headlines for ``symbol`` from ``source`` ("demo", "yahoo", "bybit", "csv").

    Parameters
    ----------
    start, end
        Optional range, start inclusive and end exclusive (naive = UTC). Both or neither.
    file
        Path, bytes or file-like for "csv".
    seed
        Demo market seed.
    limit
        Most items asked of a network source (Yahoo and Bybit give only recent news, so
        an old range may come back empty).
    deadline
        Seconds a network source may take in all (default ``SURVEILLANCE_NETWORK_DEADLINE``,
        else 20).

    Returns the canonical headline frame (see module docstring); DataError on failure.
    """
    if source not in NEWS_SOURCES:
        raise DataError(f"Unknown news source {source!r}; choose one of {', '.join(NEWS_SOURCES)}.")
    if (start is None) != (end is None):
        raise DataError("Give both a start and an end for the news range, or neither.")
    start_ts, end_ts = (None, None) if start is None else parse_time_range(start, end)
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise DataError(f"The news limit must be a whole number of at least 1, got {limit!r}.")
    symbol = check_symbol(symbol, strict=source != "csv")
    if source == "demo":
        frame = validate_headlines(_demo_headlines(symbol, start_ts, end_ts, seed))
    elif source == "yahoo":
        if not symbol:
            raise DataError("Enter a symbol to fetch Yahoo news for.")
        frame = yahoo_news_to_frame(fetch_yahoo_news(symbol, limit, deadline), symbol)
    elif source == "bybit":
        frame = bybit_announcements_to_frame(fetch_bybit_announcements(limit, deadline=deadline), symbol)
    else:
        if file is None:
            raise DataError("Choose a headlines CSV file (file=...).")
        frame = read_headlines_csv(file)
    if start_ts is not None:
        frame = frame[(frame["timestamp"] >= start_ts) & (frame["timestamp"] < end_ts)]
        frame = frame.reset_index(drop=True)
    frame.attrs = {"symbol": symbol, "source": source}
    return frame
