"""Watchlist scanning on the demo market and watchlist storage."""
import datetime as dt
from pathlib import Path

import pytest

from components.controls import DataChoice, DetectorChoice
from components.scan import parse_symbols, scan_watchlist
from store.watchlists import load_watchlists, save_watchlist


def test_parse_symbols():
    assert parse_symbols("aapl, MSFT\nnvda aapl") == (["AAPL", "MSFT", "NVDA"], [])
    assert parse_symbols("aapl " + "x" * 33) == (["AAPL"], ["X" * 33])


def test_scan_ranks_by_severity_and_reports_errors():
    base = DataChoice("demo", "DEMO", "1h", dt.date(2024, 1, 1), dt.date(2024, 2, 15), seed=3)
    calls = []
    table = scan_watchlist(base, ["DEMO", "DEMO-USD", "NOPE"], (DetectorChoice("zscore", ()),), {},
                           progress=lambda f, msg: calls.append(f))
    assert list(table["symbol"])[-1] == "NOPE" and table["error"].iloc[-1]
    ok = table[table["error"] == ""]
    assert len(ok) == 2 and (ok["events"] > 0).all()
    assert list(ok["max_severity"]) == sorted(ok["max_severity"], reverse=True)
    assert calls[-1] == 1.0


def test_watchlists_round_trip():
    save_watchlist("tech", ["AAPL", "MSFT"])
    assert load_watchlists() == {"tech": ["AAPL", "MSFT"]}
    with pytest.raises(ValueError):
        save_watchlist("../etc", ["X"])


# ---- the Scanner page: the batch job in the background ----------------------------------------

def _scanner(at_start=dt.date(2024, 1, 1), at_end=dt.date(2024, 1, 14)):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=180)
    at.secrets["test"] = "1"
    at.session_state["start_date"] = at_start
    at.session_state["end_date"] = at_end
    at.run()
    at.switch_page("app_pages/scanner.py").run()
    return at


def test_scanner_page_scans_in_the_background_and_a_new_session_sees_the_result():
    at = _scanner()
    assert not at.exception
    at.radio(key="scan_universe_kind").set_value("Demo universe").run()
    at.number_input(key="scan_universe_size").set_value(2).run()
    at.number_input(key="scan_workers").set_value(1).run()
    next(b for b in at.button if b.label == "Scan 2 symbols").click().run()   # follows it to the end
    assert not at.exception, at.exception
    assert at.success and any("on ray local, 1 CPU" in t.value for t in at.text), [e.value for e in at.error]
    table = at.dataframe[0].value
    assert sorted(table["symbol"]) == ["DEMO-0001", "DEMO-0002"] and list(table["rank"]) == [1, 2]
    picker = at.selectbox(key="scan_pick")
    assert picker.format_func(picker.value).endswith("· done"), picker.format_func(picker.value)

    # A closed tab loses nothing: a fresh session lists the scan and shows its results unasked.
    again = _scanner()
    assert not again.exception
    assert again.dataframe[0].value.equals(table)
    assert again.selectbox(key="scan_pick").value == at.selectbox(key="scan_pick").value

    # Opening a scanned symbol shows the scan's events in the Explorer, under the same ids, so
    # the case log knows them (it used to open the generator symbol behind DEMO-0002 instead).
    from components.scan import explorer_view, scan_results
    from scan.job import read_status
    report = at.selectbox(key="scan_pick").value
    summary, scanned = scan_results(report)

    view = explorer_view(read_status(report), "DEMO-0002")
    assert view["symbol"] == "DEMO-0002" and view["end_date"] == dt.date(2024, 1, 14)
    from streamlit.testing.v1 import AppTest
    explorer = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=180)
    explorer.secrets["test"] = "1"
    for key, value in {**view, "events_table_open": True}.items():   # as the button's callback leaves them
        explorer.session_state[key] = value
    explorer.run()
    assert not explorer.exception, explorer.exception
    assert explorer.selectbox(key="symbol").value == "DEMO-0002"
    shown = explorer.dataframe[0].value
    mine = scanned[scanned["symbol"] == "DEMO-0002"]
    assert len(mine) and sorted(shown["start"]) == sorted(mine["start"])
    assert (shown["status"] == "new").all()   # every one is the scan's case in the case log


