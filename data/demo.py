"""Offline demo market: synthetic candles, headlines and labelled events (ground truth).

Data layer, plain Python. The default source of the app: no network, no key, and every
injected anomaly comes with a label, so detectors can be scored against the truth.

Prices follow a GARCH(1,1) process with Student-t (4 dof) shocks, intraday and weekly
seasonality, and volume that rises with volatility and with the size of each bar's move.
On top of that, events of the kinds in ``LABEL_KINDS`` are injected at known bars, sized
in multiples of the local volatility. Everything is a pure function of
(seed, symbol, interval, start, end).
"""
from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from data import EARLIEST, INTERVALS, CandleQuery, DataError, parse_time_range, validate_candles

__all__ = ["DEMO_SYMBOLS", "DEMO_INTERVALS", "LABEL_KINDS", "UNIVERSE_BASES", "MAX_UNIVERSE", "DemoMarket",
           "demo_market", "demo_spec", "is_demo_symbol", "fetch_raw", "to_frame"]

#: Ground-truth event kinds, in the order they are first cycled through.
LABEL_KINDS = ("pump_and_dump", "flash_crash", "volume_surge", "news_gap", "data_error",
               "regime_shift")

#: The demo's intervals: intraday up to one day (weekly and monthly bars are not simulated).
DEMO_INTERVALS = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")

DEFAULT_END = pd.Timestamp("2024-04-01", tz="UTC")
DEFAULT_BARS = 2_000
MAX_BARS = 500_000

SESSION_OPEN = pd.Timedelta(hours=14, minutes=30)   # 09:30 New York in winter, in UTC
SESSION_LENGTH = pd.Timedelta(hours=6, minutes=30)  # closes 21:00 UTC
WARM_UP_FRACTION = 0.10


@dataclass(frozen=True)
class _SymbolSpec:
    market: str               # "stock" (sessions) or "crypto" (24/7)
    description: str
    name: str                 # how headlines call it
    price: float              # first open
    annual_vol: float         # unconditional volatility per year
    daily_volume: float       # typical volume per trading day, in shares or coins
    bars_per_event: int       # one injected event per this many bars (after warm-up)
    extra_pumps: int          # pump_and_dump events added to each cycle after the first
    headlines_per_day: float


_SPECS: dict[str, _SymbolSpec] = {
    "DEMO": _SymbolSpec("stock", "Stock-like: trades Mon-Fri 14:30-21:00 UTC, about 30% a year",
                        "Demo Corp", 100.0, 0.30, 5e6, 180, 0, 3.0),
    "ACME": _SymbolSpec("stock", "Smaller, more volatile stock-like name (about 45% a year)",
                        "Acme Industries", 40.0, 0.45, 2e6, 180, 0, 2.0),
    "DEMO-USD": _SymbolSpec("crypto", "Crypto-like, trades 24/7, about 60% a year",
                            "DemoCoin", 30_000.0, 0.60, 2e4, 180, 0, 3.0),
    "PUMPCOIN": _SymbolSpec("crypto", "Thin-liquidity crypto, 24/7, very volatile, more pumps",
                            "PumpCoin", 0.05, 1.20, 5e7, 150, 2, 2.0),
}

#: Demo symbols: name -> short description.
DEMO_SYMBOLS: dict[str, str] = {name: spec.description for name, spec in _SPECS.items()}

#: Universe names ``DEMO-0001`` .. ``DEMO-{MAX_UNIVERSE}`` (the scanner's demo universe) are
#: these 24/7 specs in turn, each at a seed derived from (seed, number): every symbol has the
#: same bars per range (the stock-like DEMO and ACME trade 6.5 h a weekday). The Explorer and the
#: scanner load a universe name the same way, so its events keep their ids in the case log.
UNIVERSE_BASES = ("DEMO-USD", "PUMPCOIN")
#: Most universe names: a typo such as demo:100000000000 would otherwise build a list until
#: memory runs out.
MAX_UNIVERSE = 10_000
_UNIVERSE_NAME = re.compile(r"DEMO-(\d{4,})")


@dataclass(frozen=True, eq=False)
class DemoMarket:
    """One synthetic market.

    Attributes
    ----------
    candles : canonical candles (validated, ``attrs["source"] == "demo"``).
    headlines : columns timestamp (UTC), headline, source, url, label ("normal", "catalyst",
        "promotional") and related_event (the label kind it belongs to, or "").
    labels : columns start, end (UTC, inclusive, candle timestamps) and kind, sorted by start.
    """

    candles: pd.DataFrame
    headlines: pd.DataFrame
    labels: pd.DataFrame


