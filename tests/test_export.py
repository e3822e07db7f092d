"""CSV export: ISO UTC times, numbers untouched, formula-looking text neutralised, also on
every line inside a cell, read the way spreadsheets read a file."""
import csv
import io
import re

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.export import neutralise_cell, to_safe_csv

FORMULA_START = ("=", "+", "-", "@")


@pytest.mark.parametrize("cell, expected", [
    ("=1+1", "'=1+1"), ("+SUM(A1)", "'+SUM(A1)"), ("-2+3", "'-2+3"), ("@cmd", "'@cmd"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("plain", "plain"), ("", ""), (-1.5, -1.5), (None, None),
    ("\r=1+1", "'\r'=1+1"), ("ok\n=cmd()", "ok\n'=cmd()"), ("ok\r\n  @x", "ok\r\n'  @x"),
    ("  =1+1", "'  =1+1"), ('"=1+1', "'\"=1+1"), ("a\rb\nc", "a\rb\nc"),
])
def test_neutralise_cell(cell, expected):
    assert neutralise_cell(cell) == expected


def test_to_safe_csv_round_trip():
    frame = pd.DataFrame({
        "start": pd.to_datetime(["2024-01-01 10:00"]).tz_localize("America/New_York"),
        "return_pct": [-3.25],
        "headline": ['=HYPERLINK("http://evil","click")'],
        "explanation": ["Volume 6.2x; price −0.4%"],
        "grounded": [True],
    })
    text = to_safe_csv(frame).decode("utf-8")
    back = pd.read_csv(io.StringIO(text))
    assert back.loc[0, "start"] == "2024-01-01T15:00:00Z"
    assert back.loc[0, "return_pct"] == -3.25
    assert back.loc[0, "headline"].startswith("'=")
    assert back.loc[0, "explanation"] == "Volume 6.2x; price −0.4%"


def _is_formula(line: str) -> bool:
    """As a spreadsheet reads a line's start: a formula after spaces (and an opening quote),
    or a tab."""
    return line.startswith("\t") or line.lstrip().lstrip('"').lstrip().startswith(FORMULA_START)


def _records_outside_quotes(text: str) -> list[str]:
    """Records split at every CR, LF or CRLF outside quotes (how a spreadsheet splits rows)."""
    records, current, quoted = [], [], False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            quoted = not quoted
        if ch in "\r\n" and not quoted:
            records.append("".join(current))
            current = []
            if text[i:i + 2] == "\r\n":
                i += 1
        else:
            current.append(ch)
        i += 1
    records.append("".join(current))
    return records


def _assert_spreadsheet_safe(data: bytes) -> None:
    text = data.decode("utf-8")
    for row in csv.reader(io.StringIO(text, newline="")):
        for cell in row:
            for line in re.split(r"\r\n|\r|\n", cell):
                assert not _is_formula(line), (cell, line)
    for record in _records_outside_quotes(text):
        assert not _is_formula(record), record
    for line in re.split(r"\r\n|\r|\n", text):   # even a reader that ignores quotes
        assert not _is_formula(line), line


NASTY = st.lists(st.sampled_from(list("=+-@\t\r\n \"',;a1") + ["\r\n", "\u00a0", "\u3000", "é"]),
                 max_size=20).map("".join)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.tuples(NASTY, NASTY), min_size=1, max_size=5), NASTY)
def test_no_line_of_any_cell_starts_a_formula(cells, header):
    frame = pd.DataFrame(cells, columns=["headline", header + "x"])
    data = to_safe_csv(frame)
    _assert_spreadsheet_safe(data)
    back = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert len(back) == len(cells) + 1   # a bare CR or LF never makes a new row
    for (headline, _), row in zip(cells, back[1:]):
        assert row[0].replace("'", "") == headline.replace("'", "")   # only quotes were added


def test_bare_cr_is_quoted_and_does_not_split_the_row():
    data = to_safe_csv(pd.DataFrame({"headline": ["\r=1+1", "plain"], "n": [1, 2]}))
    assert data.startswith(b"headline,n\r\n\"'\r'=1+1\",1\r\n")
    _assert_spreadsheet_safe(data)
    assert pd.read_csv(io.BytesIO(data))["n"].tolist() == [1, 2]


def test_objects_lists_and_missing_values():
    frame = pd.DataFrame({"detectors": [["zscore", "=evil"], None],
                          "note": [RuntimeError("boom\n=HYPERLINK(1)"), pd.NA],
                          "score": [0.5, float("nan")]})
    data = to_safe_csv(frame)
    _assert_spreadsheet_safe(data)
    back = pd.read_csv(io.BytesIO(data))
    assert back.loc[0, "detectors"] == "zscore;' =evil"   # a ';' starts a cell in many locales
    assert back.loc[0, "note"] == "boom\n'=HYPERLINK(1)" and pd.isna(back.loc[1, "note"])
    assert back["score"].iloc[0] == 0.5 and pd.isna(back["score"].iloc[1])
