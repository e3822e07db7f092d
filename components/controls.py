"""Sidebar controls. Each ``render_*`` draws widgets and returns a frozen dataclass of choices."""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from components import state
from data import EARLIEST, LATEST, MAX_SYMBOL_LENGTH

SOURCE_LABELS = {"demo": "Demo market (offline)", "csv": "CSV upload", "yahoo": "Stocks (Yahoo Finance)",
                 "bybit": "Crypto (Bybit)"}
INTERVAL_CHOICES = ["1m", "5m", "15m", "30m", "1h", "4h", "1d"]
DEFAULT_SYMBOL = {"demo": "DEMO-USD", "yahoo": "AAPL", "bybit": "BTCUSDT", "csv": ""}
DEMO_START, DEMO_END = dt.date(2024, 1, 1), dt.date(2024, 3, 31)


@dataclass(frozen=True)
class DataChoice:
    source: str
    symbol: str
    interval: str
    start: dt.date
    end: dt.date
    seed: int = 1
    category: str = "spot"
    csv_name: str = ""
    csv_bytes: bytes = b""

    @property
    def key(self) -> str:
        """A short fingerprint of what is loaded: the cache key for everything computed from it."""
        digest = hashlib.sha1(self.csv_bytes).hexdigest()[:12] if self.csv_bytes else ""
        return "|".join(map(str, (self.source, self.symbol, self.interval, self.start, self.end,
                                  self.seed, self.category, self.csv_name, digest)))

    def range_problem(self) -> str | None:
        """What is wrong with the sidebar's From/To, in the sidebar's words (None if nothing).
        The loaders say it too, but of the UTC timestamps they get (To plus one day)."""
        if self.source == "csv":
            return None
        first, last = EARLIEST.date(), (LATEST - pd.Timedelta(days=1)).date()
        for label, day in (("From", self.start), ("To", self.end)):
            if not first <= day <= last:
                return f"{label} ({day}) is outside the supported range {first} to {last}: pick a date inside it."
        if self.end < self.start:
            return (f"The range is empty: To ({self.end}) is before From ({self.start}). "
                    "Pick a To date on or after From.")
        return None

    def load_kwargs(self) -> dict:
        """Arguments for ``data.load_candles``."""
        kwargs: dict = {"interval": self.interval}
        if self.source == "csv":
            kwargs["file"] = self.csv_bytes
        else:
            kwargs["start"] = pd.Timestamp(self.start, tz="UTC")
            kwargs["end"] = pd.Timestamp(self.end, tz="UTC") + pd.Timedelta(days=1)
        if self.source == "demo":
            kwargs["seed"] = self.seed
        if self.source == "bybit":
            kwargs["category"] = self.category
        return kwargs


@dataclass(frozen=True)
class DetectorChoice:
    name: str
    params: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class EnsembleChoice:
    mode: str
    k: int


def detector_label(name: str) -> str:
    """The detector's own label (metadata lives on the detector class)."""
    import detectors
    try:
        return detectors.detector_class(name).label or name
    except ValueError:
        return name


ENSEMBLE_MODES = {"max": "Any detector (max)", "mean": "Average severity", "vote": "k of n vote"}


_PER_SOURCE = "_per_source"   # source -> the symbol and range last used with it


def default_range(source: str) -> tuple[dt.date, dt.date]:
    """The demo's labelled quarter, else the last 30 days (inside every source's limits)."""
    if source == "demo":
        return DEMO_START, DEMO_END
    return dt.date.today() - dt.timedelta(days=29), dt.date.today()


def _source_changed() -> None:
    """A new source starts from its own symbol and range: the ones last used with it, else its
    defaults (AAPL and the last 30 days for Yahoo), never the previous source's."""
    source = state.value(state.SOURCE)
    remembered = st.session_state.get(_PER_SOURCE, {}).get(source, {})
    start, end = remembered.get("range", default_range(source))
    state.set_value(state.SYMBOL, remembered.get("symbol", DEFAULT_SYMBOL[source]))
    state.set_value(state.START, start)
    state.set_value(state.END, end)


