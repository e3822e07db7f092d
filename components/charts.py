"""Plotly figure builders for the pages (pure functions of frames; no caching here)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components.controls import detector_label
from detectors.pipeline import is_flagged

MAX_CANDLES_DRAWN = 2000      # beyond this, candles are resampled for drawing (scores stay exact)
WEBGL_FROM = 3000             # score lines and markers switch to WebGL traces above this length
SYMBOLS = {"zscore": "circle", "isolation_forest": "diamond", "pump_dump": "triangle-up",
           "lstm_autoencoder": "square", "ensemble": "star"}
SEVERITY_SCALE = [[0.0, "#f6c343"], [0.5, "#f08c2e"], [1.0, "#c4161c"]]
EVENT_FILL = "rgba(220, 60, 40, 0.13)"
LABEL_FILL = "rgba(40, 110, 220, 0.10)"
MAX_SPANS = 400               # shaded spans drawn at most (the table lists every event)


def first_sentence(text: str) -> str:
    text = str(text or "").strip()
    cut = text.find(". ")
    return text if cut < 0 else text[: cut + 1]


def resample_for_drawing(candles: pd.DataFrame, limit: int = MAX_CANDLES_DRAWN) -> pd.DataFrame:
    """Aggregate candles to at most ``limit`` bars so long series stay smooth in the browser."""
    if len(candles) <= limit:
        return candles
    span = candles.index[-1] - candles.index[0]
    rule = pd.tseries.frequencies.to_offset(pd.Timedelta(seconds=np.ceil(span.total_seconds() / limit)))
    agg = candles.resample(rule).agg({"open": "first", "high": "max", "low": "min", "close": "last",
                                      "volume": "sum"})
    return agg.dropna(subset=["close"])


def peaks_for_drawing(series: pd.Series, limit: int = MAX_CANDLES_DRAWN) -> pd.Series:
    """At most ``limit`` points of a score line: the maximum of each bucket, so no spike that
    crosses a threshold disappears from the drawing (flags themselves are drawn exactly)."""
    if len(series) <= limit:
        return series
    size = -(-len(series) // limit)
    values = series.to_numpy()
    pad = (-len(values)) % size
    buckets = np.concatenate([values, np.full(pad, np.nan)]).reshape(-1, size)
    with np.errstate(all="ignore"):
        peaks = np.nanmax(np.where(np.isnan(buckets), -np.inf, buckets), axis=1)
    peaks[~np.isfinite(peaks)] = np.nan
    return pd.Series(peaks, index=series.index[::size])


def _ms(index) -> np.ndarray:
    """Epoch milliseconds: plotly draws them on a date axis and ships them as compact binary,
    where Timestamp objects would be serialised one ISO string at a time."""
    return pd.DatetimeIndex(index).asi8 // 1_000_000


def price_range(candles: pd.DataFrame) -> list[float]:
    """A price axis that ignores bad ticks: the 0.2-99.8% quantiles of lows and highs, padded.

    One x10 tick would otherwise flatten every real candle into a line; the bad tick stays
    flagged in the table and its marker sits at the edge of the panel.
    """
    lo, hi = np.quantile(candles["low"], 0.002), np.quantile(candles["high"], 0.998)
    pad = (hi - lo) * 0.06 or hi * 0.01
    return [float(lo - pad), float(hi + pad)]


def score_range(series: pd.Series, threshold: float) -> list[float]:
    """A score axis that keeps the threshold line readable: extreme spikes are cut at the top."""
    finite = series[np.isfinite(series)]
    top = float(np.quantile(finite, 0.998)) if len(finite) else threshold
    return [0.0, max(threshold * 2.5, top * 1.1)]


def _event_lookup(index: pd.DatetimeIndex, events: pd.DataFrame) -> np.ndarray:
    """For each timestamp, the row position of the event covering it, or -1."""
    pos = np.full(len(index), -1)
    for i, (start, end) in enumerate(zip(events["start"], events["end"])):
        pos[(index >= start) & (index <= end)] = i
    return pos


def _domains(heights: list[float], gap: float = 0.03) -> list[tuple[float, float]]:
    """Vertical [bottom, top] paper ranges of stacked panels, first panel on top."""
    usable = 1.0 - gap * (len(heights) - 1)
    total = sum(heights)
    top, out = 1.0, []
    for h in heights:
        size = usable * h / total
        out.append((max(top - size, 0.0), top))
        top -= size + gap
    return out


def build_anomaly_figure(candles: pd.DataFrame, scores: dict[str, pd.Series],
                         thresholds: dict[str, float], events: pd.DataFrame, *,
                         labels: pd.DataFrame | None = None, units: dict[str, str] | None = None,
                         focus: tuple[pd.Timestamp, pd.Timestamp] | None = None,
                         revision: str = "") -> go.Figure:
    """Candles, volume and one score panel per detector, with flags, event spans and labels.

    All panels share one x axis, so zooming one zooms all. ``revision`` keeps the user's zoom
    across reruns (Plotly ``uirevision``) until the data or the focused event changes. The
    figure is assembled as plain dicts (plotly's per-call validation costs seconds here).
    """
    units = units or {}
    names = list(scores)
    heights = [0.5, 0.14] + [0.36 / max(len(names), 1)] * len(names)
    domains = _domains(heights)
    titles = ["Price", "Volume"] + [f"{detector_label(n)} score ({units.get(n, '')})" for n in names]
    layout: dict = {
        "height": 360 + 140 * len(domains), "margin": dict(l=10, r=10, t=30, b=10),
        "uirevision": revision or "keep", "hovermode": "closest", "dragmode": "zoom",
        "legend": dict(orientation="h", y=1.04, x=0, font=dict(size=11)),
        "xaxis": dict(anchor=f"y{len(domains)}", rangeslider=dict(visible=False), type="date"),
    }
    annotations = []
    for i, (lo, hi) in enumerate(domains, start=1):
        layout[f"yaxis{'' if i == 1 else i}"] = dict(domain=[lo, hi], anchor="x", automargin=True)
        annotations.append(dict(text=titles[i - 1], x=0, y=hi, xref="paper", yref="paper", showarrow=False,
                                xanchor="left", yanchor="bottom", font=dict(size=12)))
    layout["yaxis"]["range"] = price_range(candles)
    drawn = resample_for_drawing(candles)
    if focus is not None:   # full resolution around the focused event, coarse elsewhere
        inside = (drawn.index >= focus[0]) & (drawn.index <= focus[1])
        drawn = pd.concat([drawn[~inside], candles.loc[focus[0]:focus[1]]]).sort_index()
    volume_kind = "bar" if len(drawn) <= 600 else "scattergl"   # thousands of SVG bars redraw slowly
    traces = [
        dict(type="candlestick", x=_ms(drawn.index), open=drawn["open"].to_numpy(), high=drawn["high"].to_numpy(),
             low=drawn["low"].to_numpy(), close=drawn["close"].to_numpy(), name="Price", showlegend=False,
             increasing=dict(line=dict(color="#26a269")), decreasing=dict(line=dict(color="#c01c28")),
             xaxis="x", yaxis="y"),
        dict(type=volume_kind, x=_ms(drawn.index), y=drawn["volume"].to_numpy(), name="Volume",
             showlegend=False, xaxis="x", yaxis="y2",
             **({"marker": dict(color="#8a97ab")} if volume_kind == "bar" else
                {"mode": "lines", "fill": "tozeroy", "line": dict(color="#8a97ab", width=1, shape="hv")})),
    ]
    event_pos = _event_lookup(candles.index, events)
    for row, name in enumerate(names, start=3):
        series, threshold = scores[name], thresholds[name]
        kind = "scattergl" if len(series) > WEBGL_FROM else "scatter"
        line = peaks_for_drawing(series)
        traces.append(dict(type=kind, x=_ms(line.index), y=line.to_numpy(), mode="lines", name=f"{name} score",
                           line=dict(width=1, color="#4a5d7e"), showlegend=False, xaxis="x", yaxis=f"y{row}",
                           hovertemplate="%{x|%Y-%m-%d %H:%M}<br>score %{y:.3g}<extra>" + name + "</extra>"))
        layout[f"yaxis{row}"]["range"] = score_range(series, threshold)
        traces.append(dict(type="scatter", x=_ms([series.index[0], series.index[-1]]), y=[threshold, threshold],
                           mode="lines", line=dict(color="#c4161c", dash="dash", width=1), showlegend=False,
                           hoverinfo="skip", name=f"{name} threshold", xaxis="x", yaxis=f"y{row}"))
        flagged = np.flatnonzero(is_flagged(series, threshold).to_numpy() & (event_pos >= 0))
        if not len(flagged):
            continue
        ev = events.iloc[event_pos[flagged]]
        severity = ev["severity"].to_numpy(dtype=float)
        explanation = ev["explanation"] if "explanation" in ev else [""] * len(ev)
        custom = np.column_stack([ev["event_id"], ev["kind"], [first_sentence(t) for t in explanation],
                                  np.round(series.to_numpy()[flagged], 4), np.round(severity, 3)])
        traces.append(dict(
            type=kind, x=_ms(candles.index[flagged]), y=candles["close"].to_numpy()[flagged], mode="markers",
            name=detector_label(name), customdata=custom, xaxis="x", yaxis="y",
            marker=dict(symbol=SYMBOLS.get(name, "circle"), size=9, color=severity, cmin=0.4, cmax=0.9,
                        colorscale=SEVERITY_SCALE, line=dict(width=0.5, color="#333")),
            hovertemplate=("%{x|%Y-%m-%d %H:%M}<br><b>%{customdata[1]}</b> · severity %{customdata[4]}"
                           "<br>score %{customdata[3]}<br>%{customdata[2]}<extra>%{fullData.name}</extra>")))
    bar = _bar(candles)
    shapes = [dict(type="rect", xref="x", yref="paper", x0=start, x1=end + bar, y0=0, y1=1,
                   fillcolor=EVENT_FILL, line=dict(width=0), layer="below")
              for start, end in zip(events["start"][:MAX_SPANS], events["end"][:MAX_SPANS])]
    if labels is not None and len(labels):
        labels = labels.iloc[:MAX_SPANS]
        shapes += [dict(type="rect", xref="x", yref="paper", x0=start, x1=end + bar, y0=0, y1=1,
                        fillcolor=LABEL_FILL, layer="below",
                        line=dict(color="rgba(40,110,220,0.5)", dash="dot", width=1))
                   for start, end in zip(labels["start"], labels["end"])]
        annotations += [dict(x=start, y=domains[0][1], xref="x", yref="paper", text=f"label: {kind}",
                             showarrow=False, xanchor="left", yanchor="top", font=dict(size=9, color="#2a6fb0"))
                        for start, kind in zip(labels["start"], labels["kind"])]
    layout["shapes"], layout["annotations"] = shapes, annotations
    if focus is not None:
        layout["xaxis"]["range"] = [_ms([focus[0]])[0], _ms([focus[1]])[0]]
        window = candles.loc[focus[0]:focus[1]]
        if len(window):
            layout["yaxis"]["range"] = price_range(window)
    return go.Figure(dict(data=traces, layout=layout), _validate=False)


def _bar(candles: pd.DataFrame) -> pd.Timedelta:
    if len(candles) < 2:
        return pd.Timedelta(0)
    return pd.Series(candles.index).diff().median()
