"""CSV candle source: golden bad/fixed pairs, inline formats, helpful DataErrors, fuzzing."""
from __future__ import annotations

import datetime
import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import data.csv as csv_source
from data import COLUMNS, DataError, load_candles
from data.csv import detect_interval, read_candles_csv

FIXTURES = Path(__file__).parent / "fixtures" / "csv"
HEADER = "Date,Open,High,Low,Close,Volume\n"


def read_fixed(name: str) -> pd.DataFrame:
    """The expected canonical frame, read with plain pandas (not the code under test)."""
    frame = pd.read_csv(FIXTURES / f"{name}-fixed.csv", index_col="timestamp")
    frame.index = pd.to_datetime(frame.index, utc=True).as_unit("ns")
    return frame.astype("float64")


def assert_canonical(frame: pd.DataFrame) -> None:
    """The candle contract every source must meet (the ccxt-style shared check)."""
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC" and frame.index.name == "timestamp"
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert list(frame.columns) == COLUMNS
    assert all(frame[c].dtype == "float64" for c in COLUMNS)
    assert np.isfinite(frame.to_numpy()).all()
    assert (frame[["open", "high", "low", "close"]] > 0).all().all()
    assert (frame["volume"] >= 0).all()
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert frame.attrs["source"] == "csv" and frame.attrs["symbol"]


def csv_bytes(rows: list[str], header: str = HEADER) -> bytes:
    return (header + "\n".join(rows) + "\n").encode()


def hourly_rows(n: int, start: int = 1704067200) -> list[str]:
    """``n`` valid hourly rows with epoch-second times and gently rising prices."""
    return [f"{start + 3600 * i},{100 + i},{101 + i},{99 + i},{100.5 + i},{10 + i}" for i in range(n)]


# --- golden pairs ---------------------------------------------------------------------------

# name, load options, interval, expected symbol, a sentence expected among the repairs
GOLDEN = [
    ("yahoo-daily", {}, "1d", "yahoo-daily-bad", "Dropped 1 row(s) with a missing"),
    ("yahoo-adjusted", {"adjusted": True}, "1d", "yahoo-adjusted-bad", "Adj Close / Close"),
    ("bybit-export", {}, "1h", "bybit-export-bad", "duplicate timestamp"),
    ("semicolon-decimal-comma", {}, "1h", "semicolon-decimal-comma-bad", "read them as UTC"),
    ("headerless-bybit", {}, "1h", "headerless-bybit-bad", "not in time order"),
    ("cryptodatadownload", {}, "1h", "BTC/USDT", "not in time order"),
    ("iso-offsets", {}, "1h", "iso-offsets-bad", "Widened high/low on 1 candle"),
    ("epoch-seconds-tab", {}, "1h", "epoch-seconds-tab-bad", None),
    ("binance-headerless", {}, "1h", "binance-headerless-bad", None),
    ("metatrader-date-time", {}, "1h", "metatrader-date-time-bad", "read them as UTC"),
    ("dayfirst-semicolon", {}, "1d", "dayfirst-semicolon-bad", None),
]


