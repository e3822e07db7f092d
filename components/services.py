"""The only place with Streamlit caching and secrets: cached wrappers around the library.

Scores are cached per (data key, detector, parameters); thresholds are never part of a key,
so a threshold slider only filters cached scores and never re-fits or re-scores.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Callable

import pandas as pd
import streamlit as st

import detectors
import detectors.pipeline
from components.controls import DataChoice, DetectorChoice
from data import load_candles


@st.cache_data(show_spinner=False, max_entries=32)
def cached_candles(choice: DataChoice) -> pd.DataFrame:
    """Candles for a data choice (DataError propagates to the page, which shows it)."""
    return load_candles(choice.source, choice.symbol, **choice.load_kwargs())


def fit_key(choice: DataChoice, detector: DetectorChoice) -> str:
    return f"{choice.key}|{detector.name}|{detector.params}"


def specs_of(chosen: tuple[DetectorChoice, ...]) -> list[tuple[str, dict]]:
    return [(d.name, dict(d.params)) for d in chosen]


def is_scored(choice: DataChoice, detector: DetectorChoice) -> bool:
    """Whether this detector is already fitted on this data (no training to show)."""
    return fit_key(choice, detector) in _scored_store()


#: Scored series kept per server process (fitted detectors hold models: not pickled, shared).
MAX_SCORED = 16


@st.cache_resource(show_spinner=False)
def _scored_store() -> dict:
    return {}


def scored(choice: DataChoice, candles: pd.DataFrame, chosen: tuple[DetectorChoice, ...],
           progress: Callable[[float, str], None] | None = None) -> detectors.pipeline.Scored:
    """Fitted, scored and calibrated detectors for the loaded data (``detectors.score_detectors``).

    Kept per (data, detector, parameters) in a process-wide store, one entry per detector, so
    adding a detector fits only that one and a threshold move fits nothing. The work runs
    here, outside any ``st.cache_*`` function, so ``progress`` may touch page elements that
    the caller owns (a cached function must not: Streamlit replays it and fails).
    """
    store = _scored_store()
    parts = []
    for det in chosen:
        key = fit_key(choice, det)
        part = store.get(key)   # read once: another session may evict it meanwhile
        if part is None:
            part = detectors.score_detectors(candles, [(det.name, dict(det.params))], progress=progress,
                                             skip_failed=True)
            _keep(store, key, part, MAX_SCORED)
        parts.append(part)
    keys = tuple(fit_key(choice, det) for det in chosen)
    view = _views_store().get(keys)
    if view is None or any(a is not b for a, b in zip(view["parts"], parts)):
        view = {"parts": parts, "scored": detectors.pipeline.merge(candles, parts), "detections": {}}
    _keep(_views_store(), keys, view, MAX_VIEWS)   # the most recently used stay
    return view["scored"]


def detect(scored: detectors.pipeline.Scored, thresholds: dict[str, float], mode: str,
           k: int) -> detectors.pipeline.Detection:
    """``scored.detect(thresholds, mode, k)``, kept with its view (``scored``) per server
    process: a new session on a view open before (a reload, a shared link, the default view)
    gets its events without recomputing them, so its charts reach the browser sooner."""
    view = next((v for v in list(_views_store().values()) if v["scored"] is scored), None)
    if view is None:
        return scored.detect(thresholds, mode, k)
    key = (tuple(sorted(thresholds.items())), mode, k)
    found = view["detections"].get(key)
    if found is None:
        found = scored.detect(thresholds, mode, k)
    _keep(view["detections"], key, found, MAX_DETECTIONS)
    return found


def price_figure(choice: DataChoice, candles: pd.DataFrame, labels: pd.DataFrame | None, focus, highlight,
                 revision: str):
    """The price figure, rebuilt only when the data or the open event changes: a threshold move
    reuses it (Streamlit sends the browser the very same figure and Plotly skips it), and so
    does a new session on the same view. Kept per server process."""
    from components.charts import build_price_figure
    # The last bars' content too: a live range may gain a bar or revise the one still forming.
    tail = int(pd.util.hash_pandas_object(candles.iloc[-3:]).sum()) if len(candles) else 0
    key = (choice.key, len(candles), tail, focus, highlight, revision)
    figure = _figures_store().get(key)
    if figure is None:
        figure = build_price_figure(candles, labels=labels, focus=focus, highlight=highlight, revision=revision)
        _keep(_figures_store(), key, figure, MAX_FIGURES)
    return figure


#: Merged views per server process (each holds its detectors' parts, so at most MAX_SCORED +
#: MAX_VIEWS fitted entries stay alive), detections kept per view, and price figures.
MAX_VIEWS = 16
MAX_DETECTIONS = 16
MAX_FIGURES = 16
_STORE_LOCK = threading.Lock()


@st.cache_resource(show_spinner=False)
def _views_store() -> dict:
    return {}


@st.cache_resource(show_spinner=False)
def _figures_store() -> dict:
    return {}


def _keep(store: dict, key, value, limit: int) -> None:
    """Put ``key`` last in a process-wide store, dropping the least recently kept entries beyond
    ``limit`` (sessions run in threads, hence the lock)."""
    with _STORE_LOCK:
        store.pop(key, None)
        store[key] = value
        while len(store) > limit:
            store.pop(next(iter(store)))


def secrets() -> dict:
    """``st.secrets`` as a plain dict, or {} when no secrets file exists."""
    try:
        return {k: (dict(v) if hasattr(v, "keys") else v) for k, v in st.secrets.items()}
    except Exception:  # no secrets.toml: Streamlit raises its own parse/missing errors
        return {}


def case_log():
    """The shared case database: SQLite in the data folder, or for a team the URL in
    ``SURVEILLANCE_CASES_DB_URL`` or ``cases_db_url`` in secrets (with ``cases_db_admin_url``
    the app migrates the schema itself when it is behind)."""
    import os

    from store import data_dir
    config = secrets()
    url = os.environ.get("SURVEILLANCE_CASES_DB_URL") or config.get("cases_db_url") or None
    admin = os.environ.get("SURVEILLANCE_CASES_DB_ADMIN_URL") or config.get("cases_db_admin_url") or None
    return _case_log(url, admin, str(data_dir()))


@st.cache_resource(show_spinner=False)
def _case_log(url: str | None, admin_url: str | None, folder: str):
    # ``folder`` is part of the cache key: a new data folder (another user, a test) gets its own log.
    from store.cases import CaseLog
    return CaseLog(url, admin_url=admin_url)


@st.cache_data(show_spinner=False, max_entries=16, ttl=900)
def cached_headlines(choice: DataChoice) -> pd.DataFrame:
    """Headlines for the loaded symbol and range (empty for CSV candles)."""
    from data.news import load_headlines
    if choice.source == "csv":
        return pd.DataFrame(columns=["timestamp", "headline", "source", "url"])
    kwargs = choice.load_kwargs()
    return load_headlines(choice.source, choice.symbol, kwargs["start"], kwargs["end"], seed=choice.seed)


def explainer_config():
    """The explainer's settings; a broken setting shows a warning and keeps the built-in explainer."""
    from explain import ExplainerConfig, load_config
    try:
        return load_config(secrets())
    except ValueError as exc:
        st.warning("The explainer settings are broken: using the built-in explainer until this is fixed.")
        st.text(str(exc))
        return ExplainerConfig()