# --------------------------------------------------------------------------- public API

def demo_spec(symbol: str, seed: int = 7) -> tuple[str, int]:
    """(demo market symbol, seed) behind a universe name; other symbols keep ``seed``."""
    match = _UNIVERSE_NAME.fullmatch(symbol)
    if not match or not 1 <= int(match.group(1)) <= MAX_UNIVERSE:
        return symbol, seed
    number = int(match.group(1))
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    # Seeds stay within the Explorer's seed box (0-10,000).
    return UNIVERSE_BASES[(number - 1) % len(UNIVERSE_BASES)], int.from_bytes(digest[:4], "big") % 10_001


def is_demo_symbol(symbol: str) -> bool:
    """A demo market symbol or a universe name (``DEMO-0001`` ..)."""
    return demo_spec(symbol)[0] in _SPECS


def demo_market(seed: int = 7, symbol: str = "DEMO", start: Any = None, end: Any = None,
                interval: str = "1h") -> DemoMarket:
    """Generate the demo market for ``symbol`` between ``start`` (inclusive) and ``end``
    (exclusive), UTC.

    ``end`` defaults to 2024-04-01 and ``start`` to about 2,000 bars before it. The same
    arguments always give identical frames. Raises DataError for an unknown symbol or
    interval, an empty range, or a range of more than 500,000 bars.
    """
    base, base_seed = demo_spec(symbol, seed)
    spec = _spec(base)
    if interval not in DEMO_INTERVALS:
        raise DataError(f"The demo market has no {interval!r} bars; choose one of "
                        f"{', '.join(DEMO_INTERVALS)}.")
    start_ts, end_ts = _resolve_range(spec, interval, start, end)
    grid = _bar_grid(spec, interval, start_ts, end_ts)
    rngs = [np.random.default_rng(s) for s in _seed_sequence(base_seed, base, interval).spawn(3)]
    path = _simulate(spec, grid, rngs[0])
    events = _plan_events(spec, grid, rngs[1])
    _inject_events(path, events, grid, rngs[1])
    frame = _to_candles(spec, path, events).set_axis(grid.index)
    frame.attrs = {"symbol": symbol, "source": "demo", "interval": interval}
    candles = validate_candles(frame, symbol=symbol, source="demo", interval=interval)
    made_of = (f"seed {seed}; {symbol} is the Scanner universe's {base} at its own seed {base_seed}"
               if base != symbol else f"seed {seed}")
    candles.attrs["notice"] = (f"Synthetic demo data ({made_of}) with {len(events)} "
                               "injected, labelled events.")
    labels = _labels(events, grid.index)
    headlines = _headlines(spec, symbol, grid, candles, events, start_ts, end_ts, rngs[2])
    return DemoMarket(candles=candles, headlines=headlines, labels=labels)


def fetch_raw(query: CandleQuery, progress: Callable[[float, str], None] | None = None
              ) -> DemoMarket:
    """Data-source step one: the whole demo market for ``query`` (option ``seed``, default 7)."""
    market = demo_market(seed=query.option("seed", 7), symbol=query.symbol, start=query.start,
                         end=query.end, interval=query.interval)
    if progress is not None:
        progress(1.0, f"Generated {len(market.candles):,} demo bars.")
    return market


def to_frame(raw: DemoMarket, query: CandleQuery) -> pd.DataFrame:
    """Data-source step two (pure): the candles of a generated market."""
    return raw.candles


# --------------------------------------------------------------------------- time grid

@dataclass
class _Grid:
    index: pd.DatetimeIndex
    hours: np.ndarray          # trading hours each bar covers
    session_open: np.ndarray   # bool: first bar of a session (stock) - an overnight gap
    volume_season: np.ndarray  # multiplier, mean about 1
    vol_season: np.ndarray     # volatility multiplier, mean about 1
    step: pd.Timedelta
    daily: bool                # one bar per day (no intraday pattern)


def _spec(symbol: str) -> _SymbolSpec:
    if symbol not in _SPECS:
        raise DataError(f"Unknown demo symbol {symbol!r}; choose one of {', '.join(_SPECS)}, or a "
                        f"universe name DEMO-0001 to DEMO-{MAX_UNIVERSE}.")
    return _SPECS[symbol]