@pytest.mark.parametrize("name, options, interval, symbol, repair", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_pair_through_load_candles_path(name, options, interval, symbol, repair):
    candles = load_candles("csv", "", interval=interval, path=FIXTURES / f"{name}-bad.csv", **options)
    pd.testing.assert_frame_equal(candles, read_fixed(name), check_freq=False, rtol=1e-9)
    assert_canonical(candles)
    assert candles.attrs["symbol"] == symbol
    assert candles.attrs["interval"] == interval
    assert "notice" not in candles.attrs   # the file's spacing matches the chosen interval
    if repair:
        assert any(repair in line for line in candles.attrs["repairs"]), candles.attrs["repairs"]
    else:
        assert candles.attrs["repairs"] == []


@pytest.mark.parametrize("name, options, interval, symbol, repair", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_pair_through_load_candles_file(name, options, interval, symbol, repair):
    upload = io.BytesIO((FIXTURES / f"{name}-bad.csv").read_bytes())
    candles = load_candles("csv", "", interval=interval, file=upload, **options)
    pd.testing.assert_frame_equal(candles, read_fixed(name), check_freq=False, rtol=1e-9)
    assert candles.attrs["symbol"] == ("BTC/USDT" if name == "cryptodatadownload" else "CSV")


def test_read_candles_csv_detects_interval():
    daily = read_candles_csv(FIXTURES / "yahoo-daily-bad.csv")
    assert daily.attrs["interval"] == daily.attrs["detected_interval"] == "1d"
    chosen = read_candles_csv(FIXTURES / "yahoo-daily-bad.csv", interval="1h")
    assert chosen.attrs["interval"] == "1h" and chosen.attrs["detected_interval"] == "1d"
    assert "1d apart, not 1h" in chosen.attrs["notice"]


def test_load_candles_keeps_interval_notice():
    candles = load_candles("csv", "", interval="1h", path=FIXTURES / "yahoo-daily-bad.csv")
    assert candles.attrs["interval"] == "1h"
    assert "1d apart" in candles.attrs["notice"]


@pytest.mark.parametrize("spacing, expected", [
    ("1min", "1m"), ("5min", "5m"), ("15min", "15m"), ("30min", "30m"), ("1h", "1h"),
    ("4h", "4h"), ("1D", "1d"), ("7D", "1wk"), ("2h", ""), ("3D", ""),
])
def test_detect_interval(spacing, expected):
    index = pd.date_range("2024-01-01", periods=10, freq=spacing, tz="UTC")
    assert detect_interval(index) == expected


def test_detect_interval_monthly_and_weekday_bars():
    assert detect_interval(pd.date_range("2020-01-01", periods=24, freq="MS", tz="UTC")) == "1mo"
    assert detect_interval(pd.bdate_range("2024-01-01", periods=40, tz="UTC")) == "1d"
    assert detect_interval(pd.DatetimeIndex([pd.Timestamp("2024-01-01", tz="UTC")])) == ""


# --- formats, inline ------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1, 1000, 1_000_000, 1_000_000_000], ids=["s", "ms", "us", "ns"])
def test_epoch_unit_told_by_magnitude(scale):
    rows = [f"{(1704067200 + 3600 * i) * scale},1,2,0.5,1.5,10" for i in range(3)]
    candles = read_candles_csv(csv_bytes(rows, "time,open,high,low,close,volume\n"))
    expected = pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC", name="timestamp")
    pd.testing.assert_index_equal(candles.index, expected.as_unit("ns"), check_exact=True)


@pytest.mark.parametrize("header", [
    "time,open,high,low,close,volume", "Timestamp,Open,High,Low,Close,Volume",
    "DATETIME,O,H,L,C,V", " open_time , o , h , l , c , vol ", "startTime,o,h,l,c,Volume BTC",
    "Date,Open*,High,Low,Close*,Volume,Adj Close**", "date,open,high,low,close,volume,extra",
])
def test_column_aliases(header):
    width = len(header.split(","))
    rows = [",".join([str(1704067200 + 3600 * i), "1", "2", "0.5", "1.5", "10"] + ["7"] * (width - 6))
            for i in range(3)]
    candles = read_candles_csv(csv_bytes(rows, header + "\n"))
    assert candles["close"].tolist() == [1.5] * 3 and candles["volume"].tolist() == [10.0] * 3


def test_first_volume_column_is_the_base_coin():
    text = "Unix,Symbol,Open,High,Low,Close,Volume ETH,Volume USDT\n1704067200,ETH/USDT,1,2,0.5,1.5,3,4.5\n"
    assert read_candles_csv(text.encode())["volume"].iloc[0] == 3.0


def test_naive_times_are_utc_and_offsets_convert():
    naive = read_candles_csv(csv_bytes(["2024-01-02 10:00,1,2,0.5,1.5,10"]))
    aware = read_candles_csv(csv_bytes(["2024-01-02T12:00:00+02:00,1,2,0.5,1.5,10"]))
    assert naive.index[0] == aware.index[0] == pd.Timestamp("2024-01-02 10:00", tz="UTC")
    assert any("no time zone" in r for r in naive.attrs["repairs"])
    assert not any("no time zone" in r for r in aware.attrs["repairs"])


def test_dates_whose_order_would_be_a_guess_are_refused():
    # 01/02 .. 06/02 is Feb 1-6 day-first and Jan 2 - Jun 2 month-first, both in time order
    rows = [f"0{d}/02/2024;1;2;0,5;1,5;10" for d in (1, 2, 5, 6)]
    with pytest.raises(DataError, match=r"column 'Date' .*write them as ISO dates YYYY-MM-DD"):
        read_candles_csv(csv_bytes(rows, "Date;Open;High;Low;Close;Volume\n"))


def test_us_monthly_dates_are_not_read_as_twelve_days():
    rows = [f"{m:02d}/01/2024,1,2,0.5,1.5,10" for m in range(1, 13)]
    with pytest.raises(DataError, match=r"'Date' read both month-first and day-first .*ISO dates"):
        read_candles_csv(csv_bytes(rows))


def test_the_only_date_order_that_keeps_rows_in_time_order_is_used():
    # day-first: Jan 11, Jan 12, Feb 1 (in order); month-first: Nov 1, Dec 1, Jan 2 (not)
    candles = read_candles_csv(csv_bytes([f"{d},1,2,0.5,1.5,10" for d in ("11/01/2024", "12/01/2024", "01/02/2024")]))
    assert list(candles.index.strftime("%Y-%m-%d")) == ["2024-01-11", "2024-01-12", "2024-02-01"]
    assert any("read them day-first" in r for r in candles.attrs["repairs"])
    us = read_candles_csv(csv_bytes([f"{m:02d}/15/2024,1,2,0.5,1.5,10" for m in range(1, 13)]))
    assert us.index[-1] == pd.Timestamp("2024-12-15", tz="UTC") and us.attrs["detected_interval"] == "1mo"


def test_yyyymmdd_integer_dates():
    candles = read_candles_csv(csv_bytes(["20240102,1,2,0.5,1.5,10", "20240103,1,2,0.5,1.5,10"]))
    assert candles.index[1] == pd.Timestamp("2024-01-03", tz="UTC")


def test_adjusted_without_adj_close_says_so():
    candles = read_candles_csv(csv_bytes(["2024-01-02,1,2,0.5,1.5,10"]), adjusted=True)
    assert candles["close"].iloc[0] == 1.5
    assert any("not adjusted" in r for r in candles.attrs["repairs"])


def test_encodings_and_line_endings():
    rows = ["2024-01-02,1,2,0.5,1.5,10", "2024-01-03,1,2,0.5,1.5,10"]
    text = HEADER + "\n".join(rows) + "\n"
    expected = read_candles_csv(text.encode())
    variants = {
        "utf-8 BOM": b"\xef\xbb\xbf" + text.encode(),
        "utf-16": text.encode("utf-16"),
        "cp1252": ("Caf\xe9 export\n" + text).encode("cp1252"),
        "CR only": text.replace("\n", "\r").encode(),
        "CRLF + blank tail": text.replace("\n", "\r\n").encode() + b"\r\n\r\n  \n",
        "excel empty rows": text.encode() + b",,,,,\n,,,,,\n",
    }
    for label, content in variants.items():
        got = read_candles_csv(content)
        pd.testing.assert_frame_equal(got, expected, obj=label)


def test_text_file_like_and_open_binary_file(tmp_path):
    text = csv_bytes(["2024-01-02,1,2,0.5,1.5,10"]).decode()
    assert len(read_candles_csv(io.StringIO(text))) == 1
    path = tmp_path / "AAPL.csv"
    path.write_text(text)
    with open(path, "rb") as handle:
        candles = read_candles_csv(handle)
    assert candles.attrs["symbol"] == "AAPL"


class FakeUploadedFile(io.BytesIO):
    """Shaped like Streamlit's UploadedFile: a BytesIO with a ``name``."""

    def __init__(self, content: bytes, name: str):
        super().__init__(content)
        self.name = name


def test_uploaded_file_read_before_is_read_from_the_start():
    upload = FakeUploadedFile(csv_bytes(["2024-01-02,1,2,0.5,1.5,10"]), "MSFT daily.csv")
    upload.read()   # an earlier rerun consumed it
    candles = load_candles("csv", "", interval="1d", file=upload)
    assert len(candles) == 1 and candles.attrs["symbol"] == "MSFT daily"


def test_symbol_precedence(tmp_path):
    body = "Symbol,Date,Open,High,Low,Close,Volume\nBTCUSDT,2024-01-02,1,2,0.5,1.5,10\n"
    path = tmp_path / "export.csv"
    path.write_text(body)
    assert read_candles_csv(path, symbol="My label").attrs["symbol"] == "My label"
    assert read_candles_csv(path).attrs["symbol"] == "BTCUSDT"
    path.write_text(HEADER + "2024-01-02,1,2,0.5,1.5,10\n")
    assert read_candles_csv(path).attrs["symbol"] == "export"
    assert read_candles_csv(path.read_bytes()).attrs["symbol"] == "CSV"


def test_several_symbols_need_a_choice():
    body = ("ticker,time,open,high,low,close,volume\n"
            "AAA,1704067200,1,2,0.5,1.5,10\nBBB,1704067200,5,6,4,5.5,20\n"
            "AAA,1704070800,1,2,0.5,1.5,10\nBBB,1704070800,5,6,4,5.5,20\n").encode()
    with pytest.raises(DataError, match=r"2 symbols \(AAA, BBB\); enter one"):
        read_candles_csv(body)
    picked = load_candles("csv", "bbb", file=body)
    assert picked["close"].tolist() == [5.5, 5.5] and picked.attrs["symbol"] == "bbb"
    with pytest.raises(DataError, match=r"no rows for 'CCC'; it holds AAA, BBB"):
        load_candles("csv", "CCC", file=body)


def test_start_end_filter_is_half_open():
    body = csv_bytes(hourly_rows(6), "time,open,high,low,close,volume\n")
    candles = load_candles("csv", "", "2024-01-01 01:00", "2024-01-01 03:00", file=body)
    assert list(candles.index.hour) == [1, 2]


def test_range_outside_the_file_names_its_span():
    body = csv_bytes(hourly_rows(6), "time,open,high,low,close,volume\n")
    with pytest.raises(DataError, match=r"covers 2024-01-01 00:00 to 2024-01-01 05:00 UTC; pick a range"):
        load_candles("csv", "", "2023-01-01", "2023-02-01", file=body)


def test_few_junk_rows_are_dropped_and_reported():
    rows = hourly_rows(150)
    rows[40] = "not-a-time,1,2,0.5,1.5,10"
    candles = read_candles_csv(csv_bytes(rows, "time,open,high,low,close,volume\n"))
    assert len(candles) == 149
    assert any("Dropped 1 unreadable row(s) of 150" in r and "line 42" in r
               for r in candles.attrs["repairs"])


def test_missing_values_are_dropped_by_the_validator():
    candles = read_candles_csv(csv_bytes(["2024-01-02,1,2,0.5,1.5,10", "2024-01-03,,,,,",
                                          "2024-01-04,n/a,2,0.5,1.5,10"]))
    assert len(candles) == 1
    assert any("Dropped 2 row(s) with a missing" in r for r in candles.attrs["repairs"])


def test_progress_is_reported():
    calls = []
    load_candles("csv", "", file=csv_bytes(["2024-01-02,1,2,0.5,1.5,10"]),
                 progress=lambda f, msg: calls.append((f, msg)))
    assert calls[0][0] == 0.0 and calls[-1] == (1.0, "Read 1 rows")


# --- problems an analyst must fix -----------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    (b"Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n",
     r"lacks the volume column\(s\); found 'Date', 'Open', 'High', 'Low', 'Close'"),
    (b"When,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,1.5,10\n",
     r"lacks the time column\(s\); found 'When'"),
    (csv_bytes(["2024-01-02,1,2,0.5,1.5,10", "yesterday,1,2,0.5,1.5,10"]),
     r"1 of 2 rows cannot be read: cannot read the time 'yesterday' on line 3 \(column 'Date'\)"),
    (csv_bytes(["2024-01-02,1,2,0.5,1.5,10", ",1,2,0.5,1.5,10"]), r"the time is empty on line 3"),
    (csv_bytes(["2024-01-02,$1.00,2,0.5,1.5,10"]),
     r"'\$1.00' in column 'Open' on line 2 is not a number\. Write plain numbers"),
    (csv_bytes(["2024-01-02,1,2,0.5,1.5,True"]), r"'True' in column 'Volume' on line 2"),
    (b"Date;Open;High;Low;Close;Volume\n2024-01-02;1;2;0,5;1,5;1,234.5\n",
     r"'1,234.5' in column 'Volume' on line 2 is not a number"),
    (HEADER.encode(), r"no data rows"),
    (HEADER.encode() + b"\n\n", r"no data rows"),
    (b"", r"The file is empty"),
    (b" \n\r\n", r"The file is empty"),
    (b"\x00\x01\x02\x03binary", r"binary, not CSV text"),
    (bytes(range(1, 32)) * 20, r"does not look like CSV text"),
    (b"%PDF-1.7 whatever", r"This is a PDF document, not a CSV"),
    (b"just one line of prose\n", r"No table found: the first line is 'just one line of prose'"),
    (b"2024-01-02,1,2,0.5,1.5,10\n", r"no header row \(line 1 is '2024-01-02,1,2,0.5,1.5,10'\)"),
    (b"1704067200,1,2,0.5,1.5\n", r"no header row and 5 columns"),
    (b"1704067200,1,0.5,2,1.5,10\n1704070800,1,0.5,2,1.5,10\n", r"do not read as time, open, high"),
    (b'Date,Open,High,Low,Close,Volume\n2024-01-02,"1,2,0.5,1.5,10\n', r"unclosed quote"),
    (csv_bytes(["2024-01-02,1,2,0.5,1.5,10,99"]), r"Line 2 has 7 fields but the header names 6"),
    (csv_bytes(["2024-01-02,1,2,0.5,1.5,10", "2024-01-03,1,2,0.5,1.5,10,99"]),
     r"line 3 has more fields than the header"),
    (csv_bytes(["2024-01-02,1,2,0.5,1.5,"] * 2), r"Column 'Volume' has no values"),
    (b"time,open,high,low,close,volume\n5,1,2,0.5,1.5,10\n", r"cannot read the time '5'"),
])
def test_data_errors_say_what_to_fix(content, message):
    with pytest.raises(DataError, match=message):
        read_candles_csv(content)


