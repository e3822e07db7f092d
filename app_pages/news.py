"""News: headline timeline with embedding-outlier scores, filters, and a jump to the Explorer."""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from components import controls, services, state
from components.charts import inert
from components.views import problem
from data import DataError
from detectors.embedders import EMBEDDERS
from detectors.pipeline import is_flagged
from detectors.text import FEW_HEADLINES

st.title("News")
choice = controls.render_data_controls()
upload = st.sidebar.file_uploader("Or upload headlines CSV (timestamp, headline[, source, url])", type=["csv"],
                                  key="headline_upload")
embedder = state.value(state.EMBEDDER, "tfidf")
embedder_label = EMBEDDERS[embedder].label if embedder in EMBEDDERS else embedder
try:
    if upload is not None:
        headlines = services.uploaded_headlines(upload.getvalue())
    else:
        headlines = services.cached_headlines(choice)
except DataError as exc:
    problem("error", "Cannot load headlines.", exc)
    st.stop()
if headlines.empty:
    st.info("No headlines for this symbol and range. Widen the range, pick another source, or upload a CSV.")
    st.stop()
try:
    with st.spinner(f"Embedding {len(headlines):,} headlines ({embedder_label})…"):
        # Keyed by the headlines themselves and the embedder: an uploaded file, or another embedder
        # (another unit of distance), starts at its own default threshold.
        data_key = f"{choice.key}|{embedder}|{pd.util.hash_pandas_object(headlines[['headline']]).sum()}"
        scores, default, unit = services.headline_scores(data_key, headlines, embedder)
except (ValueError, ImportError) as exc:
    problem("error", f"The text detector could not run with the {embedder!r} embedder: pick another "
            "embedder in Settings.", exc)
    st.stop()

if len(headlines) < FEW_HEADLINES:
    st.warning(f"Only {len(headlines)} headlines: each is compared with too few others to tell what ordinary "
               f"news looks like here, so most look unusual. Widen the range or upload more (at least {FEW_HEADLINES} "
               "headlines) before trusting a flag.")
low, high, step = controls.slider_range(scores, default)
key = state.threshold_key("text_embedding", data_key)
threshold = st.slider(f"Threshold ({unit})", float(low + step), float(high), step=float(step),
                      **state.kept(key, float(round(default / step) * step)),
                      help=f"Default {default:.3f}. Headlines farther than this from ordinary news are flagged.")
table = headlines.assign(score=scores.to_numpy(), flagged=is_flagged(scores, threshold).to_numpy())
cols = st.columns([1, 2, 2])
only_flagged = cols[0].toggle("Flagged only", **state.kept("news_flagged_only", False))   # kept across pages
search = cols[1].text_input("Contains", placeholder="word in the headline", **state.kept("news_contains", ""))
sources = cols[2].multiselect("Outlets", sorted(table["source"].astype(str).unique()))
view = table
if only_flagged:
    view = view[view["flagged"]]
if search:
    view = view[view["headline"].str.contains(search, case=False, regex=False)]
if sources:
    view = view[view["source"].isin(sources)]

filtered = len(view) < len(table)
m = st.columns(3)
m[0].metric("Headlines", f"{len(view):,} of {len(table):,}" if filtered else f"{len(table):,}")
m[1].metric("Flagged", f"{int(view['flagged'].sum())} of {int(table['flagged'].sum())}" if filtered
            else int(table["flagged"].sum()))
m[2].metric("Embedder", embedder_label)
if view.empty:
    st.info(f"None of the {len(table):,} headlines matches these filters: clear 'Flagged only', the "
            "words in 'Contains' or the outlets.")
    st.stop()
fig = go.Figure()
for flagged, colour, name in ((False, "#8a97ab", "Ordinary"), (True, "#c4161c", "Flagged")):
    part = view[view["flagged"] == flagged]
    fig.add_trace(go.Scatter(x=part["timestamp"], y=part["score"], mode="markers", name=name,
                             marker=dict(color=colour, size=7 if flagged else 5),
                             customdata=part[["headline", "source"]].map(inert).to_numpy(),
                             hovertemplate="%{x}<br>%{customdata[1]}<br>%{customdata[0]}<br>score %{y:.3f}"
                                           "<extra></extra>"))
fig.add_hline(y=threshold, line=dict(dash="dash", color="#c4161c"))
# The whole range stays on the time axis, so a filter shows where its headlines fall.
fig.update_xaxes(range=[table["timestamp"].min(), table["timestamp"].max()])
fig.update_layout(height=360, margin=dict(l=10, r=10, t=10, b=10), yaxis_title=unit,
                  legend=dict(orientation="h", y=1.08))
st.plotly_chart(fig, key="news_timeline")

shown = view[["timestamp", "headline", "source", "score", "flagged"]].reset_index(drop=True)
picked = st.dataframe(shown, key="news_table", on_select="rerun", selection_mode="single-row", hide_index=True,
                      width="stretch", column_config={
                          "timestamp": st.column_config.DatetimeColumn("Time (UTC)", format="YYYY-MM-DD HH:mm"),
                          "headline": st.column_config.TextColumn("Headline"),
                          "source": st.column_config.TextColumn("Outlet"),
                          "score": st.column_config.NumberColumn(f"Score ({unit})", format="%.3f"),
                          "flagged": st.column_config.CheckboxColumn("Flagged")})
rows = [r for r in picked.selection.rows if 0 <= r < len(shown)]
if rows:
    row = shown.iloc[rows[0]]
    st.text(row["headline"])
    if st.button(f"Open the Explorer at {row['timestamp']:%Y-%m-%d %H:%M} UTC", icon=":material/open_in_new:"):
        # Tied to this data: the Explorer zooms only while it shows the same symbol and range.
        st.session_state[state.FOCUS_TIME] = {"key": choice.key, "time": pd.Timestamp(row["timestamp"])}
        st.session_state.pop(state.EVENT, None)   # an event left open would take the zoom
        st.switch_page("app_pages/explorer.py")
