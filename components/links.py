"""The Explorer's view in the URL and in saved views: one flat dict of strings.

``view_params`` describes what the analyst sees (source, symbol, interval, range, detectors,
parameters, thresholds, ensemble, selected event, whether the events table is open); the
Explorer writes it to the URL on every run, so a reload or a shared link restores the same
view. ``apply_params`` sets the controls from such a dict (a link on a session's first run, or
a saved view from a button). Anything malformed in a link is ignored and named, never obeyed
blindly.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Mapping

import streamlit as st

from components import state
from components.controls import SOURCE_LABELS, DataChoice, DetectorChoice, EnsembleChoice
from data import MAX_SYMBOL_LENGTH

_RESTORED = "_url_restored"
PENDING_THRESHOLDS = "_pending_thresholds"   # name -> cut from a link, applied when its slider is drawn
LINKED_EVENT = "_linked_event"                # the event a link asked for, until the Explorer shows it


def view_params(choice: DataChoice, chosen: tuple[DetectorChoice, ...], ensemble: EnsembleChoice,
                thresholds: Mapping[str, float], event_id: str | None) -> dict[str, str]:
    """The view as URL parameters (short names; only what differs from nothing)."""
    out = {"src": choice.source, "sym": choice.symbol, "iv": choice.interval}
    if choice.source != "csv":
        out.update({"from": choice.start.isoformat(), "to": choice.end.isoformat()})
    if choice.source == "demo":
        out["seed"] = str(choice.seed)
    out["det"] = ",".join(d.name for d in chosen)
    for det in chosen:
        out.update({f"p.{det.name}.{name}": str(value) for name, value in det.params})
    out.update({f"t.{name}": f"{value:.6g}" for name, value in thresholds.items()})
    out["mode"] = ensemble.mode
    if ensemble.mode == "vote":
        out["k"] = str(ensemble.k)
    if event_id:
        out["ev"] = event_id
    if st.session_state.get(state.EVENTS_TABLE_OPEN):
        out["tbl"] = "1"
    return out


def apply_params(params: Mapping[str, str]) -> list[str]:
    """Set the controls from a view; returns the parameters that were ignored, and why."""
    import detectors
    ignored = []

    def take(name: str, key: str, parse, check=lambda v: True) -> None:
        if name not in params:
            return
        try:
            parsed = parse(str(params[name]))
            if not check(parsed):
                raise ValueError
        except (TypeError, ValueError):
            ignored.append(f"{name}={str(params[name])[:40]!r}")
            return
        state.set_value(key, parsed)

    take("src", state.SOURCE, str, lambda v: v in SOURCE_LABELS)
    from data.demo import is_demo_symbol
    on_demo = state.value(state.SOURCE, "demo") == "demo"
    take("sym", state.SYMBOL, lambda v: v.strip().upper(),
         lambda v: 0 < len(v) <= MAX_SYMBOL_LENGTH and (is_demo_symbol(v) or not on_demo))
    take("iv", state.INTERVAL, str, lambda v: v in ("1m", "5m", "15m", "30m", "1h", "4h", "1d"))
    take("from", state.START, dt.date.fromisoformat)
    take("to", state.END, dt.date.fromisoformat)
    take("seed", state.SEED, int, lambda v: 0 <= v <= 10_000)
    names = detectors.available("candles")
    take("det", state.DETECTORS, lambda v: list(dict.fromkeys(n for n in v.split(",") if n)),
         lambda v: set(v) <= set(names))
    take("mode", state.ENSEMBLE_MODE, str, lambda v: v in ("max", "mean", "vote"))
    take("k", state.ENSEMBLE_K, int, lambda v: 1 <= v <= len(names))
    take("tbl", state.EVENTS_TABLE_OPEN, {"0": False, "1": True}.get, lambda v: v is not None)
    pending = {}
    for key, value in params.items():
        parts = key.split(".")
        if key.startswith("p.") and len(parts) == 3 and parts[1] in names:
            specs = {s.name: s for s in detectors.detector_class(parts[1]).parameters}
            spec = specs.get(parts[2])
            take(key, f"param::{parts[1]}::{parts[2]}", int,
                 lambda v, spec=spec: spec is not None and spec.low <= v <= spec.high)
        elif key.startswith("t.") and len(parts) == 2 and parts[1] in names:
            try:
                cut = float(value)
                if not math.isfinite(cut):
                    raise ValueError
                pending[parts[1]] = cut
            except ValueError:
                ignored.append(f"{key}={str(value)[:40]!r}")
        elif key.startswith(("p.", "t.")):   # no such detector (or parameter path)
            ignored.append(f"{key[:40]}={str(value)[:40]!r}")
    st.session_state[PENDING_THRESHOLDS] = pending
    if "ev" in params:
        st.session_state[state.EVENT] = st.session_state[LINKED_EVENT] = str(params["ev"])[:32]
    return ignored


def restore_from_url() -> None:
    """On a session's first run, set the controls from the link it was opened with."""
    if st.session_state.get(_RESTORED):
        return
    st.session_state[_RESTORED] = True
    params = st.query_params.to_dict()
    if params:
        ignored = apply_params(params)
        if ignored:
            st.session_state["_link_ignored"] = ignored


def show_ignored() -> None:
    ignored = st.session_state.pop("_link_ignored", None)
    if ignored:
        st.warning("Parts of the link could not be used and were ignored:")
        st.text(", ".join(ignored))


def write_url(params: Mapping[str, str]) -> None:
    """Put the view in the address bar (only when it changed, so history stays clean)."""
    if st.query_params.to_dict() != dict(params):
        st.query_params.from_dict(params)


VIEW = "_view_params"   # the view the Explorer shows now (what "Save view" saves)


def render_saved_views(analyst: str, log) -> None:
    """Save the current view under a name, or open a saved one (shared through the case database)."""
    from store.views import list_views
    box = st.sidebar.expander("Saved views", icon=":material/bookmark:")
    try:
        names = [v["name"] for v in list_views(log=log)]
    except Exception as exc:  # a database problem must not take the Explorer down
        box.warning("Saved views are unavailable.")
        box.text(str(exc))
        return
    if names:
        pick = box.selectbox("Open a saved view", names, index=None, key="_view_pick", placeholder="Choose a view")
        box.button("Open view", disabled=pick is None, on_click=_open_view, args=(pick, log),
                   icon=":material/open_in_browser:")
    box.text_input("Name this view", max_chars=60, key="_view_name")
    box.button("Save view", icon=":material/bookmark_add:", on_click=_save_view, args=(analyst, log))
    message = st.session_state.pop("_view_saved", None)
    if message:
        (box.success if message[0] else box.error)(message[1])
        if message[2]:
            box.text(message[2])


def _save_view(analyst: str, log) -> None:
    from store.views import save_view
    name = (st.session_state.get("_view_name") or "").strip()
    try:
        save_view(name, dict(st.session_state.get(VIEW, {})), analyst, log=log)
    except ValueError as exc:
        st.session_state["_view_saved"] = (False, "The view was not saved.", str(exc))
    else:
        st.session_state["_view_saved"] = (True, "Saved; the team sees it under that name.", "")


def _open_view(name: str | None, log) -> None:
    from store.views import load_view
    if name is None:
        return
    try:
        ignored = apply_params(load_view(name, log=log))
    except ValueError as exc:
        ignored = [str(exc)]
    if ignored:
        st.session_state["_link_ignored"] = ignored