def test_junk_above_one_percent_is_an_error():
    rows = hourly_rows(100)
    rows[10] = f"{1704067200 + 36000},110,111,109,1O,20"
    with pytest.raises(DataError, match=r"1 of 100 rows cannot be read: '1O' in column 'close' on line 12"):
        read_candles_csv(csv_bytes(rows, "time,open,high,low,close,volume\n"))


def test_file_too_large(monkeypatch, tmp_path):
    monkeypatch.setattr(csv_source, "MAX_BYTES", 100)
    content = csv_bytes(hourly_rows(5), "time,open,high,low,close,volume\n")
    path = tmp_path / "big.csv"
    path.write_bytes(content)
    for source in (content, io.BytesIO(content), path):
        with pytest.raises(DataError, match=r"the limit is 0 MB\. Export a shorter range"):
            read_candles_csv(source)


def test_zip_is_named():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("candles.csv", HEADER)
    with pytest.raises(DataError, match=r"zip archive .* not a CSV"):
        read_candles_csv(buffer.getvalue())


def test_missing_sources(tmp_path):
    with pytest.raises(DataError, match=r"Choose a CSV file: pass path= or file="):
        load_candles("csv", "")
    with pytest.raises(DataError, match=r"No file at .*nope\.csv'?: check the path"):
        load_candles("csv", "", path=tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"is a folder"):
        read_candles_csv(tmp_path)
    with pytest.raises(DataError, match=r"Cannot read a CSV from a int"):
        read_candles_csv(42)


