"""Session-state keys in one place, with small typed helpers.

Streamlit drops a widget's state when a page that does not draw it runs; ``kept`` keeps each
control's value in a shadow key so controls keep their values across pages.
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


def kept(key: str, default: Any) -> dict:
    """Widget arguments for a control that keeps its value across pages.

    Streamlit forgets a widget's value when a page without it runs (and a page that draws the
    same key starts it afresh), so the value lives in a shadow key: restored here before the
    widget is drawn, updated by ``on_change`` before the script reruns.
    """
    st.session_state[key] = st.session_state.setdefault(_SHADOW + key, default)
    return {"key": key, "on_change": _keep, "args": (key,)}


def _keep(key: str) -> None:
    st.session_state[_SHADOW + key] = st.session_state[key]


def value(key: str, default: Any = None) -> Any:
    """The kept value of a control, also on pages that do not draw it."""
    return st.session_state.get(_SHADOW + key, default)


def set_value(key: str, value: Any) -> None:
    """Set a control from code (another page, a button); its widget shows it on its next draw."""
    st.session_state[_SHADOW + key] = value


def threshold_key(name: str, fit_key: str) -> str:
    """Widget key of a detector's threshold slider: one per detector, data and parameters."""
    return f"threshold::{name}::{fit_key}"