def enrich_events(events: pd.DataFrame, candles: pd.DataFrame, headlines: pd.DataFrame | None, *,
                  data_key: str, news: bool, explain: bool, config, top_n: int = 10,
                  progress: Callable[[float, str], None] | None = None) -> pd.DataFrame:
    """Events with news context and explanations, memoised per event row in the server process.

    A threshold move changes only some events; the rest are served from the memo, so the
    slider stays fast, and a new session on a view open before recomputes nothing. With a
    model configured, the top N are chosen among the events not explained yet. The SQLite
    cache in ``store`` makes repeats across server restarts free too.
    """
    from components import state
    from events.news_context import add_news_context
    from explain import PROMPT_VERSION, explain_events, is_lasting
    if events.empty:
        return events
    weight = state.value(state.JUDGE_WEIGHT, 0.4)
    news = news and headlines is not None and len(headlines) > 0
    # The model's settings (a fixed URL or key must be asked again) and the headlines' count and
    # last time (a live source's news is fetched again every 15 minutes).
    secret = hashlib.sha256(config.api_key.encode()).hexdigest()[:12]
    fresh = f"{len(headlines)}|{headlines['timestamp'].iloc[-1]}" if headlines is not None and len(headlines) else ""
    prefix = (f"{data_key}|{fresh}|{news}|{explain}|{config.model}|{config.enabled}|{config.base_url}|{secret}|"
              f"{config.timeout}|{PROMPT_VERSION}|{weight}|{top_n}")
    memo = _enriched_store()
    if len(memo) > 20_000:
        memo.clear()
    # Within one data set an event row is fixed by its start (in the id), end, firing detectors,
    # kind and severity (other parameters or another ensemble give other severities).
    keys = [f"{prefix}|{i}|{e.value}|{d}|{k}|{v!r}" for i, e, d, k, v in
            zip(events["event_id"], events["end"], events["detectors"], events["kind"], events["severity"])]
    rows = [memo.get(key) for key in keys]   # read once: another session may clear the memo meanwhile
    todo = [i for i, row in enumerate(rows) if row is None]
    if todo:
        part = events.iloc[todo]
        near = _headlines_around(headlines, part) if headlines is not None else None
        if news:
            part = add_news_context(part, near)
        if explain:
            part = explain_events(part, candles, near, config=config, top_n=top_n, progress=progress,
                                  judge_weight=weight)
        for i, row in zip(todo, part.to_dict("records")):
            rows[i] = row
            if is_lasting(row.get("fallback_reason", "")):   # a failed model call is asked again next run
                memo[keys[i]] = row
    return pd.DataFrame(rows, index=events.index)