# --- fuzzing: malformed input only ever raises DataError --------------------------------------

VALID = [(FIXTURES / f"{g[0]}-bad.csv").read_bytes() for g in GOLDEN]


@st.composite
def mutated_valid_file(draw) -> bytes:
    content = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(content)))
        action = draw(st.sampled_from(["delete", "insert", "replace", "truncate", "duplicate"]))
        chunk = draw(st.binary(min_size=1, max_size=8) | st.sampled_from(
            [b",", b";", b"\n", b'"', b"null", b"-1", b"1e400", b"\x00", b"9" * 25, b"\xff"]))
        if action == "delete":
            del content[pos:pos + len(chunk)]
        elif action == "insert":
            content[pos:pos] = chunk
        elif action == "replace":
            content[pos:pos + len(chunk)] = chunk
        elif action == "truncate":
            del content[pos:]
        else:
            content += content[pos:]
    return bytes(content)


CSV_ALPHABET = "0123456789,;.-+:eETZ \t\n\r\"/abcnulOHLCVDdate"
malformed = st.one_of(
    st.binary(max_size=300),
    st.text(CSV_ALPHABET, max_size=300).map(str.encode),
    st.text(CSV_ALPHABET, max_size=300).map(lambda t: (HEADER + t).encode()),
    mutated_valid_file(),
)


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(malformed)
def test_malformed_csv_only_raises_data_error(content):
    try:
        candles = read_candles_csv(content)
    except DataError as exc:
        assert str(exc)
        return
    assert_canonical(candles)


