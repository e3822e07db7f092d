"""Hostile uploads found by fuzzing the readers: each is read right or refused with a
DataError that says what to fix, at once (no cell or line can make a parser crawl)."""
from __future__ import annotations

import pandas as pd
import pytest

from data import DataError
from data.csv import read_candles_csv
from data.export import to_safe_csv
from data.labels import read_labels
from data.news import read_headlines_csv

HEADER = "Date,Open,High,Low,Close,Volume\n"
ROWS = "".join(f"2024-01-01 {h:02d}:00,1,2,0.5,1.5,3\n" for h in range(24))


@pytest.mark.parametrize("body", [
    "2024-01-01 00:00,1,2,0.5,1.5,3\r\r\n2024-01-01 01:00,1,2,0.5,1.5,3\n",   # a stray CR
    "2024-01-01 00:00,1,2,0.5,1.5,3\r2024-01-01 01:00,1,2,0.5,1.5,3\n",       # CR between rows
])
def test_a_stray_carriage_return_is_a_line_break(body):
    assert len(read_candles_csv((HEADER + body).encode())) == 2


@pytest.mark.parametrize("content, message", [
    (b"," * 65_000, "65,001 columns"),
    ((HEADER.rstrip("\n") + "," + ",".join(f"extra{i:05d}" for i in range(7000)) + "\n" + ROWS).encode(),
     "longer than 64 KiB, so it is no header"),
    ((HEADER + "x" * 400_000 + ",1,2,0.5,1.5,3\n" + ROWS).encode(), "cannot read the time 'xxx"),
    ((HEADER + 'now,1,2,0.5,1.5,3\n').encode(), "cannot read the time 'now'"),
    ((HEADER + '"2024-01-01 00:00,1,2,0.5,1.5,3\n').encode(), "a quoted cell is never closed"),
])
def test_hostile_candle_files_are_refused_by_name(content, message):
    with pytest.raises(DataError, match=message):
        read_candles_csv(content)


@pytest.mark.parametrize("content, message", [
    (b"start,end,kind\n18446744073709551616,1704110400,pump\n", "cannot read the start"),
    (b"start,end,kind\n" + b"9" * 400 + b",1704110400,pump\n", "cannot read the start"),
    (b"start,end,kind\ntoday,now,pump\n", "cannot read the start"),
    (b"start,end,kind\n2024-01-01,2024-01-02,pump,extra,more\n", "line 2 has 5 fields where the first line has 3"),
])
def test_hostile_label_files_are_refused_by_name(content, message):
    with pytest.raises(DataError, match=message):
        read_labels(content)


def test_labels_also_read_from_text():
    assert len(read_labels("start,end,kind\n2024-01-01,2024-01-02,pump_and_dump\n")) == 1


@pytest.mark.parametrize("content, message", [
    (b"," * 100_000, "first line is no header"),
    (b"a" * 1_000_000, "first line is no header"),
    (b"timestamp,headline\n" + b"x" * 1_000_000 + b",h\n", "Cannot read the timestamp 'xxx"),
    (b"timestamp,headline\nnow,a\n", "Cannot read the timestamp 'now'"),
])
def test_hostile_headline_files_are_refused_by_name_in_a_short_message(content, message):
    with pytest.raises(DataError, match=message) as caught:
        read_headlines_csv(content)
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize("cell, written", [
    ("ok;=cmd|' /C calc'!A0", "ok;'=cmd|' /C calc'!A0"),   # a ';' starts a cell in many locales
    ("＝1+1", "'＝1+1"),                                     # full-width =
    ("zscore; pump_dump", "zscore; pump_dump"),
])
def test_every_part_a_spreadsheet_may_split_off_is_neutralised(cell, written):
    assert to_safe_csv(pd.DataFrame({"text": [cell]})).decode().split("\r\n")[1] == written


def test_columns_sharing_a_name_are_each_neutralised():
    assert to_safe_csv(pd.DataFrame([["=1", "+2"]], columns=["a", "a"])) == b"a,a\r\n'=1,'+2\r\n"
