"""CSV candle source (data layer, no Streamlit): an analyst's exported file -> canonical candles.

Reads the common exports: Yahoo (``Date,Open,High,Low,Close,Adj Close,Volume``), exchange
exports with epoch seconds/milliseconds or ISO times, ``;``-separated files with decimal
commas, CryptoDataDownload (a URL line above the header, ``Volume BTC``), and header-less
Bybit/Binance kline rows ``[ms, open, high, low, close, volume, ...]``.

``fetch_raw`` only reads bytes into a raw table (index = line number in the file, so
messages can point at a line); ``to_frame`` is pure and maps that table to candles. Every
problem an analyst can fix raises ``DataError`` saying what is wrong and what to change.
A file's contents are data only: nothing in it is evaluated.
"""
from __future__ import annotations

import csv as _csv
import io
import os
import re
import stat
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from data import INTERVALS, CandleQuery, DataError, validate_candles

__all__ = ["MAX_BYTES", "fetch_raw", "to_frame", "read_candles_csv", "detect_interval", "read_content"]

#: Largest file accepted; bigger exports should be cut to a shorter range or coarser bars.
MAX_BYTES = 200 * 1024 * 1024
#: Unreadable rows are dropped (and reported) only while they stay under this share of rows.
MAX_JUNK_FRACTION = 0.01
#: Lines above the header that are skipped (e.g. CryptoDataDownload's URL line).
MAX_PREAMBLE_LINES = 10
MAX_COLUMNS = 200          # wider is no candle export (and pandas slows down on 100k columns)
#: Characters of the file's start searched for the header and separator.
HEAD_CHARS = 65536
#: Separators tried, in order, on each line until one splits it into at least 4 fields.
SEPARATORS = (";", "\t", "|", ",")

#: Column roles and the (normalised) header names that mean them, preferred first.
#: Normalising keeps only lower-case letters and digits: "Adj Close**" -> "adjclose".
ALIASES: dict[str, tuple[str, ...]] = {
    "time": ("timestamp", "unix", "unixtime", "opentime", "starttime", "datetime", "date",
             "time", "gmttime", "localtime", "ts"),
    "open": ("open", "o", "openprice"),
    "high": ("high", "h", "highprice"),
    "low": ("low", "l", "lowprice"),
    "close": ("close", "c", "closeprice"),
    "volume": ("volume", "vol", "v"),
    "adj_close": ("adjclose", "adjustedclose"),
    "symbol": ("symbol", "ticker", "pair"),
}
REQUIRED = ("time", "open", "high", "low", "close", "volume")
PRICE_ROLES = ("open", "high", "low", "close")
#: Header-less files are accepted only with these widths: plain OHLCV, Bybit kline rows
#: (+ turnover) and Binance kline rows (+ 6 more fields), all starting time, o, h, l, c, v.
HEADERLESS_WIDTHS = (6, 7, 12)

#: Cells that mean "no value" (the row is then dropped by validate_candles, and reported).
_MISSING = ("", "null", "nan", "na", "n/a", "none", "-")
_NA_VALUES = sorted({form for m in _MISSING for form in (m, m.upper(), m.capitalize())})
_NUMBER = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?")
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
_ZONE = r"(?:Z|[+-]\d{2}:?\d{2})$"
EPOCH_FIRST = pd.Timestamp("1971-01-01", tz="UTC")   # small numbers are not epoch times
STRING_FIRST = pd.Timestamp("1900-01-01", tz="UTC")
#: Bytes scanned for blank lines at a time (bounds that scan's memory).
_BLANK_SCAN_CHUNK = 1 << 24
#: Date formats pandas cannot infer (12-hour clocks), tried on a sample of the column before
#: its per-value parser, which takes about 35 us a value: minutes for a million-row export.
_TWELVE_HOUR = tuple(f"{date} {clock}" for date in ("%m/%d/%Y", "%d/%m/%Y", "%m-%d-%Y", "%d-%m-%Y",
                                                    "%m.%d.%Y", "%d.%m.%Y", "%Y-%m-%d")
                     for clock in ("%I:%M %p", "%I:%M:%S %p", "%I:%M%p", "%I %p"))
_LAST = pd.Timestamp("2200-01-01", tz="UTC")
_TIME_HINT = ("Use one time format throughout: ISO such as 2024-01-31 13:00 (UTC unless an "
              "offset is given), or epoch seconds/milliseconds.")