def _seed_sequence(seed: int, symbol: str, interval: str) -> np.random.SeedSequence:
    """A seed from a stable hash (Python's ``hash`` changes between runs)."""
    digest = hashlib.sha256(f"{seed}|{symbol}|{interval}".encode()).digest()
    return np.random.SeedSequence(int.from_bytes(digest[:16], "little"))


def _bars_per_session(step: pd.Timedelta) -> int:
    return int(np.ceil(SESSION_LENGTH / step))


def _resolve_range(spec: _SymbolSpec, interval: str, start: Any, end: Any
                   ) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Fill missing ends: end 2024-04-01, start about ``DEFAULT_BARS`` bars earlier."""
    end_ts = DEFAULT_END if end is None else parse_time_range(EARLIEST, end)[1]
    if start is None:
        step = INTERVALS[interval]
        if spec.market == "crypto":
            bars_per_day = pd.Timedelta(days=1) / step
        elif interval == "1d":
            bars_per_day = 5 / 7
        else:
            bars_per_day = _bars_per_session(step) * 5 / 7
        start = (end_ts - pd.Timedelta(days=float(np.ceil(DEFAULT_BARS / bars_per_day)))).floor("D")
    return parse_time_range(start, end_ts)


def _too_many(count: int, interval: str) -> DataError:
    return DataError(f"This range holds about {count:,} bars at {interval}; the demo makes at "
                     f"most {MAX_BARS:,}. Shorten the range or pick a longer interval.")


def _bar_grid(spec: _SymbolSpec, interval: str, start: pd.Timestamp, end: pd.Timestamp) -> _Grid:
    """Bar open times in [start, end): 24/7 for crypto, sessions on weekdays for the stock."""
    step = INTERVALS[interval]
    stock, daily = spec.market == "stock", interval == "1d"
    if stock and not daily:
        per_session = _bars_per_session(step)
        days = pd.date_range(start.floor("D"), end.floor("D"), freq="D")
        days = days[days.dayofweek < 5]
        if len(days) > MAX_BARS / per_session + 2:
            raise _too_many(len(days) * per_session, interval)
        offsets = (SESSION_OPEN + step * pd.Index(np.arange(per_session))).to_numpy()
        times = (days.tz_localize(None).to_numpy()[:, None] + offsets[None, :]).ravel()
        index = pd.DatetimeIndex(times).tz_localize("UTC")
        index = index[(index >= start) & (index < end)]
        hour_ns = pd.Timedelta(hours=1).value
        since_open = (index - index.normalize() - SESSION_OPEN).as_unit("ns").asi8 / hour_ns
        session_hours = SESSION_LENGTH.value / hour_ns
        hours = np.minimum(step.value / hour_ns, session_hours - since_open)
        session_open = since_open == 0
        position = (since_open + hours / 2) / session_hours
        intraday = (1 + 2 * (2 * position - 1) ** 2) / (5 / 3)   # U shape: ends 3x the middle, mean 1
    else:
        first = start.ceil(step)
        count = int(np.ceil((end - first) / step)) if end > first else 0
        if count > MAX_BARS:
            raise _too_many(count, interval)
        index = pd.date_range(first, periods=count, freq=step, name="timestamp")
        if stock:
            index = index[index.dayofweek < 5]
        hours = np.full(len(index), 6.5 if stock else step / pd.Timedelta(hours=1))
        session_open = np.full(len(index), stock)
        if daily:
            intraday = np.ones(len(index))
        else:   # mild: busier during the European/US overlap
            mid_hour = (index.hour + index.minute / 60).to_numpy() + hours / 2
            intraday = 1 + 0.3 * np.cos(2 * np.pi * (mid_hour - 15) / 24)
    if len(index) > MAX_BARS:
        raise _too_many(len(index), interval)
    if len(index) == 0:
        raise DataError(f"No {spec.market} bars between {start:%Y-%m-%d %H:%M} and "
                        f"{end:%Y-%m-%d %H:%M} UTC"
                        + (" (the stock trades Mon-Fri 14:30-21:00 UTC)" if stock else "")
                        + ". Widen the range.")
    weekday = index.dayofweek.to_numpy()
    weekly = (np.array([0.9, 1.0, 1.0, 1.0, 1.1, 1.0, 1.0]) if stock
              else np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.7, 0.7]))[weekday]
    index = pd.DatetimeIndex(index, name="timestamp").as_unit("ns")
    return _Grid(index=index, hours=np.asarray(hours, dtype=float),
                 session_open=np.asarray(session_open, dtype=bool),
                 volume_season=intraday * weekly, vol_season=np.sqrt(intraday),
                 step=step, daily=daily)


# --------------------------------------------------------------------------- price path

@dataclass
class _Path:
    base_sd: np.ndarray        # per-bar sd of log returns before GARCH (season included)
    garch: np.ndarray          # GARCH volatility factor, unconditional mean square 1
    regime: np.ndarray         # regime multiplier of volatility (1 outside regime shifts)
    shock: np.ndarray          # standardised Student-t shocks
    gap: np.ndarray            # log gap between previous close and this open
    drift: np.ndarray          # event log-returns added to the bar
    damp: np.ndarray           # multiplier of the random part of the bar (quiet surges)
    volume_mult: np.ndarray    # event multiplier of volume
    base_volume: np.ndarray    # typical volume of each bar
    noise_volume: np.ndarray   # log-normal volume noise
    excursion: np.ndarray      # Rayleigh draws for intrabar highs/lows, in units of sd (n, 2)

    @property
    def sigma(self) -> np.ndarray:
        """Conditional sd of each bar's log return (the local volatility events are sized by)."""
        return self.base_sd * self.garch * self.regime


