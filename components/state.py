"""Session-state keys in one place, with small typed helpers.

Streamlit drops a widget's state when a page that does not draw it runs; ``remember`` copies
each control's value to a shadow key so controls keep their values across pages.
"""
from __future__ import annotations

from typing import Any

import streamlit as st

SOURCE = "source"
SYMBOL = "symbol"
INTERVAL = "interval"
START = "start_date"
END = "end_date"
SEED = "demo_seed"
CSV_UPLOAD = "csv_upload"
DETECTORS = "detectors"
ENSEMBLE_MODE = "ensemble_mode"
ENSEMBLE_K = "ensemble_k"
EXPLAIN = "explain_on"
NEWS_CONTEXT = "news_context_on"
EVENTS_TABLE = "events_table"
CHART = "anomaly_chart"
LIVE = "live_on"
LIVE_EVERY = "live_every"
ANALYST = "analyst_name"
EMBEDDER = "embedder"
JUDGE_WEIGHT = "judge_weight"
FOCUS_TIME = "focus_time"          # set by other pages to open the Explorer at a time
CUTS = "current_thresholds"        # the Explorer's thresholds, read by the live fragment on each tick
_SHADOW = "_kept_"


def remember(key: str, default: Any) -> None:
    """Restore ``key`` from its shadow copy (or ``default``) before its widget is drawn."""
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(_SHADOW + key, default)


def keep(key: str) -> Any:
    """Copy the widget value of ``key`` to its shadow so it survives a page switch."""
    value = st.session_state.get(key)
    st.session_state[_SHADOW + key] = value
    return value


def set_value(key: str, value: Any) -> None:
    """Set a control from code (another page, a button): both the widget and its shadow."""
    st.session_state.pop(key, None)
    st.session_state[_SHADOW + key] = value


def threshold_key(name: str, fit_key: str) -> str:
    """Widget key of a detector's threshold slider: one per detector, data and parameters."""
    return f"threshold::{name}::{fit_key}"
