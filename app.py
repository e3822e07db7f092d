"""Surveillance dashboard: registers the pages; the Explorer is the default.

When Streamlit's OIDC login is configured (an ``[auth]`` table in secrets.toml), visitors who
are not signed in see only the sign-in page.
"""
import streamlit as st

st.set_page_config(page_title="Market surveillance", page_icon=":material/monitoring:", layout="wide")

PAGES = [
    st.Page("app_pages/explorer.py", title="Explorer", icon=":material/candlestick_chart:", default=True),
    st.Page("app_pages/news.py", title="News", icon=":material/newspaper:"),
    st.Page("app_pages/options_flow.py", title="Options flow", icon=":material/ssid_chart:"),
    st.Page("app_pages/cases.py", title="Cases", icon=":material/gavel:"),
    st.Page("app_pages/evaluation.py", title="Evaluation & backtest", icon=":material/query_stats:"),
    st.Page("app_pages/scanner.py", title="Scanner", icon=":material/radar:"),
    st.Page("app_pages/settings.py", title="Settings", icon=":material/settings:"),
]


def sign_in() -> None:
    st.title("Market surveillance")
    st.write("Sign in to review market events. Every action you take is recorded under your account.")
    st.button("Sign in", type="primary", on_click=st.login, icon=":material/login:")


def auth_configured() -> bool:
    try:
        return "auth" in st.secrets
    except FileNotFoundError:
        return False


if auth_configured() and not st.user.get("is_logged_in", False):
    st.navigation([st.Page(sign_in, title="Sign in", icon=":material/login:")]).run()
else:
    if auth_configured():
        st.sidebar.caption(f"Signed in as {st.user.get('email') or st.user.get('name')}")
        st.sidebar.button("Sign out", on_click=st.logout)
    page = st.navigation(PAGES)
    if page.url_path in ("", "explorer") and "event" in st.query_params and "src" not in st.query_params:
        # An alert's link (the root with ?event=ID) opens that case on the Cases page.
        st.switch_page("app_pages/cases.py", query_params={"event": st.query_params["event"]})
    if page.url_path not in ("", "explorer"):
        # A zoom opened from a headline lasts for that visit to the Explorer, not every later one.
        st.session_state.pop("focus_time", None)
    page.run()