def _garch_variance(shock: np.ndarray, alpha: float = 0.10, beta: float = 0.85,
                    block: int = 512) -> np.ndarray:
    """GARCH(1,1) variance with unconditional mean 1: ``h[t] = w + (alpha*z[t-1]**2 + beta)*h[t-1]``.

    The recurrence is linear in ``h`` with a time-varying coefficient, so within a block it has
    the closed form ``h = P * (h0 + w * cumsum(1/P))`` with ``P`` the running product of the
    coefficients; blocks keep ``P`` within floating-point range (``beta**512 > 1e-37``).
    """
    omega = 1.0 - alpha - beta
    coef = alpha * shock ** 2 + beta
    h = np.empty(len(shock))
    if len(h):
        h[0] = 1.0
    for s in range(1, len(h), block):
        e = min(s + block, len(h))
        prod = np.exp(np.cumsum(np.log(coef[s - 1:e - 1])))
        h[s:e] = prod * (h[s - 1] + omega * np.cumsum(1.0 / prod))
    return h


def _student_t(rng: np.random.Generator, size: int, dof: float = 4.0, clip: float = 7.0) -> np.ndarray:
    """Student-t shocks scaled to unit variance, clipped so no single unlabelled bar is absurd."""
    return np.clip(rng.standard_t(dof, size) / np.sqrt(dof / (dof - 2)), -clip, clip)


def _simulate(spec: _SymbolSpec, grid: _Grid, rng: np.random.Generator) -> _Path:
    n = len(grid.index)
    year_hours = 252 * 6.5 if spec.market == "stock" else 365 * 24
    day_hours = 6.5 if spec.market == "stock" else 24.0
    shock = _student_t(rng, n)
    gap_shock = _student_t(rng, n)
    garch = np.sqrt(_garch_variance(shock))
    base_sd = spec.annual_vol * np.sqrt(grid.hours / year_hours) * grid.vol_season
    # Small overnight gaps: about a tenth of a stock's daily variance.
    gap_sd = 0.3 * spec.annual_vol / np.sqrt(252) if spec.market == "stock" else 0.0
    gap = np.where(grid.session_open, gap_sd * gap_shock * garch, 0.0)
    if len(gap):
        gap[0] = 0.0
    return _Path(
        base_sd=base_sd, garch=garch, regime=np.ones(n), shock=shock, gap=gap,
        drift=np.zeros(n), damp=np.ones(n), volume_mult=np.ones(n),
        base_volume=spec.daily_volume * grid.hours / day_hours * grid.volume_season,
        noise_volume=rng.normal(0.0, 0.3, n), excursion=rng.rayleigh(0.5, (n, 2)))


# --------------------------------------------------------------------------- events

@dataclass
class _Event:
    kind: str
    start: int                 # first labelled bar (position)
    end: int                   # last labelled bar (position, inclusive)
    detail: dict