@st.cache_resource(show_spinner=False)
def _enriched_store() -> dict:
    return {}


def _headlines_around(headlines: pd.DataFrame, events: pd.DataFrame,
                      before: pd.Timedelta = pd.Timedelta(hours=6),
                      after: pd.Timedelta = pd.Timedelta(hours=1)) -> pd.DataFrame:
    """Only the headlines inside some event's news window (6 h before its start to 1 h after
    its end, the window news context and explanations use), so a few new events do not
    re-read a year of news."""
    import numpy as np
    ordered = headlines.sort_values("timestamp", kind="stable")
    times = pd.DatetimeIndex(pd.to_datetime(ordered["timestamp"], utc=True))
    lo = times.searchsorted(pd.DatetimeIndex(events["start"]) - before, side="left")
    hi = times.searchsorted(pd.DatetimeIndex(events["end"]) + after, side="right")
    keep = np.zeros(len(ordered), dtype=bool)
    for a, b in zip(lo, hi):
        keep[a:b] = True
    return ordered[keep]


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
    return str(state.value(state.ANALYST) or "").strip() or "analyst"   # a name of spaces is no name


@st.cache_data(show_spinner="Loading the option chain…", max_entries=16, ttl=900)
def cached_option_chain(source: str, symbol: str) -> pd.DataFrame:
    from data.options import load_option_chain
    return load_option_chain(source, symbol)


def options_flow(chain: pd.DataFrame):
    from options_flow.analysis import analyze_options_flow
    return analyze_options_flow(chain)


def assess_options(result, symbol: str):
    """The explainer's assessment of an options-flow result (the configured model, else built-in),
    cached so a rerun of the page does not ask the model again."""
    config = explainer_config()
    key = f"{symbol}|{sorted(result.metrics.items())}|{result.flags}|{config.model}|{config.base_url}|{config.enabled}"
    return _assessment(key, result, symbol, config)


@st.cache_data(show_spinner=False, max_entries=32, ttl=3600)
def _assessment(key: str, _result, symbol: str, _config):
    from explain.options import assess_options_flow
    return assess_options_flow(_result, symbol, _config)


def uploaded_headlines(raw: bytes) -> pd.DataFrame:
    from data.news import load_headlines
    return load_headlines("csv", file=raw)


@st.cache_data(show_spinner=False, max_entries=8)
def headline_scores(key: str, _headlines: pd.DataFrame, embedder: str) -> tuple[pd.Series, float, str]:
    """Text-embedding scores of the headlines, fitted on the same stream (leave-one-out)."""
    import detectors
    det = detectors.create("text_embedding", embedder=embedder).fit(_headlines)
    return det.score(_headlines), float(det.threshold), det.unit