_NUMBER_HINT = "Write plain numbers, without currency signs, units or thousands separators."
_FIELDS_HINT = "Fix or remove lines that have more fields than the header."
_MAGIC = {b"PK\x03\x04": "a zip archive (or an .xlsx workbook)", b"\x1f\x8b": "a gzip archive",
          b"\xd0\xcf\x11\xe0": "an Excel .xls workbook", b"PAR1": "a Parquet file",
          b"%PDF": "a PDF document", b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image"}


def fetch_raw(query: CandleQuery,
              progress: Callable[[float, str], None] | None = None) -> pd.DataFrame:
    """Read ``query.option("file")`` (bytes or a file-like object) or ``option("path")``.

    Returns the table as pandas reads it (a column of numbers as numbers, anything else as
    text): columns are the header names (or ``column 1..n`` when the file has no header),
    the index is the 1-based line number of each row in the file, all-empty lines are gone.
    ``attrs`` holds ``name`` (file stem), ``sep``, ``has_header`` and
    ``skipped_lines`` (lines with more fields than the header, left out).
    """
    source = query.option("file")
    if source is None:
        source = query.option("path")
    if source is None or (isinstance(source, (str, os.PathLike)) and not str(source).strip()):
        raise DataError("Choose a CSV file: pass path= or file=.")
    if progress:
        progress(0.0, "Reading the CSV file")
    content, name = read_content(source)
    raw = _parse_table(_decode(content))
    raw.attrs["name"] = name
    if progress:
        progress(1.0, f"Read {len(raw):,} rows")
    return raw


def to_frame(raw: pd.DataFrame, query: CandleQuery) -> pd.DataFrame:
    """Map a raw table from ``fetch_raw`` to candles (before ``validate_candles``). Pure.

    Keeps rows of ``query.symbol`` when the file holds several symbols, filters to
    ``[query.start, query.end)`` when given, and with option ``adjusted=True`` scales
    open/high/low/close by ``Adj Close / Close``. Sets ``attrs``: ``symbol``, ``source``,
    ``interval`` (the query's, else the detected one), ``detected_interval`` (an
    ``INTERVALS`` key or ""), ``repairs`` (sentences) and, when the bar spacing differs
    from the chosen interval, ``notice``.
    """
    roles = _match_columns(raw)
    rows, file_symbol = _select_symbol(raw, roles.get("symbol"), query.symbol)
    total = len(rows) + len(raw.attrs.get("skipped_lines", ()))
    if total == 0:
        raise DataError("The file has no data rows: export the candles again.")
    repairs: list[str] = []
    times, time_note = _read_times(_time_values(rows, roles), roles["time"])
    if time_note:
        repairs.append(time_note)
    wanted = list(REQUIRED[1:])
    if query.option("adjusted") and "adj_close" in roles:
        wanted.append("adj_close")
    decimal_comma = _decimal_comma(rows, {role: roles[role] for role in wanted})
    numbers = {role: _read_numbers(rows[roles[role]], decimal_comma) for role in wanted}
    problems = [(times.isna(), _time_problem(rows, roles["time"]), _TIME_HINT)]
    problems += [(bad, _number_problem(rows, roles[role]), _NUMBER_HINT)
                 for role, (_, bad) in numbers.items()]
    keep = _drop_junk(problems, raw.attrs.get("skipped_lines", []), total, repairs)

    values = {role: numbers[role][0][keep] for role in wanted}
    for role in wanted:
        if values[role].isna().all():
            raise DataError(f"Column {roles[role]!r} has no values: export the file with "
                            f"{role.replace('_', ' ')} filled in.")
    if not raw.attrs.get("has_header", True):
        _check_headerless_order(values)
    else:
        _check_price_columns(values, roles)
    if query.option("adjusted"):
        _adjust(values, "adj_close" in roles, repairs)

    index = pd.DatetimeIndex(times[keep].array, name="timestamp").as_unit("ns")
    frame = pd.DataFrame({role: values[role].to_numpy(dtype="float64") for role in REQUIRED[1:]},
                         index=index)
    frame = _filter_range(frame, query.start, query.end)
    detected = detect_interval(frame.index)
    frame.attrs = {"symbol": query.symbol or file_symbol or raw.attrs.get("name") or "CSV",
                   "source": "csv", "interval": query.interval or detected,
                   "detected_interval": detected, "repairs": repairs}
    if detected and query.interval and detected != query.interval:
        frame.attrs["notice"] = (f"The file's bars are {detected} apart, not {query.interval}; "
                                 "they are shown as they are.")
    return frame


def read_candles_csv(path_or_buffer: Any, *, symbol: str = "", interval: str = "",
                     adjusted: bool = False) -> pd.DataFrame:
    """Read a candle CSV (a path, bytes, or a binary/text file-like such as an UploadedFile).

    Both steps plus ``data.validate_candles``, keeping ``attrs["detected_interval"]``. With
    ``interval=""`` the detected bar spacing becomes ``attrs["interval"]``. Raises DataError.
    """
    key = "path" if isinstance(path_or_buffer, (str, os.PathLike)) else "file"
    query = CandleQuery("csv", (symbol or "").strip(), None, None, interval,
                        (("adjusted", adjusted), (key, path_or_buffer)))
    frame = to_frame(fetch_raw(query), query)
    out = validate_candles(frame, symbol=frame.attrs["symbol"], source="csv",
                           interval=frame.attrs["interval"])
    out.attrs["detected_interval"] = frame.attrs["detected_interval"]
    return out


def detect_interval(index: pd.DatetimeIndex) -> str:
    """The ``INTERVALS`` key within 10% of the median spacing of ``index``, else "".

    The median ignores weekend and holiday gaps, so daily stock bars read as "1d" and
    monthly bars (28 to 31 days) as "1mo". Fewer than two distinct times give "".
    """
    gaps = np.diff(np.sort(index.as_unit("ns").asi8))
    gaps = gaps[gaps > 0]
    if len(gaps) == 0:
        return ""
    median = pd.Timedelta(int(np.median(gaps)), unit="ns")
    for name, length in INTERVALS.items():
        if abs(median - length) <= 0.1 * length:
            return name
    return ""


# --- reading bytes -------------------------------------------------------------------------

def read_content(source: Any) -> tuple[bytes | str, str]:
    """File contents (bytes, or str from a text file-like) and the file's name stem: a path
    only to a regular file, and at most MAX_BYTES from any source. Raises DataError."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        size = memoryview(source).nbytes
        if size > MAX_BYTES:   # checked before copying
            raise DataError(_too_large(size))
        content = bytes(source)
        name = ""
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        content = _read_regular_file(path)
        name = path.stem
    elif hasattr(source, "read"):
        _check_open_file(source)
        try:
            if getattr(source, "seekable", lambda: False)():
                source.seek(0)   # an upload read on an earlier rerun is positioned at its end
            content = source.read(MAX_BYTES + 1)
        except (OSError, ValueError) as exc:   # closed file, or a text file in the wrong encoding
            raise DataError(f"Cannot read the uploaded file ({exc}): upload it again as a "
                            "UTF-8 CSV.") from None
        if not isinstance(content, (bytes, str)):
            raise DataError("The file object returned neither bytes nor text: pass a CSV file.")
        name = Path(str(getattr(source, "name", "") or "")).stem
    else:
        raise DataError(f"Cannot read a CSV from a {type(source).__name__}: pass a path, "
                        "bytes or an uploaded file.")
    if len(content) > MAX_BYTES:
        raise DataError(_too_large(len(content)))
    return content, name


def _check_open_file(source: Any) -> None:
    """An open file object must be a regular file too (reading a pipe or device blocks or
    never ends); objects without a file descriptor (uploads, BytesIO) pass."""
    try:
        mode = os.fstat(source.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return
    if not stat.S_ISREG(mode):
        raise DataError("The open file is not a regular file (a device, pipe or socket): "
                        "choose a CSV file saved on disk.")


def _read_regular_file(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_BYTES. A device (/dev/zero never ends), a
    pipe (blocks until written) or a socket is refused before it is opened; at most
    MAX_BYTES + 1 bytes are read, in case the file grows meanwhile."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise DataError(f"{str(path)!r} is a folder: choose a CSV file inside it.")
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"{str(path)!r} is not a regular file (a device, pipe or socket): "
                            "choose a CSV file saved on disk.")
        if info.st_size > MAX_BYTES:
            raise DataError(_too_large(info.st_size))
        with open(path, "rb") as handle:
            content = handle.read(MAX_BYTES + 1)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"No file at {str(path)!r}: check the path.") from None
    except IsADirectoryError:
        raise DataError(f"{str(path)!r} is a folder: choose a CSV file inside it.") from None
    except (OSError, ValueError) as exc:   # permissions, a name too long, a NUL in the path
        detail = getattr(exc, "strerror", None) or exc
        raise DataError(f"Cannot read {str(path)[:200]!r} ({detail}): check the path and its "
                        "permissions.") from None
    return content


def _too_large(size: int) -> str:
    return (f"The file is {size / 2**20:,.0f} MB; the limit is {MAX_BYTES / 2**20:,.0f} MB. "
            "Export a shorter range or a coarser interval.")


def _decode(content: bytes | str) -> str:
    """Text of the file: UTF-8 (BOM dropped), UTF-16 with a BOM, else Windows-1252."""
    if isinstance(content, str):
        text = content.lstrip("\ufeff")
    else:
        for magic, what in _MAGIC.items():
            if content.startswith(magic):
                raise DataError(f"This is {what}, not a CSV: export or save the candles as CSV.")
        if content.startswith((b"\xff\xfe", b"\xfe\xff")):
            try:
                text = content.decode("utf-16").lstrip("\ufeff")
            except UnicodeDecodeError:
                raise DataError("The file claims to be UTF-16 text but is not: save it as "
                                "UTF-8 CSV.") from None
        elif b"\x00" in content:
            raise DataError("The file is binary, not CSV text: export the candles as CSV.")
        else:
            try:
                text = content.decode("utf-8-sig")
            except UnicodeDecodeError:
                text = content.decode("cp1252", errors="replace")
    if not text or text.isspace():
        raise DataError("The file is empty: export the candles again.")
    head = text[:HEAD_CHARS]
    controls = sum(1 for ch in head if (ch < " " and ch not in "\t\r\n") or ch == "\ufffd")
    if "\x00" in head or controls > 0.01 * len(head):
        raise DataError("The file does not look like CSV text (it holds control or undecodable "
                        "characters): export the candles as CSV.")
    if "\r" in text:   # CRLF, and old Mac or stray CRs, which pandas also splits rows at
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _parse_table(text: str) -> pd.DataFrame:
    """Split ``text`` into a table; see ``fetch_raw`` for the shape.

    Numeric columns come back as numbers straight from pandas' C parser (fast for 200 MB);
    a column with any unreadable cell stays text so ``to_frame`` can point at the cell.
    """
    lines = text[:HEAD_CHARS].split("\n")
    for skip, line in enumerate(lines[:MAX_PREAMBLE_LINES + 1]):
        sep = next((s for s in SEPARATORS if line.count(s) >= 3), None)
        if sep:
            break
    else:
        first = next((ln.strip() for ln in lines if ln.strip()), "")
        raise DataError(f"No table found: the first line is {first[:80]!r}. A candle CSV needs "
                        "columns for time, open, high, low, close and volume, separated by "
                        "commas or semicolons, under a header row.")
    if skip == len(lines) - 1 and len(text) > HEAD_CHARS:
        raise DataError(f"Line {skip + 1} is longer than {HEAD_CHARS // 1024} KiB, so it is no header: "
                        "keep the time, open, high, low, close and volume columns.")
    try:
        fields = [f.strip() for f in next(_csv.reader([lines[skip].rstrip("\r")], delimiter=sep))]
    except _csv.Error as exc:
        raise DataError(f"Cannot read line {skip + 1} ({exc}): save the file as plain CSV.") \
            from None
    if len(fields) > MAX_COLUMNS:
        raise DataError(f"Line {skip + 1} has {len(fields):,} columns: keep the time, open, high, low, "
                        f"close and volume columns (at most {MAX_COLUMNS} in all).")
    numeric = [bool(_NUMBER.fullmatch(f)) for f in fields]
    has_header = not all(numeric)
    if has_header and all(numeric[1:]):
        raise DataError(f"The file has no header row (line {skip + 1} is "
                        f"{lines[skip].strip()[:80]!r}): add one such as "
                        "Date,Open,High,Low,Close,Volume.")
    names = _unique_names(fields) if has_header else [f"column {i + 1}" for i in range(len(fields))]
    first_row = skip + 1 if has_header else skip   # 0-based line where data starts
    _check_first_row_width(lines, first_row, sep, len(names))
    # With another separator a comma may be a decimal: keep the cells as text, so that
    # to_frame can decide the number format once for the whole file.
    text_cells = {"dtype": str} if sep != "," else {}
    body, body_lines = without_blank_lines(text[sum(len(ln) + 1 for ln in lines[:first_row]):], sep)
    skipped: list[int] = []
    if body:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            try:
                table = pd.read_csv(io.BytesIO(body), encoding="utf-8", sep=sep, header=None,
                                    names=names, index_col=False, keep_default_na=False,
                                    na_values=_NA_VALUES, skip_blank_lines=False,
                                    skipinitialspace=True, on_bad_lines="warn", engine="c",
                                    **text_cells)
            except ValueError as exc:   # pandas' ParserError and EmptyDataError are ValueErrors
                raise DataError(f"Cannot split the file into columns ({parser_detail(exc)}): check for an "
                                "unclosed quote or a broken line.") from None
        skipped = sorted({int(n) for w in caught
                          for n in re.findall(r"Skipping line (\d+)", str(w.message))})
    else:
        table = pd.DataFrame(columns=names, dtype=object)
    skipped_at = np.array(skipped, dtype=int) - 1
    table.index = pd.Index(np.delete(body_lines, skipped_at)[:len(table)] + first_row, name="line")
    table = table[table.notna().any(axis=1)]
    table.attrs = {"sep": sep, "has_header": has_header,
                   "skipped_lines": (body_lines[skipped_at] + first_row).tolist()}
    return table


def parser_detail(exc: Exception) -> str:
    """The first line of a pandas parser error in plain words (the rest is advice meant for
    programmers)."""
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    if "EOF inside string" in text:
        return "a quoted cell is never closed"
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if fields:
        return f"line {fields[2]} has {fields[3]} fields where the first line has {fields[1]}"
    return text.removeprefix("Error tokenizing data. C error: ")


def without_blank_lines(body: str, sep: str) -> tuple[bytes, np.ndarray]:
    """``body`` as UTF-8 without its blank lines (only spaces and separators), and the
    1-based line number in ``body`` of each line kept. pandas would make a row of each blank
    line first (10 MB of newlines took 1.4 GB); done in chunks, so memory stays bounded."""
    data = body.encode("utf-8", errors="replace")
    filler = np.frombuffer(f" \t\r\n{sep}".encode(), dtype=np.uint8)
    parts, numbers, first_line, pos = [], [], 1, 0
    while pos < len(data):
        end = data.find(b"\n", min(pos + _BLANK_SCAN_CHUNK, len(data)) - 1) + 1 or len(data)
        raw = np.frombuffer(data, dtype=np.uint8, count=end - pos, offset=pos)
        starts = np.concatenate([[0], np.flatnonzero(raw == 10) + 1])
        starts = starts[starts < len(raw)]
        content = np.logical_or.reduceat(~np.isin(raw, filler), starts)
        lengths = np.diff(np.append(starts, len(raw)))
        parts.append(data[pos:end] if content.all() else raw[np.repeat(content, lengths)].tobytes())
        numbers.append(np.flatnonzero(content) + first_line)
        first_line, pos = first_line + len(starts), end
    return b"".join(parts), np.concatenate(numbers) if numbers else np.zeros(0, dtype=np.int64)


def _check_first_row_width(lines: list[str], first_row: int, sep: str, width: int) -> None:
    """pandas silently cuts a first data row wider than the header (later ones it skips)."""
    line = next((ln for ln in lines[first_row:] if ln.strip()), "")
    try:
        fields = next(_csv.reader([line.rstrip("\r")], delimiter=sep), [])
    except _csv.Error:
        return   # read_csv reports the broken line itself
    if any(f.strip() for f in fields[width:]):
        number = first_row + 1 + lines[first_row:].index(line)
        raise DataError(f"Line {number} has {len(fields)} fields but the header names {width}: "
                        "name the extra columns in the header or remove them.")


def _unique_names(header: list[str]) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(header):
        name = name or f"column {i + 1}"
        names.append(name if name not in seen else f"{name} ({i + 1})")
        seen.add(names[-1])
    return names


# --- mapping columns -----------------------------------------------------------------------

def _normalise(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def _match_columns(raw: pd.DataFrame) -> dict[str, str]:
    """Role -> column name. Header-less tables map by position; missing roles raise."""
    columns = list(raw.columns)
    if not raw.attrs.get("has_header", True):
        if len(columns) not in HEADERLESS_WIDTHS:
            raise DataError(f"The file has no header row and {len(columns)} columns; without a "
                            "header only rows of time, open, high, low, close, volume (plus "
                            "Bybit's turnover or Binance's extra fields) can be read. Add a "
                            "header such as Date,Open,High,Low,Close,Volume.")
        return dict(zip(REQUIRED, columns))
    normalised = {c: _normalise(c) for c in columns}
    roles: dict[str, str] = {}
    for role, aliases in ALIASES.items():
        for alias in aliases:
            match = next((c for c in columns
                          if normalised[c] == alias and c not in roles.values()), None)
            if match is not None:
                roles[role] = match
                break
    if "volume" not in roles:   # "Volume BTC", "Volume USDT": the first is the base coin
        match = next((c for c in columns if normalised[c].startswith("volume")
                      and c not in roles.values()), None)
        if match is not None:
            roles["volume"] = match
    missing = [role for role in REQUIRED if role not in roles]
    if missing:
        found = ", ".join(repr(c) for c in columns[:15]) + (", ..." if len(columns) > 15 else "")
        raise DataError(f"The file lacks the {', '.join(missing)} column(s); found {found}. "
                        "Name the columns Date (or Time/Timestamp), Open, High, Low, Close, "
                        "Volume.")
    return roles


def _select_symbol(raw: pd.DataFrame, column: str | None, wanted: str) -> tuple[pd.DataFrame, str]:
    """Rows of one symbol: a file with several symbols must be narrowed by ``wanted``."""
    if column is None:
        return raw, ""
    names = _text(raw[column])
    distinct = list(dict.fromkeys(n for n in names if n))
    if len(distinct) <= 1:
        return raw, distinct[0] if distinct else ""
    listed = ", ".join(distinct[:8]) + (", ..." if len(distinct) > 8 else "")
    if not wanted:
        raise DataError(f"The file holds {len(distinct)} symbols ({listed}); enter one of them "
                        "as the symbol.")
    match = names.map(_normalise_symbol) == _normalise_symbol(wanted)
    if not match.any():
        raise DataError(f"The file has no rows for {wanted!r}; it holds {listed}. "
                        "Enter one of those.")
    return raw[match], names[match].iloc[0]


def _normalise_symbol(symbol: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", symbol.upper())


# --- parsing values ------------------------------------------------------------------------

def _text(column: pd.Series) -> pd.Series:
    """Cells as stripped strings, "" where missing."""
    if pd.api.types.is_string_dtype(column) and not pd.api.types.is_object_dtype(column):
        return column.fillna("").str.strip()
    return column.astype(object).where(column.notna(), "").astype(str).str.strip()


def _is_number_column(column: pd.Series) -> bool:
    # pandas reads True/False as booleans; as prices they are unreadable text, not 1 and 0
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _time_values(rows: pd.DataFrame, roles: dict[str, str]) -> pd.Series:
    """The time column; a Date column with a clock-only Time column beside it is joined."""
    column = rows[roles["time"]]
    other = next((c for c in rows.columns if _normalise(c) == "time" and c != roles["time"]), None)
    if _normalise(roles["time"]) == "date" and other is not None:
        clock = _text(rows[other])
        is_clock = clock.str.fullmatch(_CLOCK)
        if is_clock.all():
            return _text(column) + " " + clock
        if is_clock.mean() > 0.5:   # a clock column with bad cells: using Date alone would merge rows
            line = is_clock.index[~is_clock.to_numpy()][0]
            raise DataError(f"Cannot read the time of day {excerpt(clock[line])} on line {line} "
                            f"(column {other!r}): write it as HH:MM or HH:MM:SS, e.g. 13:05.")
    return column


def _read_times(column: pd.Series, name: str = "") -> tuple[pd.Series, str]:
    """UTC times (NaT where missing, unreadable or implausible) and a note on how they were read.

    Numeric columns (also text columns that are mostly numbers) are epoch times, their unit
    told by magnitude (seconds < 1e11 <= milliseconds < 1e14 <= microseconds < 1e17 <=
    nanoseconds), or YYYYMMDD dates. Text is tried as ISO 8601 first, then month-first and
    day-first; the reading with fewer failures wins. When both read every date (all day and
    month values <= 12) the one that keeps the rows in time order is used; if both or
    neither do, the order would be a guess (monthly 01/01 ... 12/01 also reads as 12 days),
    so DataError asks for ISO dates. Naive times are UTC.
    """
    if _is_number_column(column):
        return epoch_times(column.astype("float64")), ""
    text = _text(column)
    present = text != ""
    numeric = text.str.fullmatch(r"[+-]?\d+(?:\.\d+)?")
    if present.any() and numeric[present].mean() > 0.5:
        return epoch_times(pd.to_numeric(text.where(numeric), errors="coerce")), ""
    cells = time_like(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # pandas warns when it cannot infer one format
        readings = [plausible(pd.to_datetime(cells, format="ISO8601", utc=True, errors="coerce"),
                               STRING_FIRST)]
        if readings[0][present].isna().any():
            readings += [plausible(_text_times(cells[present], first).reindex(text.index), STRING_FIRST)
                         for first in (False, True)]
    failures = [int(r[present].isna().sum()) for r in readings]
    times = readings[failures.index(min(failures))]   # ISO, then month-first, on a tie
    note = ""
    if len(readings) == 3 and failures[1] == failures[2] < failures[0] \
            and not readings[1].equals(readings[2]):
        ordered = [_in_time_order(r) for r in readings[1:]]
        if ordered[0] == ordered[1]:
            example = text[present & (readings[1] != readings[2])].iloc[0]
            raise DataError(f"The dates in column {name!r} read both month-first and day-first "
                            f"(e.g. {example!r}), so their order would be a guess: write them as "
                            "ISO dates YYYY-MM-DD (e.g. 2024-01-31).")
        times = readings[1] if ordered[0] else readings[2]
        order = "month-first" if ordered[0] else "day-first"
        note = (f"Dates such as 01/02 could be day-first or month-first; read them {order}, "
                "the order that keeps the rows in time order.")
    if (present & text.str.contains(":", regex=False) & ~text.str.contains(_ZONE)).any():
        note = (note + " " if note else "") + "Times have no time zone; read them as UTC."
    return times, note


def time_like(text: pd.Series) -> pd.Series:
    """Text cells that may be times, the others made unreadable ("?"): a time has a digit
    ("now" and "today" are not bar times) and at most 64 characters (the date parser's time
    grows with the square of a cell's length)."""
    return text.where((text == "") | ((text.str.len() <= 64) & text.str.contains(r"\d")), "?")


def _text_times(text: pd.Series, dayfirst: bool) -> pd.Series:
    """Non-ISO text times, one format for the whole column as pandas reads them (the format of
    the first value, inferred; values in another format are NaT). Where pandas cannot infer it
    (a 12-hour clock), the first of ``_TWELVE_HOUR`` in that day order that reads a sample is
    used the same way, and only a column no format fits is read value by value."""
    from pandas.tseries.api import guess_datetime_format
    if len(text) and guess_datetime_format(text.iloc[0], dayfirst=dayfirst) is None:
        sample = text.head(200)
        for fmt in (f for f in _TWELVE_HOUR if not f.startswith("%m" if dayfirst else "%d")):
            if pd.to_datetime(sample, format=fmt, errors="coerce").notna().all():
                return pd.to_datetime(text, format=fmt, utc=True, errors="coerce")
    return pd.to_datetime(text, utc=True, errors="coerce", dayfirst=dayfirst)


def epoch_ns_per_unit(size):
    """Nanoseconds per unit of epoch numbers of this size (array-like): seconds < 1e11 <=
    milliseconds < 1e14 <= microseconds < 1e17 <= nanoseconds."""
    return np.select([np.less(size, 1e11), np.less(size, 1e14), np.less(size, 1e17)], [1e9, 1e6, 1e3], 1.0)


_UNITS = {1e9: "s", 1e6: "ms", 1e3: "us", 1.0: "ns"}


def _small_float(value: Any) -> float:
    """A cell as a float; NaN when it is no number or too big for any epoch time."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return np.nan
    return number if abs(number) < 1e30 else np.nan


def epoch_times(numbers: pd.Series) -> pd.Series:
    """Epoch numbers (unit by magnitude) or YYYYMMDD integers as UTC times; NaN -> NaT."""
    if not pd.api.types.is_numeric_dtype(numbers):   # text, or ints past 64 bits (as objects)
        numbers = numbers.map(_small_float).astype("float64")
    numbers = numbers.where(np.isfinite(numbers))
    known = numbers.dropna()
    if known.empty:
        return pd.Series(pd.NaT, index=numbers.index, dtype="datetime64[ns, UTC]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if known.between(19000101, 22000101).all() and (known % 1 == 0).all():
            digits = numbers.astype("Int64").astype(str)
            return plausible(pd.to_datetime(digits, format="%Y%m%d", utc=True, errors="coerce"),
                              STRING_FIRST)
        unit = _UNITS[float(epoch_ns_per_unit(np.median(np.abs(known))))]
        times = pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
    return plausible(times, EPOCH_FIRST)


def plausible(times: pd.Series, first: pd.Timestamp) -> pd.Series:
    """NaT outside [first, 2200): small numbers or two-digit years are not real bar times."""
    times = times.where((times >= first) & (times < _LAST))
    return times.astype("datetime64[ns, UTC]")


def _in_time_order(times: pd.Series) -> bool:
    """Rows oldest first or newest first (as exports come), ignoring unreadable ones."""
    known = times.dropna()
    return known.is_monotonic_increasing or known.is_monotonic_decreasing


#: Cells only a decimal comma reads: 1,5  1.234,5  and 1.234.567 (dots grouping thousands).
_COMMA_ONLY = re.compile(r"[+-]?(?:(?:\d{1,3}(?:\.\d{3})+|\d+)?,\d*|\d{1,3}(?:\.\d{3}){2,})")
#: Cells only a decimal point reads: 1.5  .5  1e5 (but not 12.000, which both read).
_POINT_ONLY = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?\d+[eE][+-]?\d+")
_GROUPED = re.compile(r"[+-]?\d{1,3}\.\d{3}")


def _decimal_comma(rows: pd.DataFrame, columns: dict[str, str]) -> bool:
    """Whether the file writes decimal commas, decided once from all its number columns.

    "12.000" is 12 with a decimal point but 12000 with a decimal comma, so one format must
    hold for every cell; a file where some cells need one and some the other is refused,
    naming the columns. Cells both formats read alike (integers, 12.000) decide nothing.
    """
    comma: dict[str, str] = {}
    point: dict[str, str] = {}
    for column in dict.fromkeys(columns.values()):
        values = rows[column]
        if _is_number_column(values):   # read by pandas with a decimal point
            fraction = values[np.isfinite(values) & (values % 1 != 0)]
            if len(fraction):
                point[column] = repr(float(fraction.iloc[0]))
            continue
        text = _text(values)
        for found, cells in ((comma, text[text.str.fullmatch(_COMMA_ONLY)]),
                             (point, text[text.str.fullmatch(_POINT_ONLY) & ~text.str.fullmatch(_GROUPED)])):
            if len(cells):
                found[column] = repr(cells.iloc[0])
    if comma and point:
        def listing(found: dict[str, str]) -> str:
            return ", ".join(f"{column!r} (e.g. {example})" for column, example in found.items())
        raise DataError(f"The file mixes number formats: {listing(comma)} with a decimal comma, "
                        f"{listing(point)} with a decimal point. Export it again with one decimal "
                        "separator for every column.")
    return bool(comma)


def _read_numbers(column: pd.Series, decimal_comma: bool) -> tuple[pd.Series, pd.Series]:
    """Floats (NaN where missing or unreadable) and the mask of unreadable cells.

    Missing markers ("", null, NaN, n/a, -) are not unreadable: validate_candles drops those
    rows and says so. With ``decimal_comma`` dots group thousands: "1.234,5" reads as
    1234.5, "12.000" as 12000 and "61234,5" as 61234.5, while "1,234.5" is unreadable
    rather than 1.2345.
    """
    if _is_number_column(column):
        return column.astype("float64"), pd.Series(False, index=column.index)
    text = _text(column)
    if decimal_comma:
        european = text.str.fullmatch(_COMMA_ONLY) | text.str.fullmatch(_GROUPED)
        converted = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        text = text.where(~european, converted)
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    return numbers, numbers.isna() & ~text.str.lower().isin(_MISSING)


def _time_problem(rows: pd.DataFrame, column: str) -> Callable[[Any], str]:
    def describe(line: Any) -> str:
        value = rows.at[line, column]
        if pd.isna(value) or not str(value).strip():
            return f"the time is empty on line {line} (column {column!r})"
        return f"cannot read the time {excerpt(value)} on line {line} (column {column!r})"
    return describe


def _number_problem(rows: pd.DataFrame, column: str) -> Callable[[Any], str]:
    def describe(line: Any) -> str:
        return f"{excerpt(rows.at[line, column])} in column {column!r} on line {line} is not a number"
    return describe


def excerpt(value: Any, limit: int = 80) -> str:
    """A cell quoted for a message, cut to ``limit`` characters (a cell can be megabytes)."""
    text = str(value)
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text):,} characters)"


def _drop_junk(problems: list[tuple[pd.Series, Callable[[Any], str], str]], skipped: list[int],
               total: int, repairs: list[str]) -> pd.Series:
    """Boolean mask of rows to keep: unreadable rows go if under 1% of rows, else DataError.

    ``problems`` holds (bad-row mask, describe(line) -> str, what to change) per column.
    """
    bad = np.logical_or.reduce([mask.to_numpy() for mask, _, _ in problems])
    index = problems[0][0].index
    count = int(bad.sum()) + len(skipped)
    if count == 0:
        return pd.Series(True, index=index)
    examples = [(describe(mask[mask].index[0]), hint)
                for mask, describe, hint in problems if mask.any()]
    if skipped:
        examples.append((f"line {skipped[0]} has more fields than the header", _FIELDS_HINT))
    if count < MAX_JUNK_FRACTION * total:
        repairs.append(f"Dropped {count} unreadable row(s) of {total} ({examples[0][0]}).")
        return pd.Series(~bad, index=index)
    raise DataError(f"{count} of {total} rows cannot be read: {examples[0][0]}. {examples[0][1]}")


def _check_headerless_order(values: dict[str, pd.Series]) -> None:
    """A header-less file must really be time, open, high, low, close, volume."""
    o, h, low, c = (values[r] for r in PRICE_ROLES)
    complete = o.notna() & h.notna() & low.notna() & c.notna()
    fits = (h >= np.maximum(o, np.maximum(low, c))) & (low <= np.minimum(o, np.minimum(h, c)))
    if complete.any() and fits[complete].mean() < 0.99:
        raise DataError("The file has no header and its columns do not read as time, open, "
                        "high, low, close, volume: add a header row naming them.")


#: High/low are widened (and it is reported) on at most this share of rows and
#: ``MAX_WIDENED_ROWS`` rows; more means the columns are not what their headers say.
MAX_WIDENED_FRACTION = 0.01
MAX_WIDENED_ROWS = 2


def _check_price_columns(values: dict[str, pd.Series], roles: dict[str, str]) -> None:
    """Refuse a file whose open or close often lies outside high-low: mislabelled columns
    (e.g. Close and Volume swapped), which widening high/low would silently turn into bars."""
    o, h, low, c = (values[r] for r in PRICE_ROLES)
    complete = o.notna() & h.notna() & low.notna() & c.notna()
    slack = 1e-6 * h.abs()   # float noise from the exporter is not a mislabelled column
    outside = {role: ((values[role] > h + slack) | (values[role] < low - slack)) & complete
               for role in ("open", "close")}
    bad = outside["open"] | outside["close"]
    count = int(bad.sum())
    if count > MAX_WIDENED_ROWS and count > MAX_WIDENED_FRACTION * int(complete.sum()):
        worst = max(("open", "close"), key=lambda role: int(outside[role].sum()))
        raise DataError(
            f"On {count} of {int(complete.sum())} rows column {roles[worst]!r} lies outside "
            f"{roles['high']!r}-{roles['low']!r}: the columns look mislabelled (e.g. Close and "
            f"Volume swapped) or mix series (an adjusted close beside unadjusted highs and lows). "
            "Check that the header names Open, High, Low, Close and Volume match the columns.")


def _adjust(values: dict[str, pd.Series], has_adj_close: bool, repairs: list[str]) -> None:
    """Scale open/high/low/close by Adj Close / Close, as yfinance's auto_adjust does."""
    if not has_adj_close:
        repairs.append("No Adj Close column, so prices are not adjusted.")
        return
    factor = values["adj_close"] / values["close"]
    for role in PRICE_ROLES:
        values[role] = values[role] * factor
    repairs.append("Scaled open, high, low and close by Adj Close / Close (adjusted prices).")


def _filter_range(frame: pd.DataFrame, start: pd.Timestamp | None,
                  end: pd.Timestamp | None) -> pd.DataFrame:
    """Rows in [start, end); an empty result names the span the file covers."""
    if start is None and end is None:
        return frame
    inside = np.ones(len(frame), dtype=bool)
    if start is not None:
        inside &= frame.index >= start
    if end is not None:
        inside &= frame.index < end
    if not inside.any():
        first, last = frame.index.min(), frame.index.max()
        raise DataError(f"The file covers {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC; "
                        "pick a range inside it.")
    return frame[inside]