#: Bars each kind's label can span at most (placement keeps this room).
_MAX_LENGTH = {"pump_and_dump": 12, "flash_crash": 7, "volume_surge": 6, "news_gap": 3,
               "data_error": 1, "regime_shift": 24}


def _kind_sequence(spec: _SymbolSpec, count: int, rng: np.random.Generator) -> list[str]:
    """Shuffled cycles of every kind (plus the symbol's extra pumps after the first cycle).

    The regime shift sits third in every cycle, so shifts are a whole cycle apart and each
    starts from a calm market rather than from the previous shift.
    """
    others = [k for k in LABEL_KINDS if k != "regime_shift"]
    kinds: list[str] = []
    while len(kinds) < count:
        pool = others + (["pump_and_dump"] * spec.extra_pumps if kinds else [])
        cycle = [str(k) for k in rng.permutation(pool)]
        if kinds and cycle[0] == kinds[-1]:   # no kind twice in a row across cycles
            cycle = cycle[1:] + cycle[:1]
        kinds += cycle[:2] + ["regime_shift"] + cycle[2:]
    return kinds[:count]


def _plan_events(spec: _SymbolSpec, grid: _Grid, rng: np.random.Generator) -> list[_Event]:
    """Place events in equal slots after the warm-up: one per slot, never overlapping."""
    n = len(grid.index)
    warm = int(np.ceil(WARM_UP_FRACTION * n))
    count = (n - warm) // spec.bars_per_event
    if count == 0:
        return []
    bounds = warm + np.linspace(0, n - warm, count + 1).astype(int)
    margin = 25   # bars kept clear at both ends of a slot, so events stand apart
    events = []
    for kind, lo, hi in zip(_kind_sequence(spec, count, rng), bounds[:-1], bounds[1:]):
        length = _MAX_LENGTH[kind]
        first, last = lo + margin, hi - margin - length   # candidate start positions
        candidates = np.arange(first, last + 1)
        if kind == "news_gap" and not grid.daily and spec.market == "stock":
            at_open = candidates[grid.session_open[candidates]]
            candidates = at_open if len(at_open) else candidates
        events.append(_Event(kind, int(rng.choice(candidates)), -1, {}))
    return events


def _local_sd(sigma: np.ndarray, starts: list[int]) -> np.ndarray:
    """Typical volatility over the 24 bars up to each start (or at it, in a new regime).

    Placement keeps every start past the warm-up, at least 24 bars in.
    """
    starts_ = np.asarray(starts, dtype=int)
    windows = np.lib.stride_tricks.sliding_window_view(sigma, 25)[starts_ - 24]
    return np.maximum(np.median(windows, axis=1), sigma[starts_])