# --- number formats, date orders, mislabelled columns, files that are not files -------------

def _comma_number(value: float, grouped: bool) -> str:
    """``value`` written with a decimal comma, thousands grouped by dots when ``grouped``."""
    whole, frac = f"{value:.3f}".split(".")
    if grouped:
        whole = f"{int(whole):,}".replace(",", ".")
    return f"{whole},{frac}"


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.floats(1, 99_999), st.floats(0, 5_000_000), st.booleans(), st.booleans()),
                min_size=1, max_size=12))
def test_decimal_comma_is_applied_to_every_cell_of_the_file(rows):
    lines = []
    for i, (price, volume, group_price, group_volume) in enumerate(rows):
        p = _comma_number(price, group_price)
        v = _comma_number(volume, group_volume) if volume % 1 else f"{int(volume):,}".replace(",", ".")
        lines.append(f"2024-01-{i + 1:02d};{p};{p};{p};{p};{v}")
    candles = read_candles_csv(csv_bytes(lines, "Date;Open;High;Low;Close;Volume\n"))
    expected_volume = [round(v, 3) if v % 1 else float(int(v)) for _, v, _, _ in rows]
    np.testing.assert_allclose(candles["close"], [round(p, 3) for p, _, _, _ in rows], rtol=1e-12)
    np.testing.assert_allclose(candles["volume"], expected_volume, rtol=1e-12)


