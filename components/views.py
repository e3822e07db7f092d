"""Page building blocks shared by several pages: loading with progress, scoring, notices."""
from __future__ import annotations

import re

import pandas as pd
import streamlit as st

import detectors
from components import controls, links, services
from components.controls import DataChoice, DetectorChoice
from data import DataError
from detectors.pipeline import Scored


def literal(text: object) -> str:
    """Untrusted text (a symbol, a file name, a user name) inside a Markdown label, shown as
    typed: every Markdown character escaped, so ``![x](http://…)`` fetches no image."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~<>$:=])", r"\\\1", str(text))


def problem(level: str, heading: str, detail: object = "") -> None:
    """A notice whose heading is ours and whose detail (file contents, server messages, model
    output: untrusted) is plain text: no Markdown, no links, no images fetched."""
    getattr(st, level)(heading)
    if str(detail):
        st.text(str(detail))


def ask_for_plotly_early():
    """On a session's first run, put a placeholder chart first on the page: the browser then asks
    for Plotly's bundle (4.7 MB, the longest wait of a fresh page) before the sidebar's widget
    kinds, not after them. Clear the slot it returns (``.empty()``) once the controls are drawn:
    the placeholder is gone long before the bundle arrives, so it is never drawn."""
    slot = st.empty()
    if not st.session_state.get("_plotly_asked"):
        st.session_state["_plotly_asked"] = True
        slot.plotly_chart({"data": [{"type": "scatter", "x": [], "y": []}], "layout": {"height": 10}},
                          key="_plotly_placeholder")
    return slot


def load_or_stop(choice: DataChoice, url: dict[str, str] | None = None) -> pd.DataFrame:
    """Load candles with a status box; on a data problem show what to fix and stop the page.
    ``url``: the view's link, put in the address bar before stopping, so a link copied from a
    page that failed to load names what was asked for, not the last view that loaded."""
    def stop() -> None:
        if url is not None:
            links.write_url(url)
        st.stop()

    if choice.source == "csv" and not choice.csv_name:
        st.info("Upload a CSV of candles in the sidebar (Date/Time, Open, High, Low, Close, Volume).")
        stop()
    if choice.source == "csv" and not choice.csv_bytes:
        st.error("The uploaded file is empty (0 bytes): export the candles again and upload that file.")
        stop()
    range_problem = choice.range_problem()
    if range_problem:
        problem("error", f"Cannot load {literal(choice.symbol) or 'the'} data.", range_problem)
        stop()
    box = None
    try:
        if choice.source in ("yahoo", "bybit"):
            box = st.status(f"Fetching {literal(choice.symbol)} {choice.interval} candles…")
            with box:
                candles = services.cached_candles(choice)
            box.update(label=f"Loaded {len(candles):,} {literal(choice.symbol)} candles", state="complete",
                       expanded=False)
        else:
            candles = services.cached_candles(choice)
    except DataError as exc:
        if box is not None:
            box.update(label=f"Could not load {literal(choice.symbol)} {choice.interval} candles", state="error",
                       expanded=False)
        problem("error", f"Cannot load {literal(choice.symbol) or 'the'} data.", exc)
        stop()
    return candles


def show_data_notes(candles: pd.DataFrame) -> None:
    """Cache-age notices and the validator's repairs, so an analyst knows what was changed."""
    if candles.attrs.get("notice"):
        (st.caption if candles.attrs.get("source") == "demo" else st.warning)(candles.attrs["notice"])
    repairs = candles.attrs.get("repairs") or []
    if repairs:
        with st.expander(f"Data repaired in {len(repairs)} way(s)"):
            for line in repairs:
                st.text(f"• {line}")


def nothing_scored(chosen) -> str:
    """Why there are no scores: no detector chosen, or none of the chosen could run."""
    if not chosen:
        return "Select at least one detector in the sidebar to flag anomalies."
    return ("None of the selected detectors could run on this data (see the messages above): "
            "load a longer range or lower their windows.")


