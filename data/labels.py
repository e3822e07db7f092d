"""Labelled events uploaded as CSV (start, end, kind): the ground truth the Evaluation page
scores detectors against. Times and cells are read as the candle reader reads them."""
from __future__ import annotations

import io
import re

import pandas as pd

from data import DataError
from data.csv import STRING_FIRST, epoch_times, excerpt, parser_detail, plausible, time_like, without_blank_lines

__all__ = ["read_labels", "MAX_LABELS"]

#: Labels one upload may hold: far more than analysts label by hand, few enough to evaluate quickly.
MAX_LABELS = 20_000
_LABEL_TIME_HINT = "write times as ISO 8601, e.g. 2024-01-31 14:00 (UTC unless an offset is given), or as epoch seconds"


def read_labels(raw: bytes) -> pd.DataFrame:
    """Labels uploaded as CSV with columns start, end, kind (times read as UTC).

    Times are ISO 8601 text or epoch numbers (unit by magnitude, as for candles). Any problem
    is a DataError naming the line and what to fix; it quotes cells, shortened, so the page
    shows it as plain text.
    """
    try:
        text = raw.lstrip("\ufeff") if isinstance(raw, str) else bytes(raw).decode("utf-8-sig")
    except (UnicodeDecodeError, TypeError) as exc:
        raise DataError("The labels file is not UTF-8 text: save it as a UTF-8 CSV.") from exc
    # Blank lines are dropped here, not by pandas, so each row keeps its line number in the file.
    body, numbers = without_blank_lines(text.replace("\r\n", "\n").replace("\r", "\n"), ",")
    if not len(numbers):
        raise DataError("The labels file is empty: write a header start,end,kind and one label per line.")
    try:
        table = pd.read_csv(io.BytesIO(body), header=None, dtype=str, keep_default_na=False,
                            skip_blank_lines=False)
    except ValueError as exc:   # pandas' ParserError is a ValueError
        detail = re.sub(r"line (\d+)", lambda m: f"line {numbers[min(int(m[1]), len(numbers)) - 1]}",
                        parser_detail(exc))
        raise DataError(f"Cannot split the labels file into columns ({detail[:80]}): give every line "
                        "the three fields start,end,kind.") from exc
    names = [str(c).strip().lower() for c in table.iloc[0]]
    for name in ("start", "end", "kind"):
        if names.count(name) > 1:
            raise DataError(f"The labels file has {names.count(name)} columns named {name} (in any case): "
                            "keep one.")
    missing = {"start", "end", "kind"} - set(names)
    if missing:
        raise DataError(f"The labels file needs columns start, end, kind; missing {', '.join(sorted(missing))}.")
    rows = table.iloc[1:, [names.index(n) for n in ("start", "end", "kind")]].fillna("")
    rows.columns = ["start", "end", "kind"]
    rows = rows.apply(lambda column: column.str.strip())
    # A quoted cell over several lines makes fewer rows than lines: then count rows instead.
    rows.index = pd.Index(numbers[1:]) if len(numbers) == len(table) else pd.RangeIndex(2, len(table) + 1)
    if len(rows) > MAX_LABELS:
        raise DataError(f"The labels file has {len(rows):,} labels; at most {MAX_LABELS:,} are evaluated: "
                        "split it, or keep the labels of the range you load.")
    for name, what in (("start", "a time, e.g. 2024-01-31 14:00"), ("end", "a time, e.g. 2024-01-31 14:00"),
                       ("kind", "the kind of event, e.g. pump_and_dump")):
        _check_cells(rows[name] == "", rows, name, f"the {name} is empty: write {what}")
    times = _label_times(pd.concat([rows["start"], rows["end"]], ignore_index=True))
    start, end = times.iloc[:len(rows)].set_axis(rows.index), times.iloc[len(rows):].set_axis(rows.index)
    for name, values in (("start", start), ("end", end)):
        _check_cells(values.isna(), rows, name,
                     f"cannot read the {name} as a time between 1900 and 2200: {_LABEL_TIME_HINT}")
    _check_cells(end < start, rows, "end", "the end is before the start: swap them or fix the times")
    return pd.DataFrame({"start": start, "end": end, "kind": rows["kind"]}).reset_index(drop=True)


def _label_times(cells: pd.Series) -> pd.Series:
    """Label cells as UTC times: numbers are epoch times (one unit for the file, by magnitude),
    the rest ISO 8601; NaT where unreadable or outside the years candles may have."""
    numeric = cells.str.fullmatch(r"[+-]?\d+(?:\.\d+)?")
    times = plausible(pd.to_datetime(time_like(cells).where(~numeric), format="ISO8601", utc=True, errors="coerce"),
                       STRING_FIRST)
    if numeric.any():
        times[numeric] = epoch_times(cells[numeric])
    return times


def _check_cells(bad: pd.Series, rows: pd.DataFrame, column: str, problem: str) -> None:
    """DataError naming the first bad line (its cell, shortened) and how many more there are."""
    if bad.any():
        line = bad.index[bad.to_numpy()][0]
        more = int(bad.sum()) - 1
        also = f" ({more:,} more line{'s' if more > 1 else ''} like it)" if more else ""
        value = rows.at[line, column]
        raise DataError(f"Line {line} of the labels file{also}: {problem}"
                        + (f" ({column} is {excerpt(value)})." if value else "."))