def _strict_dates(texts: list[str], fmt: str) -> list[datetime.datetime] | None:
    try:
        return [datetime.datetime.strptime(t, fmt) for t in texts]
    except ValueError:
        return None


@settings(max_examples=50, deadline=None, derandomize=True)
@given(st.dates(datetime.date(2000, 1, 1), datetime.date(2030, 1, 1)), st.sampled_from([1, 2, 7, 31]),
       st.integers(2, 14), st.booleans(), st.booleans())
def test_day_month_order_is_used_only_when_it_is_not_a_guess(start, step, count, day_first, newest_first):
    dates = [start + datetime.timedelta(days=step * i) for i in range(count)]
    fmt = "%d/%m/%Y" if day_first else "%m/%d/%Y"
    texts = [d.strftime(fmt) for d in (reversed(dates) if newest_first else dates)]
    readings = [r for r in (_strict_dates(texts, "%m/%d/%Y"), _strict_dates(texts, "%d/%m/%Y"))
                if r is not None and (r == sorted(r) or r == sorted(r, reverse=True))]
    content = csv_bytes([f"{t},1,2,0.5,1.5,10" for t in texts])
    if len(readings) == 2 and readings[0] != readings[1]:
        with pytest.raises(DataError, match="ISO dates YYYY-MM-DD"):
            read_candles_csv(content)
    else:
        candles = read_candles_csv(content)
        assert list(candles.index.date) == dates