def score_all(choice: DataChoice, candles: pd.DataFrame, chosen: tuple[DetectorChoice, ...],
              sidebar=None) -> tuple[Scored, dict[str, float]]:
    """The scored detectors (cached) and the analyst's thresholds (sliders, in each unit).

    A slow detector (the LSTM) trains in plain view with its progress (epoch, loss, time
    left) in a bar this page owns. A detector that fails shows its error and is left out;
    the rest of the page keeps working.
    """
    cancelled = st.session_state.pop(_CANCELLED, None)
    if cancelled:
        # The click reran only the fragment, whose detector choice is the old one: rerun the
        # whole page so the choice without the cancelled detector is read.
        st.session_state[_CANCEL_NOTICE] = cancelled
        st.rerun()
    notice = st.session_state.pop(_CANCEL_NOTICE, None)
    if notice:
        st.info(f"Training of the {notice} cancelled; it is no longer selected.")
    training = [d for d in chosen if detectors.detector_class(d.name).slow and not services.is_scored(choice, d)]
    progress, slot = None, st.empty()
    if training:
        label = controls.detector_label(training[0].name)
        with slot.container(border=True):
            st.button("Cancel training", key="cancel_training", icon=":material/cancel:",
                      on_click=_cancel_training, args=([d.name for d in training], label))
            bar = st.progress(0.0, text=f"Training the {label} on {len(candles):,} candles…")
        progress = lambda f, msg: bar.progress(min(max(float(f), 0.0), 1.0), text=f"{label}: {msg}")  # noqa: E731
    result = services.scored(choice, candles, chosen, progress)
    slot.empty()
    if result.errors:
        count = len(result.errors)
        problem("error", "A detector could not run." if count == 1 else f"{count} detectors could not run.",
                "\n".join(result.errors.values()))
    thresholds = {}
    box = sidebar or st.sidebar
    if result.scores:
        box.subheader("Thresholds")
    for det in chosen:
        if det.name in result.scores:
            thresholds[det.name] = controls.render_threshold_slider(
                det.name, result.units[det.name], result.scores[det.name], result.defaults[det.name],
                services.fit_key(choice, det), box)
    return result, thresholds


_CANCELLED = "_training_cancelled"
_CANCEL_NOTICE = "_training_cancel_notice"


def _cancel_training(names: list[str], label: str) -> None:
    """Button callback: deselect the detectors in training. The click's rerun stops the
    training at its next epoch, and the next run no longer starts it."""
    from components import state
    state.set_value(state.DETECTORS, [n for n in state.value(state.DETECTORS, []) if n not in names])
    st.session_state[_CANCELLED] = label


def enrich_events(choice: DataChoice, candles: pd.DataFrame, events: pd.DataFrame, *, news: bool,
                  explain: bool) -> pd.DataFrame:
    """Events with news context, explanations (a progress bar when a model writes them) and case status."""
    headlines = None
    try:
        headlines = services.cached_headlines(choice)
    except DataError as exc:
        problem("warning", "Headlines unavailable.", exc)
    config = services.explainer_config()
    if explain and config.enabled and len(events):
        top_n = int(st.sidebar.number_input(f"Explain the top N events with {config.model}", 0, 200, 10,
                                            help="The rest get the built-in explanation. Answers are cached."))
        with st.status(f"Explaining events with {literal(config.model)}…", expanded=False) as box:
            bar = st.progress(0.0)
            events = services.enrich_events(
                events, candles, headlines, data_key=choice.key, news=news, explain=True, config=config,
                top_n=top_n,
                progress=lambda f, msg: bar.progress(min(max(f, 0.0), 1.0), text=msg))
            box.update(label="Explanations ready", state="complete")
    else:
        events = services.enrich_events(events, candles, headlines, data_key=choice.key, news=news,
                                        explain=explain, config=config)
    return services.with_case_status(events)
