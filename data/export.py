"""Safe CSV export: UTF-8, ISO-8601 UTC times, untrusted text neutralised for spreadsheets.

Every download (events, compliance summary, headlines, ...) goes through ``to_safe_csv``.
A spreadsheet runs a cell as a formula when it starts with = + - @ (also after spaces), a
tab or a CR, and it starts a new row at a bare CR or LF and a new cell at a ';' (the list
separator of many locales). So every line and every such part of a text cell is
neutralised, not only the cell's first, and every cell holding CR or LF is quoted (rows
end in CRLF, which makes the csv writer quote both characters; with "\\n" alone it leaves a
bare CR unquoted and the cell splits into rows).
"""
from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd

__all__ = ["FORMULA_PREFIXES", "neutralise_cell", "to_safe_csv"]

#: A cell starting with one of these is run as a formula by Excel/LibreOffice/Sheets (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_AFTER_SPACE = ("=", "+", "-", "@", "\u2212")
_CELL_BREAK = re.compile(r"(\r\n|\r|\n|;)")   # a new row, or a new cell in many locales


def _is_formula(line: str) -> bool:
    # a quote may be dropped by an importer, so look past it as past spaces; full-width and
    # small variants (＝, ﹢) are read as the ASCII sign by some importers
    first = unicodedata.normalize("NFKC", line.lstrip().lstrip('"').lstrip()[:1])
    return line.startswith(FORMULA_PREFIXES) or first.startswith(_FORMULA_AFTER_SPACE)


def neutralise_cell(value: object) -> object:
    """Prefix each line of a text cell that a spreadsheet would read as a formula with a
    single quote (also the whole cell when it starts with a tab or CR); other values as is."""
    if not isinstance(value, str):
        return value
    parts = _CELL_BREAK.split(value)   # lines (or parts) at even positions, breaks at odd ones
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
    for position in range(out.shape[1]):   # by position: two columns may share a name
        series = out.iloc[:, position]
        if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series):
            ts = pd.to_datetime(series, utc=True)
            out.isetitem(position, ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        elif not pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            out.isetitem(position, series.astype(object).map(_text_cell))
    out.columns = [neutralise_cell(str(c)) for c in out.columns]
    return out.to_csv(index=False, lineterminator="\r\n").encode("utf-8")