def test_a_scan_where_every_symbol_failed_is_no_success():
    """Found in Chromium: a scan whose five symbols all failed said "Scan done." in green and
    ranked the failures 1 to 5."""
    at = _scanner()
    at.text_area[0].set_value("NOPE, NADA").run()
    at.number_input(key="scan_workers").set_value(1).run()
    next(b for b in at.button if b.label == "Scan 2 symbols").click().run()
    assert not at.exception, at.exception
    assert not at.success
    assert any(e.value.startswith("Every symbol failed (2 of 2)") for e in at.error)
    assert at.dataframe[0].value["rank"].isna().all()


def test_alert_rules_are_set_on_the_scanner_page_and_kept_in_the_case_database():
    from alerts import AlertBook
    from store.cases import CaseLog
    at = _scanner()
    by_label = {w.label: w for w in at.text_input}
    by_label["Rule name"].set_value("desk")
    by_label["Webhook URL or e-mail address"].set_value("desk@example.com")
    by_label["Symbols"].set_value("AAPL, MSFT")
    next(s for s in at.selectbox if s.label == "Channel").set_value("email")
    next(b for b in at.button if b.label == "Add rule").click().run()
    assert not at.exception, at.exception
    log = CaseLog()
    [rule] = AlertBook(log.engine).rules()
    log.close()
    assert (rule.name, rule.channel, rule.target, rule.symbols, rule.min_severity) == (
        "desk", "email", "desk@example.com", "AAPL, MSFT", 0.9)
    assert any(t.value.startswith("desk: ") for t in at.text)   # plain text, not markdown


# ---- universes and the csv-folder source (scan.universe) -------------------------------------

def _candle_csv(path):
    path.write_text("Date,Open,High,Low,Close,Volume\n"
                    + "".join(f"2024-01-{i + 1:02d},1,2,0.5,1,10\n" for i in range(20)))


@pytest.fixture
def csv_folder(tmp_path):
    """folder/AAPL.csv inside, outside.csv beside it, folder/A a subfolder (so A/.. resolves),
    and folder/LINK.csv a symbolic link to outside.csv."""
    folder = tmp_path / "folder"
    (folder / "A").mkdir(parents=True)
    _candle_csv(folder / "AAPL.csv")
    _candle_csv(tmp_path / "outside.csv")
    (folder / "LINK.csv").symlink_to(tmp_path / "outside.csv")
    return folder


def test_csv_folder_reads_a_symbol_file(csv_folder):
    from scan.universe import load_symbol
    candles, labels = load_symbol("csv-folder", "AAPL", "1d", None, None, folder=str(csv_folder))
    assert len(candles) == 20 and labels is None and candles.attrs["symbol"] == "AAPL"


@pytest.mark.parametrize("symbol, message", [
    ("A/../../outside", "without /"), ("A/../AAPL", "without /"), ("../outside", "first character"),
    ("", "without /"), ("LINK", "links outside that folder"), ("NOPE", "No file NOPE.csv"),
    ("AAPL\x00", "character"),
])
def test_csv_folder_refuses_symbols_that_leave_the_folder(csv_folder, symbol, message):
    from data import DataError
    from scan.universe import load_symbol
    with pytest.raises(DataError, match=message):
        load_symbol("csv-folder", symbol, "1d", None, None, folder=str(csv_folder))


