"""Safe CSV export: UTF-8, ISO-8601 UTC times, untrusted text neutralised for spreadsheets.

Every download (events, compliance summary, headlines, ...) goes through ``to_safe_csv``.
A spreadsheet runs a cell as a formula when it starts with = + - @ (also after spaces), a
tab or a CR, and it starts a new row at a bare CR or LF. So every line inside a text cell
is neutralised, not only the cell's first, and every cell holding CR or LF is quoted (rows
end in CRLF, which makes the csv writer quote both characters; with "\\n" alone it leaves a
bare CR unquoted and the cell splits into rows).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

__all__ = ["FORMULA_PREFIXES", "neutralise_cell", "to_safe_csv"]

#: A cell starting with one of these is run as a formula by Excel/LibreOffice/Sheets (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_AFTER_SPACE = ("=", "+", "-", "@")
_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")


def _is_formula(line: str) -> bool:
    # a quote may be dropped by an importer, so look past it as past spaces
    return line.startswith(FORMULA_PREFIXES) or line.lstrip().lstrip('"').lstrip() \
        .startswith(_FORMULA_AFTER_SPACE)


def neutralise_cell(value: object) -> object:
    """Prefix each line of a text cell that a spreadsheet would read as a formula with a
    single quote (also the whole cell when it starts with a tab or CR); other values as is."""
    if not isinstance(value, str):
        return value
    parts = _LINE_BREAK.split(value)   # lines at even positions, breaks at odd ones
    text = "".join("'" + part if i % 2 == 0 and _is_formula(part) else part
                   for i, part in enumerate(parts))
    return "'" + text if text.startswith(("\t", "\r", "\n")) else text


def _text_cell(value: object) -> object:
    """A cell of a text column: lists joined, missing left empty, anything else as neutralised text."""
    if isinstance(value, (list, tuple)):
        value = "; ".join(map(str, value))
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA \
            or value is pd.NaT:
        return value
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        return value
    return neutralise_cell(str(value))


def to_safe_csv(frame: pd.DataFrame) -> bytes:
    """``frame`` as CSV bytes: datetimes as ISO-8601 UTC, text cells and headers neutralised,
    numbers untouched, rows ending in CRLF (RFC 4180)."""
    out = frame.copy()
    for col in out.columns:
        series = out[col]
        if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series):
            ts = pd.to_datetime(series, utc=True)
            out[col] = ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif not pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            out[col] = series.astype(object).map(_text_cell)
    out.columns = [neutralise_cell(str(c)) for c in out.columns]
    return out.to_csv(index=False, lineterminator="\r\n").encode("utf-8")
