"""Session-state keys in one place, with small typed helpers.

Controls keep their values across pages through Streamlit's own ``persist_state``; the view
(data, detectors, thresholds, selected event) also lives in the URL (``components.links``).
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
EVENTS_TABLE_GENERATION = "events_table_generation"   # bumped to clear a stale row pick
EVENTS_TABLE_OPEN = "events_table_open"   # the analyst opened the events table (kept across pages, in links)
CHART = "anomaly_chart"
LIVE = "live_on"
LIVE_EVERY = "live_every"
ANALYST = "analyst_name"
EMBEDDER = "embedder"
JUDGE_WEIGHT = "judge_weight"
FOCUS_TIME = "focus_time"          # {"key": data key, "time": ...}: open the Explorer zoomed there once
                                   # (app.py drops it when another page runs)
EVENT = "selected_event"           # event_id open in the Explorer (table, J/K keys, links)
CUTS = "current_thresholds"        # the Explorer's thresholds, read by the live fragment on each tick


def kept(key: str, default: Any, then: Any = None) -> dict:
    """Widget arguments for a control that keeps its value across pages and reruns.

    Streamlit keeps the value itself (``persist_state="session"``) while pages without the
    control run; writing it back before each draw hands it to the same control drawn on
    another page (a new widget there). The default is used only the first time, so a value
    set from code or from a link wins. ``then`` runs after the analyst changes the control.
    """
    st.session_state[key] = st.session_state.get(key, default)
    args = {"key": key, "persist_state": "session"}
    if then is not None:
        args["on_change"] = then
    return args


def value(key: str, default: Any = None) -> Any:
    """The value of a control, also on pages that do not draw it."""
    return st.session_state.get(key, default)


def set_value(key: str, value: Any) -> None:
    """Set a control from code: from a widget or button callback, or before the control is
    drawn in this run (Streamlit refuses to change a drawn widget); it shows on its next draw."""
    st.session_state[key] = value


def threshold_key(name: str, fit_key: str) -> str:
    """Widget key of a detector's threshold slider: one per detector, data and parameters."""
    return f"threshold::{name}::{fit_key}"
