"""Evaluation & backtest: detectors against labels, threshold sweeps, avoid-anomalies backtest."""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from components import controls, links, services
from components.tables import readable_kind
from components.views import load_or_stop, nothing_scored, problem, score_all
from data import DataError
from data.labels import read_labels
from evaluation.backtest import backtest_avoid_anomalies
from evaluation.metrics import best_threshold, evaluate, labels_in_range, pr_curve, threshold_sweep

st.title("Evaluation & backtest")
choice = controls.render_data_controls()
chosen, ensemble, _, _ = controls.render_detector_controls()
candles = load_or_stop(choice)
scored, thresholds = score_all(choice, candles, chosen)
scores, units = scored.scores, scored.units
if not scores:
    st.info(nothing_scored(chosen))
    st.stop()

labels = services.demo_labels(choice) if choice.source == "demo" else None
upload = st.file_uploader("Labels CSV (start, end, kind) — optional for the demo market", type=["csv"])
if upload is not None:
    try:
        labels = read_labels(upload.getvalue())
    except DataError as exc:
        problem("error", "Cannot read the labels file: fix what is named below and upload it again.", exc)
        st.stop()
if labels is None or labels.empty:
    st.info("Evaluation needs labelled events: use the demo market or upload labels (start, end, kind).")
    st.stop()
kinds = st.multiselect("Label kinds to evaluate against", sorted(labels["kind"].unique()),
                       default=sorted(labels["kind"].unique()), format_func=readable_kind)
if not kinds:
    st.info("Choose at least one label kind above: recall and precision are measured against those labels.")
    st.stop()
if not labels_in_range(candles.index, labels, kinds=kinds):
    chosen_labels = labels[labels["kind"].isin(kinds)]
    which = "The labels" if len(kinds) == labels["kind"].nunique() else "The labels of the chosen kinds"
    problem("warning", "No label falls on a loaded candle, so there is nothing to evaluate.",
            f"The candles cover {candles.index[0]:%Y-%m-%d %H:%M} to {candles.index[-1]:%Y-%m-%d %H:%M} UTC. "
            f"{which} cover {chosen_labels['start'].min():%Y-%m-%d %H:%M} to "
            f"{chosen_labels['end'].max():%Y-%m-%d %H:%M} UTC. Load the labels' dates in the sidebar, "
            "upload labels for the loaded dates, or choose other kinds.")
    st.stop()

detection = scored.detect(thresholds, ensemble.mode, ensemble.k)
# Each detector alone and the ensemble, flagged exactly as the Explorer flags them; PR-AUCs are
# of the calibrated severity (one scale for all, so the rows compare like with like).
runs = {name: scored.subset([name]).detect(thresholds) for name in scores}
runs["ensemble"] = detection
series = {name: run.combined for name, run in runs.items()}
#: Below this best F1 the sweep suggests no threshold (it would mostly flag noise).
WEAK_F1 = 0.3
METRICS = {"event_pr_auc": "Event PR-AUC", "pr_auc": "Bar PR-AUC", "base_rate": "Base rate",
           "event_recall": "Event recall",
           "flag_precision": "Flag precision", "f1": "F1", "detection_delay": "Delay (bars)",
           "n_labels": "Labels", "n_flagged_events": "Flagged events"}
rows = []
for name, run in runs.items():
    result = evaluate(run.combined, labels, flagged=run.flagged, kinds=kinds)
    row = {"Detector": "Ensemble" if name == "ensemble" else controls.detector_label(name),
           "Threshold": f"{thresholds[name]:.3g} {units[name]}" if name in thresholds else
           controls.ENSEMBLE_MODES[ensemble.mode] + (f", k = {ensemble.k}" if ensemble.mode == "vote" else "")}
    row.update({label: result[key] for key, label in METRICS.items()})
    delay = row["Delay (bars)"]     # none when no labelled event was found
    row["Delay (bars)"] = "–" if delay is None or pd.isna(delay) else f"{delay:.1f}"
    row.update({f"Recall: {readable_kind(k)}": v for k, v in result["recall_by_kind"].items()})
    rows.append(row)
st.subheader("At the current thresholds")
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.2f") for c in
                            ("Event PR-AUC", "Bar PR-AUC", "Base rate", "Event recall",
                             "Flag precision", "F1")})
st.caption("PR-AUCs of the calibrated severity over all thresholds. Event PR-AUC: labelled "
           "events found against flagged events that are real. Bar PR-AUC: bars inside labels "
           "against flagged bars; the base rate is what a random score gets.")

left, right = st.columns(2)
with left:
    st.markdown("**Precision-recall curves** (point-wise)")
    fig = go.Figure()
    for name, values in series.items():
        curve = pr_curve(values, labels, kinds=kinds)
        fig.add_trace(go.Scatter(x=curve["recall"], y=curve["precision"], mode="lines",
                                 name="Ensemble" if name == "ensemble" else controls.detector_label(name)))
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="Recall",
                      yaxis_title="Precision", yaxis_range=[0, 1.02], xaxis_range=[0, 1])
    st.plotly_chart(fig, key="pr_curves")
