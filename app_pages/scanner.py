"""Scanner: a watchlist or a demo universe scanned by the batch job (on Ray, in a background
process), ranked by highest severity. Progress and results are read from the scan's report
folder and its events go to the case log, so a closed tab or a rerun loses nothing."""
import os
from functools import partial

import pandas as pd
import streamlit as st

from components import controls, services, state
from components import scan as scan_ui
from components.tables import readable_detectors, readable_kind
from data import MAX_SYMBOL_LENGTH
from data.demo import MAX_UNIVERSE
from data.export import to_safe_csv
from store.watchlists import load_watchlists, save_watchlist

st.title("Scanner")
choice = controls.render_data_controls()
chosen, _, _, _ = controls.render_detector_controls()
if not chosen:
    st.info("Select at least one detector in the sidebar.")
    st.stop()
if choice.source == "csv":
    st.warning("The scanner loads symbols from a market source; pick Demo, Yahoo or Bybit.")
    st.stop()

kinds = ["Watchlist", "Demo universe"] if choice.source == "demo" else ["Watchlist"]
what = st.radio("Universe", kinds, horizontal=True, key="scan_universe_kind") if len(kinds) > 1 else kinds[0]
if what == "Demo universe":
    count = int(st.number_input("Synthetic symbols (DEMO-0001 ...), each with labelled injected events",
                                1, MAX_UNIVERSE, 50, step=10, key="scan_universe_size"))
    universe: str | list[str] = f"demo:{count}"
else:
    saved = load_watchlists(log=services.case_log())
    defaults = {"demo": "DEMO, DEMO-USD, ACME, PUMPCOIN", "yahoo": "AAPL, MSFT, NVDA, TSLA, SPY",
                "bybit": "BTCUSDT, ETHUSDT, SOLUSDT, DOGEUSDT"}
    left, right = st.columns([3, 1])
    pick = right.selectbox("Saved watchlist", ["(typed)"] + sorted(saved))
    text = left.text_area("Symbols", value=", ".join(saved[pick]) if pick in saved else defaults[choice.source],
                          help="Comma, space or newline separated.", height=80)
    universe, skipped = scan_ui.parse_symbols(text)
    if skipped:
        left.warning(f"Left out {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} over "
                     f"{MAX_SYMBOL_LENGTH} characters "
                     "(no market has such a symbol):")
        left.text(", ".join(f"{token[:40]}…" if len(token) > 40 else token for token in skipped[:5]))
    count = len(universe)
    with right.popover("Save as…"):
        name = st.text_input("Watchlist name", max_chars=40)
        if st.button("Save watchlist"):
            try:
                save_watchlist(name.strip(), universe, log=services.case_log())
                st.success(f"Saved {len(universe)} symbols.")
                st.text(f"Watchlist: {name.strip()}")
            except ValueError as exc:
                st.error("The watchlist was not saved.")
                st.text(str(exc))

cpus = os.cpu_count() or 2
workers = int(st.number_input("Ray workers (CPUs on this machine)", 1, cpus, min(2, cpus), key="scan_workers"))
if any(d.name == "lstm_autoencoder" for d in chosen):
    st.caption("The LSTM autoencoder trains on every symbol: expect tens of seconds a symbol per worker.")
if st.button(f"Scan {count} symbols", type="primary", disabled=not count):
    st.session_state["scan_pick"] = str(scan_ui.start_scan(universe, choice, chosen, workers))

scan_ui.render_alert_rules()
scans = scan_ui.recent_scans()
if not scans:
    st.caption("No scans yet. A scan runs in the background: you can leave this page and come back.")
    st.stop()


def label(status: dict) -> str:
    started = pd.Timestamp(status.get("started_at") or pd.Timestamp.now(tz="UTC"))
    if not status.get("total"):   # the job has not written its first status yet
        return f"{started:%Y-%m-%d %H:%M:%S} UTC · starting"
    return (f"{started:%Y-%m-%d %H:%M:%S} UTC · {status.get('total', 0)} symbols · "
            f"{status.get('source', '')} {status.get('interval', '')} · {status.get('state', '')}")


by_dir = {s["report_dir"]: s for s in scans}
if st.session_state.get("scan_pick") not in by_dir:
    st.session_state["scan_pick"] = scans[0]["report_dir"]     # the newest
picked = st.selectbox("Scan", list(by_dir), key="scan_pick", format_func=lambda d: label(by_dir[d]))
status = by_dir[picked]
box = st.empty()