def test_volume_12_000_in_a_decimal_comma_file_is_twelve_thousand():
    candles = read_candles_csv(b"Date;Open;High;Low;Close;Volume\n2024-01-02;1,5;2,5;1,0;2,0;12.000\n"
                               b"2024-01-03;1,5;2,5;1,0;2,0;1.234,5\n")
    assert candles["volume"].tolist() == [12000.0, 1234.5]


@pytest.mark.parametrize("content, columns", [
    (b"Date;Open;High;Low;Close;Volume\n2024-01-02;1,5;2,5;1,0;2,0;12.5\n", ["'Open'", "'Volume'"]),
    (b"Date;Open;High;Low;Close;Volume\n2024-01-02;1,5;2;1;2;10\n2024-01-03;1.5;2;1;2;10\n", ["'Open'"]),
    (b'Date,Open,High,Low,Close,Volume\n2024-01-02,"1,5",2.5,1,2,10\n', ["'Open'", "'High'"]),
])
def test_a_file_mixing_number_formats_is_refused_naming_the_columns(content, columns):
    with pytest.raises(DataError, match="mixes number formats") as info:
        read_candles_csv(content)
    assert all(column in str(info.value) for column in columns)


def test_swapped_close_and_volume_headers_are_refused():
    rows = [f"{1704067200 + 3600 * i},{100 + i},{101 + i},{99 + i},{1000 + 7 * i},{100.5 + i}" for i in range(40)]
    with pytest.raises(DataError, match=r"On 40 of 40 rows column 'close' lies outside .*mislabelled"):
        read_candles_csv(csv_bytes(rows, "time,open,high,low,close,volume\n"))


def test_a_few_widened_candles_are_still_repaired():
    rows = hourly_rows(300)
    for i in (5, 50):   # two rows: at most MAX_WIDENED_ROWS
        rows[i] = f"{1704067200 + 3600 * i},{100 + i},{100 + i},{99 + i},{100.5 + i},10"
    candles = read_candles_csv(csv_bytes(rows, "time,open,high,low,close,volume\n"))
    assert any("Widened high/low on 2 candle(s)" in r for r in candles.attrs["repairs"])
    rows[90] = f"{1704067200 + 3600 * 90},190,190,189,190.5,10"   # a third, and 1% of 300
    assert read_candles_csv(csv_bytes(rows, "time,open,high,low,close,volume\n")) is not None
    rows[91] = f"{1704067200 + 3600 * 91},191,191,190,191.5,10"   # a fourth: over 1%
    with pytest.raises(DataError, match="mislabelled"):
        read_candles_csv(csv_bytes(rows, "time,open,high,low,close,volume\n"))


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_devices_are_refused_before_reading(path):
    if not Path(path).exists():
        pytest.skip(f"no {path} here")
    started = time.monotonic()
    with pytest.raises(DataError, match="not a regular file"):
        load_candles("csv", "", path=path)
    assert time.monotonic() - started < 2


