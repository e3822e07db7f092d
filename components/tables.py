"""Event table, event evidence panel and export buttons."""
from __future__ import annotations

import json
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from components import state
from data.export import to_safe_csv
from detectors.calibration import rarity_text

#: What the events table shows (the evidence panel and the CSV hold every column).
TABLE_COLUMNS = ["start", "kind", "severity", "combined_risk", "detectors", "return_pct", "volume_ratio",
                 "context_note", "explanation", "recommended_action", "status"]
EXPORT_COLUMNS = ["event_id", "symbol", "interval", "start", "end", "n_bars", "kind", "severity",
                  "one_in_bars", "severity_raw", "detectors", "peak_detector", "peak_score", "price_before",
                  "price_end",
                  "return_pct", "max_move_pct", "volume_ratio", "z_return", "z_volume", "scores_json",
                  "news_driven", "context_note", "headlines", "explanation", "explanation_source",
                  "explanation_kind", "confidence", "risk_score", "combined_risk", "risk_note",
                  "recommended_action", "key_evidence", "grounded", "ungrounded_numbers", "fallback_reason", "status",
                  "note"]
EVIDENCE_FIELDS = [("return_pct", "Return over event (%)"), ("max_move_pct", "Largest move (%)"),
                   ("volume_ratio", "Volume / trailing median (x)"), ("z_return", "Peak return z"),
                   ("z_volume", "Peak volume z"), ("price_before", "Price before"),
                   ("price_end", "Price at end"), ("n_bars", "Bars"), ("peak_detector", "Peak detector"),
                   ("peak_score", "Peak score"), ("detectors", "Detectors that fired"),
                   ("context_note", "News context"),
                   ("severity_raw", "Severity before news context (the case log's)")]


def readable_kind(kind: str) -> str:
    return str(kind).replace("_", " ")


def readable_detectors(names: str) -> str:
    """"flash_crash,zscore" -> "Flash-crash rule, Rolling z-score" (the labels analysts see)."""
    from components.controls import detector_label
    return ", ".join(detector_label(n) for n in str(names).split(",") if n)


_SECTION = "_events_table_section"   # the expander's own widget key (widget state ends with its page)


def render_events_table(events: pd.DataFrame) -> None:
    """The events table in a section the analyst opens: the grid and its JavaScript (about
    1.5 MB) load only then, so a fresh page draws its chart first. Once opened it stays open
    (``state.EVENTS_TABLE_OPEN``: across pages, reloads and links). Selecting a row opens that
    event (``state.EVENT``); the open event's row is marked however it was opened."""
    st.session_state[_SECTION] = bool(st.session_state.get(state.EVENTS_TABLE_OPEN, False))
    section = st.expander(f"Events table ({len(events)})", key=_SECTION, icon=":material/table_rows:",
                          on_change=_remember_section)
    if not section.open:
        return
    shown = events[[c for c in TABLE_COLUMNS if c in events.columns]].copy()
    shown.insert(0, "open", np.where(events["event_id"] == st.session_state.get(state.EVENT), "▶", ""))
    shown["kind"] = shown["kind"].map(readable_kind)
    if "recommended_action" in shown:
        shown["recommended_action"] = shown["recommended_action"].fillna("").map(readable_kind)
    shown["detectors"] = shown["detectors"].map(readable_detectors)
    key = _table_key()
    section.dataframe(
        shown, key=key, on_select=partial(_picked, key, list(events["event_id"])),
        selection_mode="single-row",
        hide_index=True, width="stretch",
        # Fixed widths: the grid then measures no cell text to size its columns.
        column_config={
            "open": st.column_config.TextColumn("", width=30, help="The open event"),
            "start": st.column_config.DatetimeColumn("Start (UTC)", format="YYYY-MM-DD HH:mm", width=135),
            "kind": st.column_config.TextColumn("Kind", width=160),
            "severity": st.column_config.ProgressColumn("Severity", min_value=0.0, max_value=1.0,
                                                        format="%.2f", width=110),
            "combined_risk": st.column_config.NumberColumn(
                "Risk", format="%.2f", width=60,
                help="w × explainer risk + (1 − w) × severity; w is set in Settings."),
            "detectors": st.column_config.TextColumn("Detectors", width=250),
            "return_pct": st.column_config.NumberColumn("Return %", format="%+.2f", width=80),
            "volume_ratio": st.column_config.NumberColumn("Vol ×", format="%.1f", width=60),
            "context_note": st.column_config.TextColumn("News context", width=220),
            "explanation": st.column_config.TextColumn("Explanation", width=420),
            "recommended_action": st.column_config.TextColumn("Action", width=90),
            "status": st.column_config.TextColumn("Case", width=80),
        })