def render_data_controls(sidebar=None) -> DataChoice:
    """Source, symbol, interval and date range, remembered across pages."""
    box = sidebar or st.sidebar
    box.subheader("Data")
    source = box.selectbox("Source", list(SOURCE_LABELS), format_func=SOURCE_LABELS.get,
                           **state.kept(state.SOURCE, "demo", then=_source_changed))
    csv_name, csv_bytes, seed, category = "", b"", 1, "spot"
    if source == "csv":
        upload = box.file_uploader("Candles CSV", type=["csv", "txt"], key=state.CSV_UPLOAD,
                                   help="Date/Time, Open, High, Low, Close, Volume; Yahoo and exchange "
                                        "exports, epoch or ISO times, ',' or ';' separated.")
        if upload is not None:
            csv_name, csv_bytes = upload.name, upload.getvalue()
        symbol = csv_name.rsplit(".", 1)[0] if csv_name else ""
    else:
        if source == "demo":
            from data.demo import DEMO_SYMBOLS, is_demo_symbol
            kept = state.value(state.SYMBOL)
            if not isinstance(kept, str) or not is_demo_symbol(kept):
                kept = DEFAULT_SYMBOL["demo"]
                state.set_value(state.SYMBOL, kept)
            # A universe name (DEMO-0004) opened from the Scanner is offered beside the market's symbols.
            names = list(DEMO_SYMBOLS) + ([] if kept in DEMO_SYMBOLS else [kept])
            symbol = box.selectbox("Symbol", names, **state.kept(state.SYMBOL, DEFAULT_SYMBOL[source]),
                                   help="Synthetic markets with labelled manipulation events. DEMO-0001 .. "
                                        "are the Scanner's demo universe.")
            seed = int(box.number_input("Demo seed", 0, 10_000, step=1, **state.kept(state.SEED, 1)))
        else:
            symbol = box.text_input("Symbol", max_chars=MAX_SYMBOL_LENGTH,
                                    **state.kept(state.SYMBOL, DEFAULT_SYMBOL[source]),
                                    help="Yahoo: AAPL, SPY, ^GSPC, EURUSD=X, BTC-USD. Bybit: BTCUSDT.")
            symbol = symbol.strip().upper()
        if source == "bybit":
            category = box.selectbox("Category", ["spot", "linear", "inverse"], key="bybit_category")
    interval = box.selectbox("Interval", INTERVAL_CHOICES, **state.kept(state.INTERVAL, "1h"))
    start, end = DEMO_START, DEMO_END
    if source != "csv":
        first, last = default_range(source)
        # One above the other: side by side, the sidebar cuts the dates off.
        start = box.date_input("From", format="YYYY-MM-DD", **state.kept(state.START, first))
        end = box.date_input("To", format="YYYY-MM-DD", **state.kept(state.END, last))
        st.session_state.setdefault(_PER_SOURCE, {})[source] = {"symbol": symbol, "range": (start, end)}
    return DataChoice(source, symbol, interval, start, end, seed, category, csv_name, csv_bytes)


def render_detector_controls(sidebar=None) -> tuple[tuple[DetectorChoice, ...], EnsembleChoice, bool, bool]:
    """Detector multiselect with per-detector parameters, ensemble mode and toggles."""
    box = sidebar or st.sidebar
    box.subheader("Detectors")
    import detectors
    from detectors.pipeline import DEFAULT_SPECS
    names = box.multiselect("Detectors", detectors.available("candles"), format_func=detector_label,
                            **state.kept(state.DETECTORS, [n for n, _ in DEFAULT_SPECS]),
                            help="The LSTM autoencoder trains a TensorFlow model on the loaded data.")
    choices = []
    for name in names:
        cls = detectors.detector_class(name)
        defaults = cls().get_params()
        with box.expander(f"{cls.label} parameters"):
            params = []
            for spec in cls.parameters:
                key = f"param::{name}::{spec.name}"
                value = st.number_input(spec.label, spec.low, spec.high, step=spec.step,
                                        **state.kept(key, int(defaults[spec.name])))
                params.append((spec.name, int(value)))
        choices.append(DetectorChoice(name, tuple(params)))
    mode = box.selectbox("Combine detectors", list(ENSEMBLE_MODES), format_func=ENSEMBLE_MODES.get,
                         **state.kept(state.ENSEMBLE_MODE, "max"))
    k = 2
    if mode == "vote":
        if not 1 <= state.value(state.ENSEMBLE_K, 2) <= max(1, len(names)):
            state.set_value(state.ENSEMBLE_K, max(1, len(names)))
        k = int(box.number_input("k (detectors that must agree)", 1, max(1, len(names)),
                                 **state.kept(state.ENSEMBLE_K, 2)))
    news = box.toggle("News context", **state.kept(state.NEWS_CONTEXT, True),
                      help="Lower severity of moves that follow a catalyst headline; raise moves with no news.")
    explain = box.toggle("Explanations", **state.kept(state.EXPLAIN, True))
    return tuple(choices), EnsembleChoice(mode, k), news, explain


def slider_range(scores: pd.Series, default: float) -> tuple[float, float, float]:
    """A slider range in the score's unit that always contains ``default`` and the top scores."""
    finite = scores[np.isfinite(scores)]
    # The 99.9th percentile, not the max: one bad tick (|z| over 100) would make the slider useless.
    top = float(np.quantile(finite, 0.999)) if len(finite) else default * 2
    low = 0.0
    high = max(default * 2.5, top * 1.05, 1e-6)
    step = float(10 ** np.floor(np.log10(high / 200))) if high > 0 else 0.01
    return low, float(np.ceil(high / step) * step), step


def render_threshold_slider(name: str, unit: str, scores: pd.Series, default: float, fit_key: str,
                            sidebar=None) -> float:
    """The threshold slider of one detector, in the detector's own unit."""
    box = sidebar or st.sidebar
    low, high, step = slider_range(scores, default)
    key = state.threshold_key(name, fit_key)
    fallback = float(min(max(default, low + step), high))
    pending = st.session_state.get("_pending_thresholds", {})
    if name in pending:   # a link or saved view names this cut: use it once, as it is (a reload
        # must flag what the link's view flagged), within the range
        state.set_value(key, float(min(max(pending.pop(name), low + step), high)))
    if not low < state.value(key, fallback) <= high:
        state.set_value(key, fallback)
    value = box.slider(f"{detector_label(name)} threshold ({unit})", float(low + step), high,
                       step=step, help=f"Default {default:.4g}. Raising it flags fewer points.",
                       **state.kept(key, fallback))
    return float(value)
