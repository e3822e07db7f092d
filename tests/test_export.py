"""CSV export: ISO UTC times, numbers untouched, formula-looking text neutralised."""
import io

import pandas as pd
import pytest

from data.export import neutralise_cell, to_safe_csv


@pytest.mark.parametrize("cell, expected", [
    ("=1+1", "'=1+1"), ("+SUM(A1)", "'+SUM(A1)"), ("-2+3", "'-2+3"), ("@cmd", "'@cmd"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("plain", "plain"), ("", ""), (-1.5, -1.5), (None, None),
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