with right:
    st.markdown("**F1 versus threshold** (event-wise)")
    name = st.selectbox("Detector", list(scores), format_func=controls.detector_label, key="sweep_detector")
    low, high, _ = controls.slider_range(scores[name], thresholds[name])
    grid = np.linspace(max(low, high / 100), high, 60)
    sweep = threshold_sweep(scores[name], labels, grid, kinds=kinds)
    fig = go.Figure([go.Scatter(x=sweep["threshold"], y=sweep[c], mode="lines", name=label)
                     for c, label in (("f1", "F1"), ("precision", "Precision"), ("recall", "Recall"))])
    try:
        best = best_threshold(sweep)
        best_f1 = float(sweep.loc[sweep["threshold"] == best, "f1"].iat[0])
        fig.add_vline(x=best, line=dict(dash="dash", color="#c4161c"), annotation_text=f"best {best:.3g}",
                      annotation_position="top right")
    except ValueError as exc:
        best = None
        st.caption(str(exc))
    fig.add_vline(x=thresholds[name], line=dict(dash="dot", color="#555"), annotation_text="current",
                  annotation_position="bottom left")
    fig.update_layout(height=330, margin=dict(l=10, r=10, t=10, b=10), xaxis_title=f"Threshold ({units[name]})",
                      yaxis_range=[0, 1.02])
    st.plotly_chart(fig, key="sweep_chart")
    if best is not None and (best_f1 < WEAK_F1 or best <= grid[0]):
        # An edge of the sweep or a poor F1 is no threshold to recommend: it would flag most bars.
        st.caption(f"No threshold of this detector separates these labels well (best F1 {best_f1:.2f}"
                   + (", at the lowest threshold tried" if best <= grid[0] else "")
                   + "), so none is suggested for the Explorer.")
        best = None
    if best is not None and st.button(f"Use {best:.3g} as the Explorer's threshold", icon=":material/tune:"):
        # This page already drew the slider, so its value cannot change in this run: the Explorer
        # applies the cut when it draws the slider, as it does for a link's thresholds.
        st.session_state[links.PENDING_THRESHOLDS] = {name: float(best)}
        st.switch_page("app_pages/explorer.py")

st.subheader("Backtest: step aside during events")
st.caption("The strategy holds the position and steps out (or cuts exposure) from the bar after an event's first "
           "flag until it ends; costs and slippage are charged on every change. Sharpe and Sortino are "
           "annualised by the bars per year of this data.")
cols = st.columns(5)
mode = cols[0].selectbox("While an event is active", ["flat", "reduce"],
                         format_func={"flat": "step out", "reduce": "cut exposure"}.get)
reduced = cols[1].slider("Reduced exposure", 0.0, 1.0, 0.5, 0.05, disabled=mode == "flat")
position = cols[2].slider("Position (share of capital)", 0.1, 1.0, 1.0, 0.05)
cost = cols[3].number_input("Cost per trade (%)", 0.0, 2.0, 0.1, 0.01) / 100
slippage = cols[4].number_input("Slippage (%)", 0.0, 2.0, 0.05, 0.01) / 100
events = detection.events
result = backtest_avoid_anomalies(candles, events, mode=mode, reduced_exposure=reduced, position=position,
                                  cost=cost, slippage=slippage)
st.caption("Bad data is not a price: bars inside a data-error event (bad ticks, bad prints) take the last good "
           "close before the event, and the strategy and buy-and-hold are both computed on these same repaired "
           "prices, so a bad tick adds no return to either.")
st.text(result.note)
st.dataframe(result.metrics.rename(index={"strategy": "Strategy", "buy_and_hold": "Buy and hold"}), width="stretch",
             column_config={
                 "total_return": st.column_config.NumberColumn("Total return", format="percent"),
                 "sharpe": st.column_config.NumberColumn("Sharpe (annualised)", format="%.2f"),
                 "sortino": st.column_config.NumberColumn("Sortino (annualised)", format="%.2f"),
                 "max_drawdown": st.column_config.NumberColumn("Max drawdown", format="percent"),
                 "n_trades": st.column_config.NumberColumn("Trades", format="%d"),
                 "exposure": st.column_config.NumberColumn(
                     "Average exposure", format="percent", help="Share of capital invested, averaged over the bars."),
                 "win_rate": st.column_config.NumberColumn(
                     "Winning spells", format="percent",
                     help="Share of holding spells that ended with more equity than they began with, costs included."),
             })
fig = go.Figure([go.Scatter(x=result.equity.index, y=result.equity[c], mode="lines", name=name)
                 for c, name in (("strategy", "Strategy"), ("buy_and_hold", "Buy and hold (repaired prices)"))])
fig.update_layout(height=360, margin=dict(l=10, r=10, t=10, b=10), yaxis_title="Equity")
st.plotly_chart(fig, key="equity_chart")
