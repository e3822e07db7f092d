"""Explorer: candles, detectors, events, explanations and export for one symbol."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from components import controls, links, services, state, tables
from components.charts import build_signal_figure
from components.live import render_live_monitor
from components.views import (
    ask_for_plotly_early,
    enrich_events,
    load_or_stop,
    nothing_scored,
    score_all,
    show_data_notes,
)
from detectors.calibration import rarity_text

st.title("Explorer")
placeholder = ask_for_plotly_early()
links.restore_from_url()          # a shared link or a reload opens the same view
links.show_ignored()
choice = controls.render_data_controls()
chosen, ensemble, news_on, explain_on = controls.render_detector_controls()
placeholder.empty()
candles = load_or_stop(choice, url=links.view_params(choice, chosen, ensemble, {}, None))
show_data_notes(candles)


@st.fragment
def analysis() -> dict:
    """Thresholds, events, chart, table and export: a slider or a selection reruns only this."""
    scored, thresholds = score_all(choice, candles, chosen)
    scores, units = scored.scores, scored.units
    detection = services.detect(scored, thresholds, ensemble.mode, ensemble.k) if scores else None
    events = detection.events if detection is not None else None
    if events is not None:
        events = enrich_events(choice, candles, events, news=news_on, explain=explain_on)

    labels = services.demo_labels(choice) if choice.source == "demo" else None
    selected_ids: set[str] = set()
    table_events = events
    if events is not None:
        picks = st.session_state.get(state.CHART, {}) or {}
        points = (picks.get("selection") or {}).get("points", []) if isinstance(picks, dict) else []
        selected_ids = {p["customdata"][0] for p in points if p.get("customdata")}
        if selected_ids:
            table_events = events[events["event_id"].isin(selected_ids)]

    c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
    c1.metric("Candles", f"{len(candles):,}")
    c2.metric("Events", 0 if events is None else len(events))
    c3.metric("Highest severity", "–" if events is None or not len(events) else f"{events['severity'].max():.2f}",
              help=None if events is None or not len(events) else rarity_text(events["severity"].max()).capitalize()
              + " on this series.")
    c4.metric("Most common kind",
              "–" if events is None or not len(events) else tables.readable_kind(events["kind"].mode().iat[0]))

    if events is None:
        st.info(nothing_scored(chosen))
        st.plotly_chart(services.price_figure(choice, candles, labels, None, None, choice.key), key="price_chart")
        links.write_url(links.view_params(choice, chosen, ensemble, {}, None))
        return {}

    # The charts go out before the events section, so the browser starts drawing them first.
    selected = tables.open_event(table_events)
    linked = st.session_state.pop(links.LINKED_EVENT, None)
    if linked and selected is None:
        st.text(f"The linked event {linked!r} is not among this view's events, so none is open.")
    focus = None
    request = st.session_state.get(state.FOCUS_TIME) or {}
    focus_time = request.get("time") if request.get("key") == choice.key else None
    if focus_time is not None and selected is None:
        around = services.bar_length(candles) * 48
        focus = (focus_time - around, focus_time + around)
    if selected is not None:
        pad = (selected["end"] - selected["start"]) * 3 + pd.Timedelta(services.bar_length(candles) * 24)
        focus = (selected["start"] - pad, selected["end"] + pad)
    revision = choice.key + str(focus[0] if focus else "")
    # Two figures: a threshold move redraws only the light signal layer, never the candles.
    signals = build_signal_figure(candles, scores, thresholds, events, severity=detection.severity, units=units,
                                  focus=focus, revision=revision)
    highlight = None if selected is None else (selected["start"], selected["end"])
    prices = services.price_figure(choice, candles, labels, focus, highlight, revision)
    st.plotly_chart(signals, key=state.CHART, on_select=tables.open_table_on_chart_pick,
                    selection_mode=("points", "box"))
    st.plotly_chart(prices, key="price_chart")

    if focus_time is not None and selected is None:
        cols = st.columns([4, 1])
        cols[0].caption(f"Zoomed to {focus_time:%Y-%m-%d %H:%M} UTC (opened from a headline).")
        if cols[1].button("Show the whole range"):
            st.session_state.pop(state.FOCUS_TIME)
            st.rerun()
    st.subheader("Events")
    if selected_ids:
        st.caption(f"Showing the {len(table_events)} event(s) selected on the chart. Clear the chart "
                   "selection (double-click) to see all.")
    tables.render_event_navigation(table_events)
    tables.render_events_table(table_events)
    if selected is not None:
        with st.container(border=True):
            tables.render_event_panel(selected)
            tables.render_case_actions(selected)
    else:
        st.caption("Press J (or pick a row in the events table) to zoom the chart to an event and see its "
                   "evidence and explanation.")
    tables.render_exports(table_events, (signals, prices), f"{candles.attrs.get('symbol', 'events')}-{choice.interval}")
    st.session_state[state.CUTS] = thresholds
    view = links.view_params(choice, chosen, ensemble, thresholds, None if selected is None else selected["event_id"])
    st.session_state[links.VIEW] = view
    links.write_url(view)
    return thresholds


thresholds = analysis()
links.render_saved_views(services.analyst_name(), services.case_log())
render_live_monitor(choice, candles, chosen, thresholds)