def show(current: dict) -> None:
    total = max(int(current.get("total") or 0), 1)
    done = int(current.get("done") or 0)
    engine = current.get("engine") or "Ray (starting)"
    box.progress(min(done / total, 1.0),
                 text=f"{current.get('state')}: {done}/{total} symbols on {engine}, "
                      f"{current.get('errors', 0)} failed, {current.get('new_cases', 0)} new cases")


if status.get("state") in ("starting", "running"):
    scan_ui.follow(picked, show)
    st.rerun()      # the picker's label and the results then come from the finished status
show(status)

if status.get("state") != "done":
    st.error(f"The scan did not finish ({status.get('state')}).")
    st.text(str(status.get("message") or "See its log below."))
    log = os.path.join(picked, "scan.log")
    if os.path.exists(log):
        with open(log, encoding="utf-8", errors="replace") as handle:
            st.code("".join(handle.readlines()[-20:]) or "(empty log)", language=None)
    st.stop()

summary, _ = scan_ui.scan_results(picked)
failed = int((summary["error"] != "").sum())
if failed == len(summary):
    st.error(f"Every symbol failed ({failed} of {failed}): nothing was measured. The Problem column says why.")
elif failed:
    st.warning(f"Scan done, but {failed} of {len(summary)} symbols failed: they are listed last, unranked, "
               "with the reason in the Problem column.")
else:
    st.success("Scan done.")
st.text(str(status.get("message", "")))
recall = status.get("recall") or {}
if recall:
    found, labelled = (sum(v[i] for v in recall.values()) for i in (0, 1))
    st.caption(f"Injected demo events found: {found}/{labelled} (all kinds); per kind: "
               + ", ".join(f"{readable_kind(k)} {f}/{n}" for k, (f, n) in sorted(recall.items())))
st.caption("Ranked by highest severity. Select a row to open it in the Explorer; its events are in the "
           "case log (Cases page).")
table = summary.drop(columns=["labels", "labels_found"]) if not recall else summary
shown = table.assign(top_kind=table["top_kind"].fillna("").map(readable_kind),
                     peak_detector=table["peak_detector"].fillna("").map(readable_detectors))
when = partial(st.column_config.DatetimeColumn, format="YYYY-MM-DD HH:mm")
result = st.dataframe(shown, hide_index=True, on_select="rerun", selection_mode="single-row", key="scan_table",
                      width="stretch",
                      column_config={
                          "rank": st.column_config.NumberColumn("Rank"),
                          "symbol": st.column_config.TextColumn("Symbol"),
                          "peak_score": st.column_config.NumberColumn("Peak score", format="%.3g"),
                          "peak_detector": st.column_config.TextColumn("Peak detector"),
                          "bars": st.column_config.NumberColumn("Bars"),
                          "first_bar": when("First bar (UTC)"),
                          "last_bar": when("Last bar (UTC)"),
                          "labels": st.column_config.NumberColumn("Injected events"),
                          "labels_found": st.column_config.NumberColumn("Found"),
                          "seconds": st.column_config.NumberColumn("Seconds", format="%.2f"),
                          "max_severity": st.column_config.ProgressColumn(
                              "Highest severity", min_value=0.0, max_value=1.0, format="%.3f"),
                          "rarity": st.column_config.TextColumn("Rarity"),
                          "events": st.column_config.NumberColumn("Events"),
                          "recent_events": st.column_config.NumberColumn("Recent events"),
                          "last_event": when("Last event (UTC)"),
                          "top_kind": st.column_config.TextColumn(
                              "Worst event's kind", help="Kind of the event with the highest severity"),
                          "last_close": st.column_config.NumberColumn("Last close", format="%.2f"),
                          "return_pct": st.column_config.NumberColumn("Return %", format="%+.2f"),
                          "error": st.column_config.TextColumn("Problem")})
st.download_button("Summary (CSV)", to_safe_csv(summary), file_name="scan-summary.csv", mime="text/csv")
rows = [r for r in result.selection.rows if 0 <= r < len(table)]
symbol = str(table.iloc[rows[0]]["symbol"]) if rows and not table.iloc[rows[0]]["error"] else ""
view = scan_ui.explorer_view(status, symbol) if symbol else {}
if view:
    def open_in_explorer() -> None:
        for key, value in view.items():
            state.set_value(key, value)

    if st.button(f"Open {symbol} in the Explorer", icon=":material/open_in_new:", on_click=open_in_explorer):
        st.switch_page("app_pages/explorer.py")
