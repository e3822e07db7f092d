"""Watchlist scanning on the demo market and watchlist storage."""
import datetime as dt

import pytest

from components.controls import DataChoice, DetectorChoice
from components.scan import parse_symbols, scan_watchlist
from store.watchlists import load_watchlists, save_watchlist


def test_parse_symbols():
    assert parse_symbols("aapl, MSFT\nnvda aapl") == ["AAPL", "MSFT", "NVDA"]


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
    from pathlib import Path

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
    assert any("**desk**" in m.value for m in at.markdown)