def test_a_fifo_and_a_link_to_a_device_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "candles.csv"
    os.mkfifo(fifo)
    link = tmp_path / "zero.csv"
    link.symlink_to("/dev/zero")
    for path in (fifo, link):
        with pytest.raises(DataError, match="not a regular file"):
            read_candles_csv(path)
    with open(os.devnull, "rb") as handle:
        with pytest.raises(DataError, match="not a regular file"):
            read_candles_csv(handle)


def test_uploaded_bytes_have_the_same_size_cap(monkeypatch):
    monkeypatch.setattr(csv_source, "MAX_BYTES", 100)
    content = csv_bytes(hourly_rows(5), "time,open,high,low,close,volume\n")
    for source in (content, bytearray(content), memoryview(content), FakeUploadedFile(content, "a.csv")):
        with pytest.raises(DataError, match="the limit is 0 MB"):
            load_candles("csv", "", file=source)


# --------------------------------------------------------------------------- found by fuzzing

@pytest.mark.parametrize("fmt, first", [("%m/%d/%Y %I:%M %p", "01/31/2024 11:00 PM"),
                                        ("%d/%m/%Y %I:%M:%S %p", "31/01/2024 11:00:00 PM"),
                                        ("%m-%d-%Y %I:%M %p", "01-31-2024 11:00 PM")])
def test_twelve_hour_times_read_with_one_format(fmt, first):
    # pandas cannot infer these formats and would parse value by value (minutes for a big file).
    times = pd.date_range("2024-01-31 23:00", periods=30, freq="h")
    rows = [f"{t.strftime(fmt)},{100 + i},{101 + i},{99 + i},{100.5 + i},10" for i, t in enumerate(times)]
    assert rows[0].startswith(first)
    candles = load_candles("csv", "", file=csv_bytes(rows), interval="1h")
    assert list(candles.index) == list(times.tz_localize("UTC"))
    midnight = candles.index[1]
    assert (midnight.hour, midnight.day) == (0, 1)        # 12:00 AM is the start of the day


def test_blank_lines_cost_nothing_and_lines_keep_their_numbers():
    rows = hourly_rows(5)
    body = HEADER + "\n" * 200_000 + ",,,,,\n" * 1000 + "\n".join(rows[:3]) + "\n\n" + "late,1,2,0.5,1,1\n"
    with pytest.raises(DataError, match=r"'late' on line 201006 "):
        load_candles("csv", "", file=body.encode(), interval="1h")
    candles = load_candles("csv", "", file=(HEADER + "\n" * 200_000 + "\n".join(rows)).encode(), interval="1h")
    assert len(candles) == 5


def test_a_huge_bad_cell_is_quoted_short():
    rows = hourly_rows(200)
    rows[100] = rows[100].replace(rows[100].split(",")[4], "x" * 100_000)
    candles = load_candles("csv", "", file=csv_bytes(rows), interval="1h")
    repair = next(r for r in candles.attrs["repairs"] if "Dropped 1 unreadable" in r)
    assert len(repair) < 300 and "100,000 characters" in repair


def test_every_volume_infinite_names_the_column():
    rows = [row.rsplit(",", 1)[0] + ",inf" for row in hourly_rows(3)]
    with pytest.raises(DataError, match="column 'volume' has 3 of 3"):
        load_candles("csv", "", file=csv_bytes(rows), interval="1h")


def test_a_bad_time_of_day_beside_a_date_is_named_not_merged_away():
    rows = [f"2024-01-01,{h:02d}:00,1,2,0.5,1,10" for h in range(10)] + ["2024-01-01,x11:00,1,2,0.5,1,10"]
    with pytest.raises(DataError, match=r"'x11:00' on line 12 \(column 'Time'\)"):
        load_candles("csv", "", file=csv_bytes(rows, "Date,Time,Open,High,Low,Close,Volume\n"), interval="1h")