def _inject_events(path: _Path, events: list[_Event], grid: _Grid, rng: np.random.Generator) -> None:
    """Write each event's returns and volume multipliers into the path (in place)."""
    if not events:
        return
    # Regime shifts first: they set the local volatility the other events are sized by. A
    # regime ends midway between two later events, never just before one (which would make
    # that event's volume look low against a trailing window still in the regime).
    n = len(path.regime)
    quiet = [(a.start + _MAX_LENGTH[a.kind] + b.start) // 2 for a, b in zip(events, events[1:])]
    for event in events:
        if event.kind == "regime_shift":
            target = min(event.start + int(rng.integers(300, 601)), n)
            stop = min([q for q in quiet if q >= target] + [n])
            # Relative to the GARCH level around the start, so that a decaying burst of
            # ordinary volatility cannot hide the shift.
            p = event.start
            fading = path.garch[max(0, p - 200):p].mean() / path.garch[p:p + 200].mean()
            path.regime[p:stop] = rng.uniform(2.0, 3.0) * max(1.0, fading)
            event.end = event.start + _MAX_LENGTH["regime_shift"] - 1
            event.detail = {"stop": stop}
    local_sd = _local_sd(path.sigma, [e.start for e in events])
    for event, sd in zip(events, local_sd):
        p = event.start
        if event.kind == "pump_and_dump":
            up, down = int(rng.integers(5, 11)), int(rng.integers(1, 3))
            rise = min(rng.uniform(12, 18) * sd, 1.5)
            weights = np.arange(1, up + 1) ** 2.0          # accelerating
            path.drift[p:p + up] += rise * weights / weights.sum()
            path.damp[p:p + up] = 0.5                       # a steady climb, not a random walk
            path.drift[p + up:p + up + down] -= rng.uniform(0.7, 1.0) * rise / down
            path.damp[p + up:p + up + down] = 0.5
            path.volume_mult[p:p + up] = np.geomspace(3.0, rng.uniform(8, 10), up)
            path.volume_mult[p + up:p + up + down] = rng.uniform(6, 10, down)
            event.end = p + up + down - 1
            event.detail = {"peak": p + up - 1, "rise": rise}
        elif event.kind == "flash_crash":
            drop_bars, back_bars = int(rng.integers(1, 3)), int(rng.integers(2, 6))
            drop = min(rng.uniform(10, 14) * sd, 0.6)
            path.drift[p:p + drop_bars] -= drop / drop_bars
            path.damp[p:p + drop_bars] = 0.5                # the drop, not noise, drives these bars
            path.drift[p + drop_bars:p + drop_bars + back_bars] += (
                rng.uniform(0.7, 1.0) * drop / back_bars)
            path.volume_mult[p:p + drop_bars] = rng.uniform(6, 10, drop_bars)
            path.volume_mult[p + drop_bars:p + drop_bars + back_bars] = rng.uniform(3, 5, back_bars)
            event.end = p + drop_bars + back_bars - 1
            event.detail = {"drop": drop}
        elif event.kind == "volume_surge":
            bars = int(rng.integers(3, 7))
            path.volume_mult[p:p + bars] = rng.uniform(6, 10, bars)
            path.damp[p:p + bars] = 0.2
            path.gap[p:p + bars] = 0.0
            event.end = p + bars - 1
        elif event.kind == "news_gap":
            jump = min(rng.uniform(6, 10) * sd, 0.4) * (1 if rng.random() < 0.6 else -1)
            if grid.session_open[p]:
                path.gap[p] = jump          # the stock gaps at the open
            else:
                path.drift[p] += jump
            path.damp[p] = 0.3
            path.volume_mult[p:p + 3] = [rng.uniform(4, 8), rng.uniform(2, 4), rng.uniform(1.5, 2.5)]
            event.end = p + 2
            event.detail = {"jump": jump, "headline_lag": int(rng.integers(0, 3))}
        elif event.kind == "data_error":
            event.end = p
            event.detail = {"variant": ("times_ten", "tenth", "high_spike")[int(rng.integers(3))],
                            "spike": rng.uniform(1.5, 3.0)}


def _to_candles(spec: _SymbolSpec, path: _Path, events: list[_Event]) -> pd.DataFrame:
    """OHLCV from the path: open = previous close (times the gap), highs/lows from excursions."""
    sd = path.damp * path.sigma
    bar_return = path.drift + sd * path.shock
    close = spec.price * np.exp(np.cumsum(path.gap + bar_return))
    open_ = np.concatenate([[spec.price], close[:-1]]) * np.exp(path.gap)
    # Rayleigh excursions beyond the body: the law of a Brownian bridge's maximum.
    high = np.maximum(open_, close) * np.exp(sd * path.excursion[:, 0])
    low = np.minimum(open_, close) * np.exp(-sd * path.excursion[:, 1])
    volume = (path.base_volume * path.garch * path.regime * path.volume_mult
              * np.exp(0.3 * np.abs(path.damp * path.shock) + path.noise_volume))
    for event in events:
        if event.kind == "data_error":
            b, variant = event.start, event.detail["variant"]
            if variant == "high_spike":
                high[b] = max(open_[b], close[b]) * event.detail["spike"]
            else:
                factor = 10.0 if variant == "times_ten" else 0.1
                open_[b], high[b], low[b], close[b] = (x[b] * factor for x in (open_, high, low, close))
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume})


def _labels(events: list[_Event], index: pd.DatetimeIndex) -> pd.DataFrame:
    starts = index[[e.start for e in events]] if events else index[:0]
    ends = index[[e.end for e in events]] if events else index[:0]
    return pd.DataFrame({"start": starts.to_numpy(), "end": ends.to_numpy(),
                         "kind": [e.kind for e in events]}).astype(
        {"start": "datetime64[ns, UTC]", "end": "datetime64[ns, UTC]", "kind": "str"})


# --------------------------------------------------------------------------- headlines

_OUTLETS = {"stock": ("Newswire", "MarketPulse", "Street Ledger", "Business Daily Wire",
                      "Equity Insider"),
            "crypto": ("Newswire", "CoinPulse", "Block Ledger", "Crypto Daily Wire", "X/Twitter")}
