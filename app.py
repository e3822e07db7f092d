"""Surveillance dashboard: registers the pages; the Explorer is the default."""
import streamlit as st

st.set_page_config(page_title="Market surveillance", page_icon=":material/monitoring:", layout="wide")

PAGES = [
    st.Page("pages/explorer.py", title="Explorer", icon=":material/candlestick_chart:", default=True),
    st.Page("pages/news.py", title="News", icon=":material/newspaper:"),
    st.Page("pages/options_flow.py", title="Options flow", icon=":material/ssid_chart:"),
    st.Page("pages/cases.py", title="Cases", icon=":material/gavel:"),
    st.Page("pages/evaluation.py", title="Evaluation & backtest", icon=":material/query_stats:"),
    st.Page("pages/scanner.py", title="Scanner", icon=":material/radar:"),
    st.Page("pages/settings.py", title="Settings", icon=":material/settings:"),
]

st.navigation(PAGES).run()