def _remember_section() -> None:
    st.session_state[state.EVENTS_TABLE_OPEN] = bool(st.session_state[_SECTION])


def open_table_on_chart_pick() -> None:
    """Chart callback: events picked on the chart are listed in the table, so show it."""
    picks = st.session_state.get(state.CHART) or {}
    if (picks.get("selection") or {}).get("points"):
        st.session_state[state.EVENTS_TABLE_OPEN] = True


def _table_key() -> str:
    """The table's widget key; a new one (``_open``) clears a row selection that no longer
    names the open event."""
    return f"{state.EVENTS_TABLE}:{st.session_state.get(state.EVENTS_TABLE_GENERATION, 0)}"


def _picked(key: str, ids: list[str]) -> None:
    """Table callback: the row picked becomes the open event (none when unpicked)."""
    rows = [r for r in st.session_state[key].selection.rows if 0 <= r < len(ids)]
    st.session_state[state.EVENT] = ids[rows[0]] if rows else None


def _open(event_id: str | None) -> None:
    """Open an event from the keys or buttons (None closes it); a row picked before is unpicked."""
    st.session_state[state.EVENT] = event_id
    st.session_state[state.EVENTS_TABLE_GENERATION] = st.session_state.get(state.EVENTS_TABLE_GENERATION, 0) + 1


def open_event(events: pd.DataFrame) -> pd.Series | None:
    """The event the analyst has open (``state.EVENT``) if it is among ``events``, else None."""
    rows = events.loc[events["event_id"] == st.session_state.get(state.EVENT)]
    return rows.iloc[0] if len(rows) else None


def render_event_navigation(events: pd.DataFrame) -> None:
    """Previous / next / close buttons with keyboard shortcuts (K, J, Esc). Events are in time
    order, so J walks forward through the chart."""
    ids = list(events.sort_values("start")["event_id"])
    current = st.session_state.get(state.EVENT)
    cols = st.columns([1, 1, 1, 4])
    cols[0].button("Previous", icon=":material/arrow_back:", shortcut="K", disabled=not ids,
                   on_click=_step, args=(ids, -1), help="Previous event (K)")
    cols[1].button("Next", icon=":material/arrow_forward:", shortcut="J", disabled=not ids,
                   on_click=_step, args=(ids, 1), help="Next event (J)")
    cols[2].button("Close", icon=":material/close:", shortcut="Esc", disabled=current not in ids,
                   on_click=_open, args=(None,),
                   help="Back to the whole range (Esc)")
    if current in ids:
        cols[3].caption(f"Event {ids.index(current) + 1} of {len(ids)} · J next, K previous, Esc close")
    else:
        cols[3].caption(f"{len(ids)} events · J opens the first, then the next; K the previous")


def _step(ids: list[str], step: int) -> None:
    current = st.session_state.get(state.EVENT)
    at = ids.index(current) + step if current in ids else (0 if step > 0 else len(ids) - 1)
    _open(ids[min(max(at, 0), len(ids) - 1)])