_SOCIAL = ("Telegram", "X/Twitter", "Discord")

_ORDINARY = {
    "stock": (
        "{name} to report {quarter} earnings on {month} {day}",
        "{name} unveils {product} at annual product event",
        "{analyst} reiterates {rating} rating on {sym}, price target {target}",
        "{name} announces partnership with {partner}",
        "{name} CEO to speak at {conference}",
        "{name} declares quarterly dividend of {dividend} per share",
        "{name} opens new facility in {city}",
        "{sym} in focus as investors rotate into {sector}",
        "{name} appoints new chief financial officer",
        "{name} files annual report, reaffirms {quarter} outlook",
    ),
    "crypto": (
        "{name} network upgrade scheduled for {month} {day}",
        "{sym} now available for trading on {exchange}",
        "{name} foundation launches developer grant program",
        "{analyst} publishes research note on {sym} on-chain activity",
        "{name} partners with {partner} on payments pilot",
        "{name} core team to present at {conference}",
        "{sym} funding rates steady as open interest edges higher",
        "{name} wallet release adds hardware key support",
        "{exchange} adds {sym} perpetual futures with up to 20x leverage",
        "{name} validator count reaches new high, says {analyst}",
    ),
}
_CATALYST = {
    ("stock", 1): ("{sym} beats {quarter} earnings estimates, raises guidance",
                   "{name} wins regulatory approval for {product}",
                   "{name} agrees to be acquired by {partner} at a premium"),
    ("stock", -1): ("{sym} misses {quarter} earnings estimates, cuts full-year outlook",
                    "{name} recalls {product} over safety concerns",
                    "{name} discloses regulatory probe into its accounting"),
    ("crypto", 1): ("{sym} to be listed on {exchange} spot market",
                    "{partner} adds {sym} to its payments network",
                    "Regulator approves first {name} exchange-traded product"),
    ("crypto", -1): ("{exchange} halts {sym} withdrawals after security incident",
                     "Regulator sues {name} foundation over token sale",
                     "{name} bridge exploit drains reserves"),
}
_PROMOTIONAL = (
    "🚀🚀 {sym} 10X GUARANTEED!!! BUY NOW before it's too late",
    "{sym} TO THE MOON 🌕🌕 next 100x gem, don't miss out!!!",
    "Insiders loading up on {sym} 🔥 huge news coming, get in NOW",
    "💎🙌 {sym} breakout confirmed, easy 5x from here. Join our VIP signal group",
    "LAST CHANCE to grab {sym} under {target} 🚀 whales are accumulating!!!",
    "{sym} short squeeze incoming!!! 🚀🚀🚀 not financial advice but BUY",
    "Our signal called it: {sym} pump starts NOW ⏰ ride the wave 🌊",
    "Who else is holding {sym}?? 📈📈 this is going parabolic, 1000% soon",
)
_FILLERS = {
    "quarter": ("Q1", "Q2", "Q3", "Q4"),
    "month": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "day": tuple(str(d) for d in range(1, 29)),
    "product": ("its next-generation platform", "a cloud analytics suite", "a new battery line",
                "a flagship device", "an enterprise AI assistant"),
    "analyst": ("Northbridge Capital", "Halvorsen & Co", "Meridian Research", "Crestline Securities",
                "Bluewater Partners"),
    "rating": ("buy", "hold", "overweight", "neutral", "outperform"),
    "partner": ("Globex", "Initech", "Umbrella Logistics", "Stark Payments", "Wayne Cloud"),
    "conference": ("the Global Tech Summit", "an investor day in New York", "Consensus Week",
                   "the Industrials Forum", "a fintech conference in London"),
    "dividend": ("$0.12", "$0.18", "$0.24", "$0.31"),
    "city": ("Austin", "Rotterdam", "Singapore", "Monterrey", "Osaka"),
    "sector": ("industrials", "technology", "consumer staples", "energy", "healthcare"),
    "exchange": ("Binary Exchange", "CoinHarbor", "Krakenish", "OKAY Markets", "Bitstamped"),
}

_FILLER_ARRAYS = {key: np.array(options, dtype=object) for key, options in _FILLERS.items()}


def _money(value: float) -> str:
    if value >= 100:
        return f"${value:,.0f}"
    return f"${value:.2f}" if value >= 1 else f"${value:.4f}"


