"""Labels uploaded on the Evaluation page: what read_labels accepts, and what the page shows."""
from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import data.labels as labels_module
from data import DataError
from data.labels import read_labels

pytestmark = pytest.mark.xdist_group("apptest")
ROOT = Path(__file__).resolve().parent.parent
HEADER = "start,end,kind\n"
HOSTILE = "**pwn** [click](http://evil.example) ![x](http://evil.example/t.png)"


def read(text: str) -> pd.DataFrame:
    return read_labels(text.encode())


def test_iso_and_epoch_times_read_alike():
    iso = read(HEADER + "2024-01-21 06:00,2024-01-21T14:00+02:00,pump\n")
    assert iso["start"].tolist() == [pd.Timestamp("2024-01-21 06:00", tz="UTC")]
    assert iso["end"].tolist() == [pd.Timestamp("2024-01-21 12:00", tz="UTC")]
    assert str(iso["start"].dtype) == "datetime64[ns, UTC]"
    for scale in (1, 1_000, 1_000_000, 1_000_000_000):   # seconds, ms, us, ns: unit by magnitude
        epoch = read(HEADER + f"{1705816800 * scale},{1705838400 * scale},pump\n")
        pd.testing.assert_frame_equal(epoch, iso)


def test_headers_in_any_case_extra_columns_and_blank_lines():
    labels = read("\n Start ,END,Kind,note\n\n2024-01-21,2024-01-22, pump ,x\n\n")
    assert labels.to_dict("records") == [{"start": pd.Timestamp("2024-01-21", tz="UTC"),
                                          "end": pd.Timestamp("2024-01-22", tz="UTC"), "kind": "pump"}]
    with pytest.raises(DataError, match="Line 5 .*end is before the start"):  # lines counted as in the file
        read(HEADER + "2024-01-21,2024-01-22,pump\n\n\n2024-01-23,2024-01-22,pump\n")


@pytest.mark.parametrize("cell", ["1677-01-01", "9999-01-01", "2263-01-06", "1e300", "-5"])
def test_times_outside_the_candle_years_name_the_cell(cell):
    with pytest.raises(DataError, match=f"Line 2 .*{cell}"):
        read(HEADER + f"2024-01-21,{cell},pump\n")


@pytest.mark.parametrize(("text", "match"), [
    (HEADER + "2024-01-22,2024-01-21,pump\n", "Line 2 .*the end is before the start"),
    (HEADER + "2024-01-21,2024-01-22,pump\n,2024-01-22,pump\n,2024-01-22,pump\n",
     r"Line 3 .*\(1 more line like it\): the start is empty"),
    (HEADER + "2024-01-21,,pump\n", "Line 2 .*the end is empty"),
    (HEADER + "2024-01-21,2024-01-22, \n", "Line 2 .*the kind is empty"),
    ("start,Start,end,kind\n2024-01-21,2024-01-20,2024-01-22,pump\n", "2 columns named start"),
    ("start,end\n2024-01-21,2024-01-22\n", "missing kind"),
    (HEADER + "2024-01-21,2024-01-22,pump,extra\n", "line 2 has 4 fields where the first line has 3"),
    ("", "empty"),
])
def test_problems_say_which_line_and_what_to_fix(text, match):
    with pytest.raises(DataError, match=match):
        read(text)


def test_not_utf8_is_a_data_error():
    with pytest.raises(DataError, match="UTF-8"):
        read_labels((HEADER + "2024-01-21,2024-01-22,café\n").encode("latin-1"))


def test_an_unreadable_time_is_our_short_message_not_pandas_advice():
    with pytest.raises(DataError) as caught:
        read(HEADER + f"{HOSTILE * 5},2024-01-22,pump\n")
    message = str(caught.value)
    assert message.startswith("Line 2 ") and "ISO 8601, e.g. 2024-01-31 14:00" in message
    assert "\n" not in message and "You might want to try" not in message and "format" not in message
    assert repr((HOSTILE * 5)[:80]) + "… (340 characters)" in message and len(message) < 320


def test_the_number_of_labels_is_capped(monkeypatch):
    monkeypatch.setattr(labels_module, "MAX_LABELS", 3)
    assert len(read(HEADER + "2024-01-21,2024-01-22,pump\n" * 3)) == 3
    with pytest.raises(DataError, match="4 labels; at most 3"):
        read(HEADER + "2024-01-21,2024-01-22,pump\n" * 4)


# --- the page -----------------------------------------------------------------------------

class Upload(io.BytesIO):
    """What st.file_uploader returns (AppTest cannot upload files)."""
    name, type, file_id = "labels.csv", "text/csv", "labels"


@pytest.fixture
def upload(monkeypatch):
    """Set the labels the page's uploader returns; every other uploader returns nothing."""
    chosen: dict[str, bytes] = {}

    def file_uploader(label, *args, **kwargs):
        return Upload(chosen["labels"]) if label.startswith("Labels CSV") and "labels" in chosen else None
    monkeypatch.setattr(st, "file_uploader", file_uploader)
    return lambda text: chosen.update(labels=text.encode())


def evaluation_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.secrets["test"] = "1"
    at.session_state["start_date"] = dt.date(2024, 1, 1)
    at.session_state["end_date"] = dt.date(2024, 2, 20)
    at.run()
    return at.switch_page("app_pages/evaluation.py").run()



def test_labels_outside_the_candles_are_a_message_not_a_crash(upload):
    upload(HEADER + "2020-01-01,2020-01-02,pump\n")
    at = evaluation_page()
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == ["No label falls on a loaded candle, so there is nothing to evaluate."]
    detail = at.text[-1].value
    assert "The candles cover 2024-01-" in detail and "The labels cover 2020-01-01 00:00 to 2020-01-02 00:00" in detail
    assert not at.get("plotly_chart")


def test_kinds_that_leave_no_label_in_range_are_a_message(upload):
    upload(HEADER + "2024-01-21 06:00,2024-01-21 12:00,pump\n2020-01-01,2020-01-02,spoof\n")
    at = evaluation_page()
    assert not at.exception and not at.warning
    kinds = next(m for m in at.multiselect if m.label.startswith("Label kinds"))
    at = kinds.set_value(["spoof"]).run()
    assert not at.exception, at.exception
    assert at.warning and "The labels of the chosen kinds cover 2020-01-01" in at.text[-1].value


def test_epoch_second_labels_are_evaluated(upload):
    upload(HEADER + "1705816800,1705838400,pump\n")
    at = evaluation_page()
    assert not at.exception, at.exception
    assert (at.dataframe[0].value["Labels"] == 1).all()


def test_a_bad_cell_is_shown_as_plain_text(upload):
    upload(HEADER + f"{HOSTILE},2024-01-22,pump\n")
    at = evaluation_page()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["Cannot read the labels file: fix what is named below and upload it again."]
    assert any(HOSTILE in t.value for t in at.text)
    rendered = [m.value for m in [*at.markdown, *at.caption, *at.error, *at.warning, *at.info]]
    assert not any("evil.example" in value for value in rendered)