def render_event_panel(event: pd.Series) -> None:
    """Evidence and full explanation of one event. All untrusted text is rendered as plain text."""
    st.markdown(f"#### {readable_kind(event['kind'])} · {event['start']:%Y-%m-%d %H:%M} UTC")
    cols = st.columns(4)
    cols[0].metric("Severity", f"{event['severity']:.2f}", help=rarity_text(event["severity"]).capitalize()
                   + " on this series (calibrated: equal severities are equally rare for every detector).")
    cols[1].metric("Return", f"{event['return_pct']:+.2f}%")
    cols[2].metric("Volume ratio", f"{event['volume_ratio']:.1f}x")
    cols[3].metric("Status", str(event.get("status", "") or "not in case log"))
    left, right = st.columns([1, 1])
    with left:
        st.caption("Evidence")
        shown = {**event, "peak_detector": readable_detectors(event.get("peak_detector", "")),
                 "detectors": readable_detectors(event.get("detectors", ""))}
        rows = [(label, shown[f]) for f, label in EVIDENCE_FIELDS if f in event and pd.notna(event[f])]
        scores = json.loads(event["scores_json"]) if event.get("scores_json") else {}
        rows += [(f"Peak score: {readable_detectors(name)}", value) for name, value in scores.items()
                 if value is not None]
        st.dataframe(pd.DataFrame([(label, _plain(value)) for label, value in rows], columns=["Evidence", "Value"]),
                     hide_index=True, width="stretch")
    with right:
        if "explanation" in event and event["explanation"]:
            source = event.get("explanation_source", "")
            st.caption("Explanation" + ("" if event.get("grounded", True) else " · UNVERIFIED"))
            st.text(f"Written by: {source}")
            st.text(event["explanation"])
            if not event.get("grounded", True):
                st.warning("This explanation states numbers not found in the evidence. Trust the evidence table.")
                st.text(f"Unverified numbers: {event.get('ungrounded_numbers', '')}")
            if event.get("risk_note"):
                st.text(event["risk_note"])
            if event.get("fallback_reason"):
                st.text(f"Built-in explanation used: {event['fallback_reason']}")
            if event.get("recommended_action"):
                st.text(f"Recommended action: {readable_kind(event['recommended_action'])} · confidence "
                        f"{event.get('confidence', '')} · explainer risk {event.get('risk_score', float('nan')):.2f}")
        if event.get("headlines"):
            st.caption("Headlines near the event (untrusted text)")
            for line in dict.fromkeys(str(event["headlines"]).split(" | ")):
                st.text(line)


def _plain(value) -> str:
    """Evidence as an analyst reads it: 4 significant digits, thousands separated."""
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


def export_frame(events: pd.DataFrame) -> pd.DataFrame:
    return events[[c for c in EXPORT_COLUMNS if c in events.columns]]


def render_exports(events: pd.DataFrame, figures: tuple, name: str) -> None:
    """CSV of the events shown and the charts as one standalone HTML file (built on click)."""
    from components.charts import standalone_html
    cols = st.columns(2)
    cols[0].download_button("Download events CSV", to_safe_csv(export_frame(events)),
                            file_name=f"{name}-events.csv", mime="text/csv", key="download_events",
                            on_click="ignore", icon=":material/download:")
    cols[1].download_button("Download chart HTML",
                            lambda: standalone_html(*figures),
                            file_name=f"{name}-chart.html", mime="text/html", key="download_chart",
                            on_click="ignore", icon=":material/monitoring:")


def case_record(event: pd.Series) -> pd.DataFrame:
    """The event as the case log records it: with the detection's severity, before news context,
    as the batch scan records it too, so a case has one severity whoever opened it first."""
    record = event.to_frame().T
    if "severity_raw" in record and pd.notna(event["severity_raw"]):
        record["severity"] = event["severity_raw"]
    return record


def render_case_actions(event: pd.Series) -> None:
    """Open or update the case of an event; the case log records who changed what."""
    from components.services import analyst_name, case_log
    from store.cases import STATUSES, ConflictError
    log = case_log()
    if st.session_state.get("_case_saved"):
        st.toast(st.session_state.pop("_case_saved"))
    case = log.get(event["event_id"])
    with st.form(f"case::{event['event_id']}", border=False):
        cols = st.columns([1, 2, 1])
        current = case["status"] if case else "new"
        status = cols[0].selectbox("Case status", STATUSES, index=STATUSES.index(current))
        note = cols[1].text_input("Note", value=case["note"] if case else "")
        saved = cols[2].form_submit_button("Save to case log", width="stretch")
    if saved:
        who = analyst_name()
        try:
            if case is None:
                log.upsert_events(case_record(event), who=who)
                case = log.get(event["event_id"])
            log.update(event["event_id"], who=who, expected_version=case["version"], status=status, note=note)
        except ConflictError as exc:
            st.error("Someone else changed this case meanwhile: reload it and try again.")
            st.text(str(exc))
        except ValueError as exc:   # e.g. a note over the limit: say it, keep the page
            st.error("Not saved:")
            st.text(str(exc))
        else:
            # Rerun at once, so the panel, the table and the CSV show the saved status now.
            st.session_state["_case_saved"] = f"Case {event['event_id'][:8]} saved as {status}."
            st.rerun()