def _fill(templates: tuple[str, ...], count: int, symbol: str, spec: _SymbolSpec,
          prices: np.ndarray, rng: np.random.Generator) -> list[str]:
    """``count`` headlines from ``templates``; price targets near ``prices``."""
    chosen = rng.integers(len(templates), size=count)
    values = {key: options[rng.integers(len(options), size=count)]
              for key, options in _FILLER_ARRAYS.items()}
    values["target"] = [_money(x) for x in prices * rng.uniform(1.05, 1.4, count)]
    values["sym"], values["name"] = [symbol] * count, [spec.name] * count
    fields = [[f for _, f, _, _ in string.Formatter().parse(t) if f] for t in templates]
    return [templates[c].format(**{f: values[f][i] for f in fields[c]})
            for i, c in enumerate(chosen)]


def _headlines(spec: _SymbolSpec, symbol: str, grid: _Grid, candles: pd.DataFrame,
               events: list[_Event], start: pd.Timestamp, end: pd.Timestamp,
               rng: np.random.Generator) -> pd.DataFrame:
    """Ordinary news at a steady rate, a catalyst before each news gap, spam around each pump."""
    bar_ns = grid.index.asi8
    typical_close = candles["close"].rolling(5, min_periods=1).median().to_numpy()
    minute_ns, hour_ns = 60 * 10**9, 3600 * 10**9
    outlets = _OUTLETS[spec.market]
    times, texts, sources, labels, related = [], [], [], [], []

    def add(at_ns: np.ndarray, templates: tuple[str, ...], source_names: tuple[str, ...],
            label: str, kind: str) -> None:
        at_ns = np.clip(at_ns - at_ns % minute_ns, start.value, None)
        pos = np.clip(bar_ns.searchsorted(at_ns, side="right") - 1, 0, len(bar_ns) - 1)
        times.extend(at_ns)
        texts.extend(_fill(templates, len(at_ns), symbol, spec, typical_close[pos], rng))
        sources.extend(source_names[i] for i in rng.integers(len(source_names), size=len(at_ns)))
        labels.extend([label] * len(at_ns))
        related.extend([kind] * len(at_ns))

    days = pd.date_range(start.floor("D"), end, freq="D")
    if spec.market == "stock":   # news lands on weekdays, pre-market to evening
        days = days[days.dayofweek < 5]
        first_hour, span_hours = 11.0, 12.0
    else:
        first_hour, span_hours = 0.0, 24.0
    counts = rng.poisson(spec.headlines_per_day, len(days))
    hours = first_hour + span_hours * rng.random(int(counts.sum()))
    ordinary = days.as_unit("ns").asi8.repeat(counts) + (hours * hour_ns).astype(np.int64)
    add(ordinary[(ordinary >= start.value) & (ordinary < end.value)], _ORDINARY[spec.market],
        outlets, "normal", "")

    step_ns = grid.step.value
    for event in events:
        if event.kind == "news_gap":
            early = int(rng.integers(0, min(15, step_ns // minute_ns))) * minute_ns
            at = bar_ns[[event.start - event.detail["headline_lag"]]] - early
            sign = 1 if event.detail["jump"] > 0 else -1
            add(at, _CATALYST[(spec.market, sign)], outlets, "catalyst", "news_gap")
        elif event.kind == "pump_and_dump":
            lead = max(2 * hour_ns, 3 * step_ns)
            first, peak = bar_ns[event.start] - lead, bar_ns[event.detail["peak"]]
            at = first + np.sort(rng.random(int(rng.integers(6, 13)))) * (peak - first)
            add(at.astype(np.int64), _PROMOTIONAL, _SOCIAL, "promotional", "pump_and_dump")

    out = pd.DataFrame({
        "timestamp": pd.DatetimeIndex(np.asarray(times, dtype="datetime64[ns]")).tz_localize("UTC"),
        "headline": texts, "source": sources, "label": labels, "related_event": related})
    out = out.sort_values(["timestamp", "headline"], kind="stable", ignore_index=True)
    out["url"] = [
        "" if source in _SOCIAL else "https://example.com/demo/" + hashlib.sha1(
            f"{symbol}|{ts.value}|{text}".encode()).hexdigest()[:12]
        for ts, text, source in zip(out["timestamp"], out["headline"], out["source"])]
    return out[["timestamp", "headline", "source", "url", "label", "related_event"]]
