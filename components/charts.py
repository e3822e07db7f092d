"""Plotly figure builders for the pages (pure functions of frames; no caching here)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components.controls import detector_label
from detectors.pipeline import is_flagged

MAX_CANDLES_DRAWN = 2000      # beyond this, candles are resampled for drawing (scores stay exact)
SYMBOLS = {"zscore": "circle", "isolation_forest": "diamond", "pump_dump": "triangle-up",
           "flash_crash": "triangle-down", "lstm_autoencoder": "square", "ensemble": "star"}
SEVERITY_SCALE = [[0.0, "#f6c343"], [0.5, "#f08c2e"], [1.0, "#c4161c"]]
LABEL_FILL = "rgba(40, 110, 220, 0.10)"
EVENT_FILL = "rgba(220, 60, 40, 0.13)"
MAX_SPANS = 400               # shaded spans drawn at most (the table lists every event)


def inert(text) -> str:
    """Untrusted text (headlines, model output) for a Plotly label: Plotly reads <a>, <b>,
    <br> in hover text, so angle brackets become look-alikes that it does not."""
    return str(text if text is not None else "").replace("<", "‹").replace(">", "›")


def first_sentence(text: str) -> str:
    """The first sentence of an explanation for a hover label, made inert."""
    text = inert(text or "").strip()
    cut = text.find(". ")
    return text if cut < 0 else text[: cut + 1]


#: Candle lengths an analyst reads at a glance, for drawing intraday bars coarser.
ROUND_CANDLES = tuple(pd.Timedelta(minutes=m) for m in (1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 180, 240, 360,
                                                         480, 720, 1440))
#: Bars per drawn candle for daily and longer bars.
ROUND_FACTORS = (1, 2, 3, 5, 10, 20, 50, 100)


def bars_per_candle(index: pd.DatetimeIndex, limit: int = MAX_CANDLES_DRAWN) -> int:
    """How many bars one drawn candle holds so at most ``limit`` are drawn: the fewest that
    make a round candle (15 minutes of 1m bars, not 14), else the fewest that fit."""
    needed = max(1, -(-len(index) // limit))
    if needed == 1:
        return 1
    bar = pd.Series(index).diff().median()
    if bar < pd.Timedelta(days=1):
        factors = [span // bar for span in ROUND_CANDLES if span % bar == pd.Timedelta(0)]
    else:
        factors = list(ROUND_FACTORS)
    return next((f for f in factors if f >= needed), needed)


def drawing_groups(index: pd.DatetimeIndex, factor: int | None = None) -> np.ndarray:
    """The drawn candle of each bar: runs of ``factor`` (default ``bars_per_candle``) consecutive
    bars, restarted at every session gap (a night, a weekend), so a candle is always whole bars
    of one session: 3 months of 1h draw as 2-hour candles, never as odd 65-minute ones."""
    stamps = pd.DatetimeIndex(index).asi8
    factor = bars_per_candle(index) if factor is None else factor
    if factor == 1:
        return np.arange(len(stamps))
    steps = np.diff(stamps)
    session_start = np.r_[True, steps > np.median(steps)]
    first_of_session = np.flatnonzero(session_start)[np.cumsum(session_start) - 1]
    return np.cumsum(session_start | ((np.arange(len(stamps)) - first_of_session) % factor == 0)) - 1


def resample_for_drawing(candles: pd.DataFrame, groups: np.ndarray) -> pd.DataFrame:
    """One candle per group (``drawing_groups``), at the time of its first bar."""
    if not len(candles) or groups[-1] == len(candles) - 1:
        return candles
    drawn = candles.groupby(groups).agg({"open": "first", "high": "max", "low": "min", "close": "last",
                                         "volume": "sum"})
    drawn.index = candles.index[np.r_[True, np.diff(groups) > 0]]
    return drawn


def peaks_for_drawing(series: pd.Series, limit: int = MAX_CANDLES_DRAWN) -> pd.Series:
    """At most ``limit`` points of a score line: the maximum of each bucket, drawn at the bar
    where it occurred, so no spike that crosses a threshold disappears or shifts away from its
    flag marker (flags themselves are drawn exactly)."""
    if len(series) <= limit:
        return series
    size = -(-len(series) // limit)
    values = series.to_numpy(dtype="float64")
    pad = (-len(values)) % size
    buckets = np.concatenate([values, np.full(pad, np.nan)]).reshape(-1, size)
    filled = np.where(np.isnan(buckets), -np.inf, buckets)
    at = filled.argmax(axis=1)
    peaks = filled[np.arange(len(filled)), at]
    peaks[~np.isfinite(peaks)] = np.nan
    positions = np.minimum(np.arange(len(filled)) * size + at, len(values) - 1)
    return pd.Series(peaks, index=series.index[positions])


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


def session_breaks(index: pd.DatetimeIndex) -> list[dict]:
    """Plotly rangebreaks that collapse the hours a session-bound market never trades:
    weekends when no bar falls on one, and the overnight hours of intraday stock bars."""
    index = pd.DatetimeIndex(index)
    if len(index) < 3 or index[-1] - index[0] < pd.Timedelta(days=14):
        return []
    breaks = []
    if not index.dayofweek.isin([5, 6]).any():
        breaks.append(dict(bounds=["sat", "mon"]))
    bar = pd.Series(index).diff().median()
    if bar < pd.Timedelta(days=1):
        hours = np.unique(np.round(index.hour + index.minute / 60.0, 4))
        if len(hours) and len(hours) * bar / pd.Timedelta(hours=1) < 20:   # a day session, not 24 h
            gaps = np.diff(np.r_[hours, hours[0] + 24])
            last = int(np.argmax(gaps))
            close = (hours[last] + bar / pd.Timedelta(hours=1)) % 24
            breaks.append(dict(bounds=[float(close), float(hours[(last + 1) % len(hours)])], pattern="hour"))
    return breaks


def _spans_trace(starts, ends, bar: pd.Timedelta, low: float, high: float, yaxis: str, **style) -> dict:
    """Many shaded time spans as one filled trace (a layout shape each redraws slowly)."""
    x, y = [], []
    for start, end in zip(_ms(starts), _ms(pd.DatetimeIndex(ends) + bar)):
        x += [start, start, end, end, start, None]
        y += [low, high, high, low, low, None]
    return dict(type="scatter", x=x, y=y, mode="lines", fill="toself", xaxis="x", yaxis=yaxis, **style)


#: Left margin of both Explorer figures, so their time axes line up one above the other.
LEFT_MARGIN = 64


def _stacked_layout(titles: list[str], heights: list[float], breaks: list[dict], revision: str,
                    height: int) -> tuple[dict, list[tuple[float, float]]]:
    """Layout of panels stacked on one shared time axis, each titled at its top left."""
    domains = _domains(heights)
    layout: dict = {
        "height": height, "margin": dict(l=LEFT_MARGIN, r=10, t=30, b=10),
        "uirevision": revision or "keep", "hovermode": "closest", "dragmode": "zoom",
        "legend": dict(orientation="h", y=1.0, yanchor="bottom", x=1, xanchor="right", font=dict(size=11)),
        "xaxis": dict(anchor=f"y{len(domains)}", rangeslider=dict(visible=False), type="date", rangebreaks=breaks),
        "annotations": [dict(text=title, x=0, y=hi, xref="paper", yref="paper", showarrow=False, xanchor="left",
                             yanchor="bottom", font=dict(size=12)) for title, (lo, hi) in zip(titles, domains)],
    }
    for i, (lo, hi) in enumerate(domains, start=1):
        layout[f"yaxis{'' if i == 1 else i}"] = dict(domain=[lo, hi], anchor="x", automargin=False)
    return layout, domains


def build_price_figure(candles: pd.DataFrame, *, labels: pd.DataFrame | None = None,
                       focus: tuple[pd.Timestamp, pd.Timestamp] | None = None,
                       highlight: tuple[pd.Timestamp, pd.Timestamp] | None = None, revision: str = "") -> go.Figure:
    """Candles and volume (the demo's labelled spans, the open event's span): what a threshold
    move never changes, so the browser does not redraw thousands of candles for it. Hours a
    session-bound market never trades are collapsed."""
    breaks = session_breaks(candles.index)
    bar, factor = _bar(candles), bars_per_candle(candles.index)
    groups = drawing_groups(candles.index, factor)
    title = "Price"
    if len(groups) and groups[-1] < len(candles) - 1:   # say so: an analyst must know a candle is not one bar
        title += (f" (drawn as {bar_text(bar * factor)} candles, {groups[-1] + 1:,} for {len(candles):,} bars;"
                  f" an opened event shows its {bar_text(bar)} bars)")
    if focus is not None:   # full resolution on the candles the focus touches, coarse elsewhere
        inside = (candles.index >= focus[0]) & (candles.index <= focus[1])
        alone = np.isin(groups, groups[inside])
        groups = np.cumsum(np.r_[True, np.diff(groups) > 0] | alone) - 1
    drawn = resample_for_drawing(candles, groups)
    layout, _ = _stacked_layout([title, "Volume"], [0.78, 0.22], breaks, revision, 520)
    layout["yaxis"]["range"] = price_range(candles)
    # Thousands of SVG bars redraw slowly; one SVG path does not, and WebGL (which also ignores
    # rangebreaks) costs a context per figure in a software-rendered browser.
    volume_kind = "bar" if len(drawn) <= 600 else "scatter"
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
    if labels is not None and len(labels):
        shown = labels.iloc[:MAX_SPANS]
        low, high = layout["yaxis"]["range"]
        traces.append(_spans_trace(shown["start"], shown["end"], bar, low, high, "y",
                                   fillcolor=LABEL_FILL, line=dict(color="rgba(40,110,220,0.5)", dash="dot", width=1),
                                   name="Labelled (demo ground truth)", hoverinfo="text", hoveron="points+fills",
                                   text=[t for kind in shown["kind"] for t in [f"label: {kind}"] * 5 + [None]]))
    if highlight is not None:
        low, high = layout["yaxis"]["range"]
        traces.append(_spans_trace([highlight[0]], [highlight[1]], bar, low, high, "y",
                                   fillcolor=EVENT_FILL, line=dict(color="rgba(196,22,28,0.6)", width=1),
                                   name="Open event", hoverinfo="skip"))
    _apply_focus(layout, candles, focus, price_axis="yaxis")
    return go.Figure(dict(data=traces, layout=layout), _validate=False)


def build_signal_figure(candles: pd.DataFrame, scores: dict[str, pd.Series], thresholds: dict[str, float],
                        events: pd.DataFrame, *, severity: pd.DataFrame | None = None,
                        units: dict[str, str] | None = None,
                        focus: tuple[pd.Timestamp, pd.Timestamp] | None = None, revision: str = "") -> go.Figure:
    """The light layer a threshold move redraws: a severity swimlane (one row per detector, a
    square per flagged bar coloured by its calibrated severity) and each detector's score with
    its threshold line and flagged points (hover: kind, severity, explanation; box-select
    filters the events table). Same time axis and left margin as ``build_price_figure``."""
    units = units or {}
    names = list(scores)
    lanes = [detector_label(n) for n in names]
    titles = ["Severity (calibrated) of flagged bars"] + [f"{detector_label(n)} score ({units.get(n, '')})"
                                                          for n in names]
    heights = [0.1 + 0.05 * len(names)] + [0.85 / max(len(names), 1)] * len(names)
    breaks = session_breaks(candles.index)
    layout, _ = _stacked_layout(titles, heights, breaks, revision, 150 + 170 * len(names))
    layout["yaxis"].update(type="category", categoryarray=lanes[::-1], tickfont=dict(size=10), fixedrange=True,
                           ticklabelposition="inside", showgrid=False)
    event_pos = _event_lookup(candles.index, events)
    kind = "scatter"   # lines are at most MAX_CANDLES_DRAWN points and flags are rare: SVG is enough
    traces = []
    for row, name in enumerate(names, start=2):
        series, threshold = scores[name], thresholds[name]
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
        explanation = ev["explanation"] if "explanation" in ev else [""] * len(ev)
        own = (severity[name] if severity is not None and name in severity else pd.Series(np.nan, index=candles.index))
        lane = np.round(own.to_numpy(dtype=float)[flagged], 3)
        custom = np.column_stack([ev["event_id"], ev["kind"], [first_sentence(t) for t in explanation],
                                  np.round(series.to_numpy()[flagged], 4), np.round(ev["severity"].to_numpy(float), 3),
                                  lane])
        hover = ("%{x|%Y-%m-%d %H:%M}<br><b>%{customdata[1]}</b> · event severity %{customdata[4]}"
                 "<br>score %{customdata[3]} · this detector's severity %{customdata[5]}<br>%{customdata[2]}"
                 "<extra>%{fullData.name}</extra>")
        marker = dict(size=9, cmin=0.4, cmax=0.9, colorscale=SEVERITY_SCALE, line=dict(width=0.5, color="#333"))
        # A spike cut at the axis top keeps its marker, at the top edge.
        top = layout[f"yaxis{row}"]["range"][1] * 0.97
        values = series.to_numpy()[flagged]
        # A marker cut at the top says its score beside it: the highest of its event only, so
        # the labels of neighbouring bars do not overprint each other.
        capped = values > top
        owner = event_pos[flagged]
        for e in np.unique(owner[capped]):
            mine = np.flatnonzero(capped & (owner == e))
            capped[mine[mine != mine[np.argmax(values[mine])]]] = False
        traces.append(dict(type=kind, x=_ms(candles.index[flagged]), y=np.minimum(values, top),
                           mode="markers+text" if capped.any() else "markers",
                           text=np.where(capped, [f"{v:.3g}" for v in values], ""), textposition="middle right",
                           textfont=dict(size=9, color="#333"),
                           name=detector_label(name), customdata=custom, xaxis="x", yaxis=f"y{row}",
                           marker=dict(marker, symbol=SYMBOLS.get(name, "circle"),
                                       color=ev["severity"].to_numpy(float)),
                           hovertemplate=hover))
        traces.append(dict(type="scatter", x=_ms(candles.index[flagged]), y=[detector_label(name)] * len(flagged),
                           mode="markers", showlegend=False, xaxis="x", yaxis="y", name=detector_label(name),
                           customdata=custom, hovertemplate=hover,
                           marker=dict(marker, symbol="square", size=8, color=lane, line=dict(width=0))))
    _apply_focus(layout, candles, focus, price_axis=None)
    return go.Figure(dict(data=traces, layout=layout), _validate=False)


def standalone_html(*figures: go.Figure) -> bytes:
    """The Explorer's figures as one self-contained HTML file (plotly.js inlined once)."""
    parts = [fig.to_html(include_plotlyjs=i == 0, full_html=False) for i, fig in enumerate(figures)]
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Surveillance chart</title></head><body>"
            + "".join(parts) + "</body></html>").encode("utf-8")


def _apply_focus(layout: dict, candles: pd.DataFrame, focus, price_axis: str | None) -> None:
    if focus is None:
        return
    layout["xaxis"]["range"] = [_ms([focus[0]])[0], _ms([focus[1]])[0]]
    window = candles.loc[focus[0]:focus[1]]
    if price_axis and len(window):
        layout[price_axis]["range"] = price_range(window)


def bar_text(length: pd.Timedelta) -> str:
    """A bar length as analysts say it: "2-hour", "15-minute", "1-day"."""
    for unit, size in (("day", pd.Timedelta(days=1)), ("hour", pd.Timedelta(hours=1)),
                       ("minute", pd.Timedelta(minutes=1))):
        if length >= size and length % size == pd.Timedelta(0):
            return f"{length // size}-{unit}"
    return f"{length.total_seconds():g}-second"


def _bar(candles: pd.DataFrame) -> pd.Timedelta:
    if len(candles) < 2:
        return pd.Timedelta(0)
    return pd.Series(candles.index).diff().median()
