"""The only place with Streamlit caching and secrets: cached wrappers around the library.

Scores are cached per (data key, detector, parameters); thresholds are never part of a key,
so a threshold slider only filters cached scores and never re-fits or re-scores.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
import streamlit as st

import detectors
from components.controls import DataChoice, DetectorChoice
from data import load_candles


@st.cache_data(show_spinner=False, max_entries=32)
def cached_candles(choice: DataChoice) -> pd.DataFrame:
    """Candles for a data choice (DataError propagates to the page, which shows it)."""
    return load_candles(choice.source, choice.symbol, **choice.load_kwargs())


def fit_key(choice: DataChoice, detector: DetectorChoice) -> str:
    return f"{choice.key}|{detector.name}|{detector.params}"


@st.cache_resource(show_spinner=False, max_entries=16)
def fitted_detector(key: str, _candles: pd.DataFrame, name: str, params: tuple,
                    _progress: Callable[[float, str], None] | None = None):
    """A detector fitted on the loaded candles; kept as a resource for live scoring."""
    det = detectors.create(name, **dict(params))
    if name == "lstm_autoencoder":
        return det.fit(_candles, progress=_progress)
    return det.fit(_candles)


@st.cache_data(show_spinner=False, max_entries=64)
def detector_scores(key: str, _candles: pd.DataFrame, name: str, params: tuple,
                    _progress: Callable[[float, str], None] | None = None) -> tuple[pd.Series, float, str]:
    """(scores, default threshold, unit) of one detector on the loaded candles."""
    det = fitted_detector(key, _candles, name, params, _progress)
    return det.score(_candles), float(det.threshold), det.unit


def secrets() -> dict:
    """``st.secrets`` as a plain dict, or {} when no secrets file exists."""
    try:
        return {k: (dict(v) if hasattr(v, "keys") else v) for k, v in st.secrets.items()}
    except Exception:  # no secrets.toml: Streamlit raises its own parse/missing errors
        return {}


@st.cache_resource(show_spinner=False)
def case_log():
    """The shared case log (SQLite by default, a database URL from secrets for a team)."""
    from store.cases import CaseLog
    return CaseLog(secrets().get("cases_db_url"))


@st.cache_data(show_spinner=False, max_entries=16, ttl=900)
def cached_headlines(choice: DataChoice) -> pd.DataFrame:
    """Headlines for the loaded symbol and range (empty for CSV candles)."""
    from data.news import load_headlines
    if choice.source == "csv":
        return pd.DataFrame(columns=["timestamp", "headline", "source", "url"])
    kwargs = choice.load_kwargs()
    return load_headlines(choice.source, choice.symbol, kwargs["start"], kwargs["end"], seed=choice.seed)


def explainer_config():
    from explain import load_config
    return load_config(secrets())


def explain(events: pd.DataFrame, candles: pd.DataFrame, headlines: pd.DataFrame | None,
            progress: Callable[[float, str], None] | None = None) -> pd.DataFrame:
    """Explanations for events. The SQLite cache in ``store`` makes repeats free."""
    from explain import explain_events
    return explain_events(events, candles, headlines, config=explainer_config(), top_n=10,
                          progress=progress)


@st.cache_data(show_spinner=False, max_entries=16)
def demo_labels(choice: DataChoice) -> pd.DataFrame:
    """Ground-truth labels of the demo market for the loaded range."""
    from data.demo import demo_market
    kwargs = choice.load_kwargs()
    return demo_market(seed=choice.seed, symbol=choice.symbol, start=kwargs["start"], end=kwargs["end"],
                       interval=choice.interval).labels


def bar_length(candles: pd.DataFrame) -> pd.Timedelta:
    """The typical bar spacing of ``candles``."""
    from data import INTERVALS
    return INTERVALS.get(candles.attrs.get("interval", ""), pd.Timedelta(hours=1))


def with_case_status(events: pd.DataFrame) -> pd.DataFrame:
    """Events with ``status``/``note`` from the case log ("" for events nobody has acted on)."""
    known = case_log().statuses(list(events["event_id"]))
    out = events.drop(columns=[c for c in ("status", "note") if c in events.columns])
    out = out.merge(known[["event_id", "status", "note"]], on="event_id", how="left")
    out[["status", "note"]] = out[["status", "note"]].fillna("")
    return out


def analyst_name() -> str:
    """Who acts: the signed-in user when authentication is configured, else the Settings name."""
    from components import state
    user = getattr(st, "user", None)
    if user is not None and user.get("is_logged_in"):
        return str(user.get("email") or user.get("name") or "signed-in user")
    return st.session_state.get("_kept_" + state.ANALYST) or "analyst"
