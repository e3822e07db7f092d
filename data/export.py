"""Safe CSV export: UTF-8, ISO-8601 UTC times, untrusted text neutralised for spreadsheets."""
from __future__ import annotations

import pandas as pd

#: A cell starting with one of these is run as a formula by Excel/LibreOffice/Sheets (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: object) -> object:
    """Prefix a text cell that a spreadsheet would read as a formula with a single quote."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def to_safe_csv(frame: pd.DataFrame) -> bytes:
    """``frame`` as CSV bytes: datetimes as ISO-8601 UTC, text cells neutralised, numbers untouched."""
    out = frame.copy()
    for col in out.columns:
        series = out[col]
        if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series):
            ts = pd.to_datetime(series, utc=True)
            out[col] = ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif not pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            out[col] = series.map(lambda v: neutralise_cell("; ".join(map(str, v))
                                                            if isinstance(v, (list, tuple)) else v))
    return out.to_csv(index=False, lineterminator="\n").encode("utf-8")
