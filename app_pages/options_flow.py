"""Options flow: unusual options activity (possible trading ahead of announcements)."""
import plotly.graph_objects as go
import streamlit as st

from components import services
from components.views import problem
from data import DataError

st.title("Options flow")
st.caption("Per-contract volume / open interest (above 5 is unusual), call/put skew, short-dated and "
           "narrow-strike concentration. Demo chains work offline; Yahoo chains need a network.")
cols = st.columns([1, 1, 2])
source = cols[0].selectbox("Chain source", ["demo", "yahoo"],
                           format_func={"demo": "Demo (offline)", "yahoo": "Yahoo Finance"}.get)
symbol = cols[1].text_input("Symbol", value="DEMO" if source == "demo" else "AAPL").strip().upper()
try:
    chain = services.cached_option_chain(source, symbol)
except DataError as exc:
    problem("error", "Cannot load the option chain.", exc)
    st.stop()
result = services.options_flow(chain)
spot = chain.attrs.get("spot")
m = st.columns(5)
m[0].metric("Risk", f"{result.risk_score:.2f}", result.alert_level if result.alert_level != "none" else None,
            delta_color="inverse")
m[1].metric("Call share of volume", f"{result.metrics['call_share']:.0%}")
m[2].metric("Volume in ≤ 7-day expiries", f"{result.metrics['short_dated_share']:.0%}")
m[3].metric("Strike concentration", f"{result.metrics['strike_concentration']:.2f}")
m[4].metric("Unusual contracts", int(result.metrics["unusual_contracts"]))

st.subheader("Assessment")
with st.spinner("Assessing…"):
    assessment = services.assess_options(result, symbol)
st.text(f"By {assessment.source}" + (f" ({assessment.fallback_reason})" if assessment.fallback_reason else "")
        + ("" if assessment.grounded else " · UNVERIFIED: states numbers not in the metrics"))
st.text(assessment.text)
if assessment.source != "built-in":
    if getattr(assessment, "risk_note", ""):
        st.metric("Risk (statistical; model risk ignored)", f"{assessment.risk:.2f}")
        st.text(assessment.risk_note)
    else:
        st.metric("Risk, blended with the model (0.6 statistical + 0.4 model)", f"{assessment.risk:.2f}")

#: Headers of both contract tables, in the page's words.
CONTRACT_COLUMNS = {
    "contract": st.column_config.TextColumn("Contract"),
    "type": st.column_config.TextColumn("Type"),
    "expiry": st.column_config.DateColumn("Expiry"),
    "days_to_expiry": st.column_config.NumberColumn("Days to expiry", format="%.1f"),
    "strike": st.column_config.NumberColumn("Strike"),
    "last_price": st.column_config.NumberColumn("Last price", format="%.2f"),
    "volume": st.column_config.NumberColumn("Volume"),
    "open_interest": st.column_config.NumberColumn("Open interest"),
    "vol_oi_ratio": st.column_config.NumberColumn("Vol / OI", format="%.1f"),
    "implied_volatility": st.column_config.NumberColumn("IV", format="%.2f"),
    "last_trade": st.column_config.DatetimeColumn("Last trade (UTC)", format="YYYY-MM-DD HH:mm"),
    "in_the_money": st.column_config.CheckboxColumn("In the money"),
    "reasons": st.column_config.TextColumn("Why unusual"),
}

st.subheader("Flagged contracts")
flagged = result.contracts[result.contracts["unusual"]].copy()
flagged.attrs = {}   # the chain's metadata (spot, fetch time) is not table data
if flagged.empty:
    st.caption("No contract traded more than 5x its open interest.")
else:
    st.dataframe(flagged[["contract", "type", "expiry", "strike", "volume", "open_interest", "vol_oi_ratio",
                          "implied_volatility", "last_trade", "reasons"]],
                 hide_index=True, width="stretch", column_config=CONTRACT_COLUMNS)

st.subheader("Volume by strike and expiry")
side = st.radio("Side", ["calls", "puts", "both"], horizontal=True)
view = chain if side == "both" else chain[chain["type"] == side[:-1]]
grid = view.pivot_table(index="strike", columns=view["expiry"].dt.strftime("%Y-%m-%d"), values="volume",
                        aggfunc="sum", fill_value=0)
fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=list(grid.columns), y=grid.index.to_numpy(),
                           colorscale="YlOrRd", colorbar=dict(title="Volume"),
                           hovertemplate="expiry %{x}<br>strike %{y}<br>volume %{z:,.0f}<extra></extra>"))
if spot:
    fig.add_hline(y=spot, line=dict(color="#1f4e9c", dash="dot"), annotation_text=f"spot {spot:,.2f}")
fig.update_layout(height=520, margin=dict(l=10, r=10, t=20, b=10), xaxis_title="Expiry", yaxis_title="Strike")
st.plotly_chart(fig, key="options_heatmap")
with st.expander("Whole chain"):
    whole = chain.copy()
    whole.attrs = {}
    st.dataframe(whole, hide_index=True, width="stretch", column_config=CONTRACT_COLUMNS)
