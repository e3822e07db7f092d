"""Live monitoring on the Explorer: a fragment that polls new candles and scores them incrementally.

Only this fragment reruns on each tick; the main chart is not redrawn and no model is re-fitted:
the z-score updates in O(1) per candle, other detectors score a short tail with the model that
was fitted on the loaded data.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from components import services, state
from components.controls import DataChoice, DetectorChoice, detector_label
from components.views import problem
from data import INTERVALS, DataError, load_candles, validate_candles
from detectors.pipeline import is_flagged
from detectors.zscore import RollingZScoreDetector

TAIL_BARS = 200


def _demo_future(choice: DataChoice, last: pd.Series, bars: int = 500) -> pd.DataFrame:
    """The demo market's next bars, rescaled to continue from the last loaded close."""
    from data.demo import demo_market
    start = last.name + INTERVALS[choice.interval]
    future = demo_market(seed=choice.seed + 1, symbol=choice.symbol, start=start,
                         end=start + INTERVALS[choice.interval] * bars, interval=choice.interval).candles
    scale = last["close"] / future["open"].iat[0]
    future[["open", "high", "low", "close"]] *= scale
    return future


def _fetch_new(choice: DataChoice, live: dict) -> pd.DataFrame:
    """Candles after the last one seen (demo: one replayed bar per tick)."""
    if choice.source == "demo":
        future = live.setdefault("future", _demo_future(choice, live["tail"].iloc[-1]))
        nxt = future[future.index > live["tail"].index[-1]]
        return nxt.iloc[:1]
    start = live["tail"].index[-1] + INTERVALS[choice.interval]
    now = pd.Timestamp.now(tz="UTC")
    if start >= now:
        return live["tail"].iloc[:0]
    kwargs = choice.load_kwargs()
    kwargs.update(start=start, end=now + INTERVALS[choice.interval])
    return load_candles(choice.source, choice.symbol, use_cache=False, **kwargs)


def _start_live(candles: pd.DataFrame, zscore: RollingZScoreDetector) -> dict:
    """The streaming z-score (the analyst's z-score parameters) primed on the newest candles."""
    inc = zscore.incremental()
    for row in candles.iloc[-(max(zscore.window, zscore.long_window or 0) + 1):].itertuples():
        inc.update(row.open, row.high, row.low, row.close, row.volume)
    return {"inc": inc, "tail": candles.iloc[-TAIL_BARS:], "alerts": []}


def _send_alerts(choice: DataChoice, tail: pd.DataFrame, new_scores: dict, models: dict, cuts: dict) -> None:
    """New flags as events (the pipeline's event builder, the fitted detectors' calibration)
    through the team's alert rules, in a background thread so a slow webhook never holds the
    page; every delivery is recorded in the case database."""
    import threading

    from detectors.ensemble import combine_severities
    from events.build import build_events
    from scan.job import notifier_for
    raw = pd.DataFrame({n: s.reindex(tail.index) for n, s in new_scores.items()}, index=tail.index)
    flags = pd.DataFrame({n: is_flagged(raw[n], cuts.get(n, models[n].threshold)) for n in raw}, index=tail.index)
    if not flags.to_numpy().any():
        return
    severity = pd.DataFrame({n: models[n].severity(raw[n]) for n in raw}, index=tail.index)
    events = build_events(tail, raw, severity, flags, combine_severities(dict(severity.items())),
                          flags.any(axis=1), symbol=choice.symbol)
    notifier = notifier_for(services.case_log())
    if notifier is not None and len(events):
        threading.Thread(target=notifier.notify, args=(events,), daemon=True, name="live-alerts").start()


def render_live_monitor(choice: DataChoice, candles: pd.DataFrame, chosen: tuple[DetectorChoice, ...],
                        thresholds: dict[str, float]) -> None:
    """The live toggle and, when on, a fragment that refreshes every N seconds."""
    if choice.source == "csv":
        return
    st.subheader("Live monitoring")
    cols = st.columns([1, 2])
    on = cols[0].toggle("Live", **state.kept(state.LIVE, False),
                        help="Poll the newest candles and score them as they arrive. The demo replays one "
                             "new bar per refresh; Yahoo and Bybit fetch the newest candles.")
    if not on:
        return
    every = cols[1].select_slider("Refresh every (seconds)", [2, 5, 10, 30, 60, 300],
                                  **state.kept(state.LIVE_EVERY, 10))
    zscore_choice = next((d for d in chosen if d.name == "zscore"), DetectorChoice("zscore", ()))
    zscore = services.scored(choice, candles, (zscore_choice,)).detectors.get("zscore")
    if zscore is None:
        st.warning("Live monitoring needs the z-score detector, which could not run on this data.")
        return
    live_key = f"live::{choice.key}|{zscore_choice.params}"
    if live_key not in st.session_state:
        st.session_state[live_key] = _start_live(candles, zscore)
    @st.fragment(run_every=every)
    def live_panel() -> None:
        cuts = st.session_state.get(state.CUTS, thresholds)   # the sliders may have moved since
        z_cut = cuts.get("zscore", zscore.threshold)
        others = [d for d in chosen if d.name != "zscore" and d.name in cuts]
        live = st.session_state[live_key]
        try:
            new = _fetch_new(choice, live)
        except DataError as exc:
            problem("warning", f"Live update failed, retrying in {every} s.", exc)
            new = live["tail"].iloc[:0]
        new_scores = {"zscore": pd.Series([live["inc"].update_one(row)["score"] for _, row in new.iterrows()],
                                          index=new.index, dtype="float64")}
        models = {"zscore": zscore}
        if len(new):
            live["tail"] = validate_candles(pd.concat([live["tail"], new]).iloc[-TAIL_BARS:],
                                            symbol=choice.symbol, source=choice.source, interval=choice.interval)
            for det in others:
                models[det.name] = services.scored(choice, candles, (det,)).detectors[det.name]
                new_scores[det.name] = models[det.name].score(live["tail"]).loc[new.index]
        if len(new):
            _send_alerts(choice, live["tail"], new_scores, models, cuts)
        for name, values in new_scores.items():
            # The fitted detector's calibration: a live severity means what it means on the chart.
            severity = models[name].severity(values)
            for ts in values.index[is_flagged(values, cuts.get(name, z_cut)).to_numpy()]:
                live["alerts"].append({"time": ts, "detector": detector_label(name),
                                       "score": round(float(values[ts]), 3), "severity": round(float(severity[ts]), 3),
                                       "close": new.at[ts, "close"], "volume": new.at[ts, "volume"]})
        last = live["tail"].iloc[-1]
        c = st.columns(4)
        c[0].metric("Last candle (UTC)", f"{last.name:%m-%d %H:%M}")
        c[1].metric("Last close", f"{last['close']:,.2f}")
        c[2].metric("New candles this tick", len(new))
        c[3].metric("Live alerts", len(live["alerts"]))
        if live["alerts"]:
            st.dataframe(pd.DataFrame(live["alerts"]).iloc[::-1], hide_index=True, width="stretch")
        else:
            st.caption(f"No live alerts yet (z-score cut {z_cut:.2f}).")

    live_panel()
