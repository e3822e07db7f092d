"""Scanner: a watchlist scanned with the selected detectors, ranked by highest severity."""
import streamlit as st

from components import controls, state
from components.scan import parse_symbols, scan_watchlist
from store.watchlists import load_watchlists, save_watchlist

st.title("Scanner")
choice = controls.render_data_controls()
chosen, _, _, _ = controls.render_detector_controls()
chosen = tuple(d for d in chosen if d.name != "lstm_autoencoder")
if not chosen:
    st.info("Select at least one detector in the sidebar (the LSTM is left out of scans: it trains per symbol).")
    st.stop()

saved = load_watchlists()
defaults = {"demo": "DEMO, DEMO-USD, ACME, PUMPCOIN", "yahoo": "AAPL, MSFT, NVDA, TSLA, SPY",
            "bybit": "BTCUSDT, ETHUSDT, SOLUSDT, DOGEUSDT", "csv": ""}
left, right = st.columns([3, 1])
pick = right.selectbox("Saved watchlist", ["(typed)"] + sorted(saved))
text = left.text_area("Symbols", value=", ".join(saved[pick]) if pick in saved else defaults[choice.source],
                      help="Comma, space or newline separated.", height=80)
symbols = parse_symbols(text)
with right.popover("Save as…"):
    name = st.text_input("Watchlist name", max_chars=40)
    if st.button("Save watchlist"):
        try:
            save_watchlist(name.strip(), symbols)
            st.success(f"Saved {len(symbols)} symbols as {name!r}.")
        except ValueError as exc:
            st.error(str(exc))

if choice.source == "csv":
    st.warning("The scanner loads symbols from a market source; pick Demo, Yahoo or Bybit.")
    st.stop()
if st.button(f"Scan {len(symbols)} symbols", type="primary", disabled=not symbols):
    bar = st.progress(0.0, text="Starting…")
    table = scan_watchlist(choice, symbols, chosen, {},
                           progress=lambda f, msg: bar.progress(f, text=msg))
    bar.empty()
    st.session_state["scan_result"] = table

table = st.session_state.get("scan_result")
if table is not None:
    st.caption("Ranked by highest severity, at each detector's default threshold. Select a row to open "
               "it in the Explorer.")
    result = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="single-row",
                          key="scan_table", width="stretch",
                          column_config={"max_severity": st.column_config.ProgressColumn(
                              "Highest severity", min_value=0.0, max_value=1.0, format="%.2f"),
                              "return_pct": st.column_config.NumberColumn("Return %", format="%+.2f")})
    rows = [r for r in result.selection.rows if 0 <= r < len(table)]
    if rows and not table.iloc[rows[0]]["error"]:
        symbol = table.iloc[rows[0]]["symbol"]
        if st.button(f"Open {symbol} in the Explorer", icon=":material/open_in_new:"):
            state.set_value(state.SYMBOL, symbol)
            st.switch_page("pages/explorer.py")