@pytest.mark.parametrize("text, expected", [
    ("symbol,name\nAAPL,Apple\nMSFT,Micro\n", ["AAPL", "MSFT"]),
    ("Symbol,Name\nAAPL,x\n", ["AAPL"]),
    ("SYMBOL\nAAPL\n", ["AAPL"]),
    (" symbol ,name\nAAPL,x\n", ["AAPL"]),
    ('"symbol",name\nAAPL,x\n', ["AAPL"]),
    ("\ufeffsymbol,name\nAAPL,x\n", ["AAPL"]),
    ("name,Symbol\nApple,AAPL\nMicro,MSFT\n", ["AAPL", "MSFT"]),
    ("symbol\n1.50\n007\n", ["1.50", "007"]),
    ("symbol,name\nAAPL,x,y,z\nMSFT\n", ["AAPL", "MSFT"]),
    ("AAPL\nMSFT\n", ["AAPL", "MSFT"]),
])
def test_universe_csv_reads_the_symbol_column_in_any_case(tmp_path, text, expected):
    from scan.universe import parse_universe
    path = tmp_path / "u.csv"
    path.write_text(text, encoding="utf-8")
    assert parse_universe(str(path)) == expected


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", b"", "lists no symbols"),
    ("header.csv", b"symbol\n", "lists no symbols"),
    ("ticker.csv", b"ticker,name\nAAPL,x\n", "no symbol column .*name the column of symbols 'symbol'"),
    ("unclosed.csv", b'symbol,name\n"AAPL,x\n', "not a readable CSV .*check its quotes"),
    ("latin1.txt", "AAPL\nCAF\xe9\n".encode("latin-1"), "not UTF-8 text .*save it as UTF-8"),
    ("utf16.txt", "AAPL\n".encode("utf-16"), "save it as UTF-8"),
    ("utf16.csv", "symbol\nAAPL\n".encode("utf-16"), "save it as UTF-8"),
    ("binary.txt", bytes(range(256)), "save it as UTF-8"),
])
def test_universe_files_that_cannot_be_read_say_what_to_fix(tmp_path, name, content, message):
    from scan.universe import parse_universe
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as caught:
        parse_universe(str(path))
    assert type(caught.value) is ValueError


@pytest.mark.parametrize("spec, message", [
    ("demo:100000000000", "1 to 10,000 symbols"), ("demo:10001", "1 to 10,000 symbols"),
    ("demo:0", "1 to 10,000 symbols"), ("demo:-3", "1 to 10,000 symbols"),
    ("demo:lots", "whole number"), ("demo:5.0", "whole number"),
])
def test_demo_universe_size_is_bounded(spec, message):
    from scan.universe import parse_universe
    with pytest.raises(ValueError, match=message):
        parse_universe(spec)


def test_demo_universe_up_to_the_cap():
    from data.demo import MAX_UNIVERSE
    from scan.universe import demo_universe, parse_universe
    assert parse_universe(f"demo:{MAX_UNIVERSE}")[-1] == "DEMO-10000"
    with pytest.raises(ValueError, match="10,000"):
        demo_universe(True)


def test_a_symbol_too_long_is_named_not_dropped_silently():
    at = _scanner()
    at.text_area[0].set_value("DEMO, " + "Q" * 50).run()
    assert not at.exception
    assert any("over 32 characters" in w.value for w in at.warning)
    assert any(("Q" * 40 + "…") in t.value for t in at.text)
    assert any(b.label == "Scan 1 symbols" for b in at.button)


@pytest.mark.parametrize("status, expected", [
    ({"source": "demo", "interval": "1d", "start": "", "end": "", "seed": 3, "detectors": ["zscore"]},
     {"source": "demo", "symbol": "DEMO-0001", "interval": "1d", "demo_seed": 3, "detectors": ["zscore"]}),
    ({"source": "yahoo", "interval": "1h", "start": "2024-01-01", "end": "2024-02-01", "detectors": ["nope"]},
     {"source": "yahoo", "symbol": "DEMO-0001", "interval": "1h", "start_date": dt.date(2024, 1, 1),
      "end_date": dt.date(2024, 1, 31)}),
    ({"source": "csv-folder", "interval": "1h"}, {}),
])
def test_explorer_view_of_a_scan_takes_only_what_the_explorer_can_show(status, expected):
    from components.scan import explorer_view
    assert explorer_view(status, "DEMO-0001") == expected
