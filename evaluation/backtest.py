"""Backtest of "avoid anomalies": hold a position, step aside while an event is active.

Detection layer, no Streamlit and no data loaders: it takes candles and an events table.

Timing (no look-ahead). A decision is taken at a bar's close with what is known then: bar
``t`` counts as *active* when it lies inside an event, from the event's first flagged bar to
its last plus ``cooldown_bars``. The exposure chosen at the close of bar ``t`` is held over
bar ``t + 1``, so the strategy first steps aside over the bar after the first flagged bar and
returns one bar after the active span ends.

Accounting. The strategy holds units of the asset and cash. At the close of bar 0 it buys
``position`` of its capital (the exposure is a fraction of equity, not 100 %); whenever the
target exposure changes it trades to ``target * equity`` at that close and pays
``(cost + slippage) * traded value``. Between trades the units are held, so the invested
fraction drifts with the price. Buy-and-hold is the benchmark: all capital in the asset at
bar 0's close, no costs. Equity is marked to market at each close; nothing is sold at the end.

Bad data. Bars inside a ``data_error`` event (``kind`` column: bad ticks, bad prints) are not
prices: their close is replaced by the last good close before the event (the first good one
after it for an event at the start), and both curves are computed on these repaired closes.
Forward-filling, rather than dropping those bars' returns, keeps the price level continuous:
a 10x print and its reversal add nothing, while the real move across the span still lands on
the first good bar after it, so no genuine return is lost (a detected event that also spans a
few good bars after the tick only delays their moves to that bar). The strategy still steps aside
during a data-error event (its flag is known in real time, its being bad data only later);
trades inside the span happen at the repaired close, so they cost fees and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from detectors.base import is_real

__all__ = ["BacktestResult", "backtest_avoid_anomalies", "periods_per_year", "METRICS"]

YEAR = pd.Timedelta(days=365.25)
METRICS = ["total_return", "sharpe", "sortino", "max_drawdown", "n_trades", "exposure", "win_rate"]


@dataclass(frozen=True)
class BacktestResult:
    """Outcome of a backtest.

    equity : DataFrame on the candle index, columns ``strategy`` and ``buy_and_hold`` (money).
    metrics : DataFrame indexed by strategy name (``strategy``, ``buy_and_hold``), columns
        ``METRICS``.
    exposure : Series on the candle index, the target fraction of equity in the asset chosen
        at each close (held over the next bar).
    prices : Series on the candle index, the repaired closes both curves are computed on.
    repaired_bars : how many bars inside ``data_error`` events had their close replaced.
    note : one sentence saying what was repaired and how (plain text, for the page).
    """

    equity: pd.DataFrame
    metrics: pd.DataFrame
    exposure: pd.Series
    prices: pd.Series
    repaired_bars: int
    note: str


def periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per year, counted from the data rather than assumed.

    ``n_bars / years covered``, where the bars cover the span from the first to the last
    timestamp plus one median bar spacing. A 24/7 market (crypto) gets 8766 hourly bars a
    year, an exchange with sessions only the bars it really trades (about 252 daily bars,
    about 1764 hourly bars on a 7-hour session), so Sharpe and Sortino are annualised by the
    bar size actually seen instead of a fixed sqrt(252).
    """
    if len(index) < 2:
        raise ValueError("Need at least two bars to measure the bar spacing.")
    spacing = pd.Series(index).diff().median()
    years = (index[-1] - index[0] + spacing) / YEAR
    return len(index) / years


def _performance_metrics(equity: pd.Series, target: np.ndarray, trades: pd.DataFrame,
                        bars_per_year: float, capital: float) -> dict[str, float]:
    """Metrics of one equity curve.

    ``total_return`` = last equity / ``capital`` - 1. Bar returns r are
    ``equity.pct_change()`` over bars 1..n-1. ``sharpe`` = mean(r) / std(r, ddof=1) *
    sqrt(bars_per_year); ``sortino`` = mean(r) / sqrt(mean(min(r, 0)^2)) *
    sqrt(bars_per_year); both NaN when their denominator is 0. ``max_drawdown`` is the
    deepest fall below the running peak as a negative fraction (0 when equity never falls).
    ``exposure`` is the mean target fraction held over bars 1..n-1. ``trades`` has one row
    per trade: ``bar`` (position), ``before`` (equity before the trade), ``after`` (after its
    costs), ``target`` (exposure after it); ``win_rate`` is the share of holding spells
    (from a trade into exposure > 0 to the next trade or the last bar) that ended with more
    equity than before their opening trade, costs included; NaN when never invested.
    """
    values = equity.to_numpy(dtype="float64")
    returns = values[1:] / values[:-1] - 1.0
    scale = np.sqrt(bars_per_year)
    std = returns.std(ddof=1) if len(returns) > 1 else 0.0
    downside = np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))
    drawdown = values / np.maximum.accumulate(values) - 1.0
    before, after = trades["before"].to_numpy(), trades["after"].to_numpy()
    spells = [(after[i + 1] if i + 1 < len(trades) else values[-1]) > before[i]
              for i, opening_target in enumerate(trades["target"]) if opening_target > 0]
    return {
        "total_return": values[-1] / capital - 1.0,
        "sharpe": returns.mean() / std * scale if std > 0 else np.nan,
        "sortino": returns.mean() / downside * scale if downside > 0 else np.nan,
        "max_drawdown": float(drawdown.min()),
        "n_trades": len(trades),
        "exposure": float(np.mean(target[:-1])),
        "win_rate": float(np.mean(spells)) if spells else np.nan,
    }


def _spans(index: pd.DatetimeIndex, events: pd.DataFrame | None) -> list[tuple[int, int, str]]:
    """(first bar, last bar, kind) of each event that overlaps the candles.

    Events that end before the first candle, start after the last or fall between two bars
    are left out.
    """
    if events is None or len(events) == 0:
        return []
    missing = {"start", "end"} - set(events.columns)
    if missing:
        raise ValueError(f"The events table lacks {', '.join(sorted(missing))}; pass the table "
                         "from detectors.to_events.")
    starts = pd.DatetimeIndex(pd.to_datetime(events["start"], utc=True))
    ends = pd.DatetimeIndex(pd.to_datetime(events["end"], utc=True))
    first = index.searchsorted(starts, side="left")    # first bar at or after the start
    last = index.searchsorted(ends, side="right") - 1  # last bar at or before the end
    kinds = events["kind"].astype(str) if "kind" in events.columns else [""] * len(events)
    return [(lo, hi, kind) for lo, hi, kind in zip(first, last, kinds) if lo <= hi]


def _active_bars(n: int, spans: list[tuple[int, int, str]], cooldown_bars: int) -> np.ndarray:
    """Boolean per bar: inside an event (first to last flagged bar, plus the cooldown)."""
    active = np.zeros(n, dtype=bool)
    for lo, hi, _ in spans:
        active[lo:hi + 1 + cooldown_bars] = True
    return active


def _repair(close: np.ndarray, spans: list[tuple[int, int, str]]) -> tuple[np.ndarray, int, int]:
    """Closes with the bars of ``data_error`` spans replaced (see module docstring), the number
    of bars replaced and of data-error events that touched the candles."""
    bad = np.zeros(len(close), dtype=bool)
    errors = [(lo, hi) for lo, hi, kind in spans if kind == "data_error"]
    for lo, hi in errors:
        bad[lo:hi + 1] = True
    if bad.all():
        raise ValueError("Every candle lies inside a data-error event: there is no good price "
                         "to backtest on; widen the time range.")
    repaired = pd.Series(np.where(bad, np.nan, close)).ffill().bfill().to_numpy()
    return repaired, int(bad.sum()), len(errors)


def _check_params(mode, reduced_exposure, position, cost, slippage, capital, cooldown_bars) -> None:
    if mode not in ("flat", "reduce"):
        raise ValueError(f"Unknown mode {mode!r}; use 'flat' (step out) or 'reduce' (cut exposure).")
    named = {"reduced_exposure": reduced_exposure, "position": position, "cost": cost,
             "slippage": slippage, "capital": capital, "cooldown_bars": cooldown_bars}
    for name, value in named.items():
        if not is_real(value) or abs(value) > 1e15:   # 1e15: more than any capital or bar count
            raise ValueError(f"{name} must be a finite number; got {value!r}.")
    if not 0.0 <= reduced_exposure <= 1.0:
        raise ValueError(f"reduced_exposure is a fraction of the position: pick 0 to 1, "
                         f"got {reduced_exposure}.")
    if not 0.0 < position <= 1.0:
        raise ValueError(f"position is the fraction of capital invested: pick more than 0 and "
                         f"at most 1, got {position}.")
    if cost < 0 or slippage < 0:
        raise ValueError("cost and slippage are fractions of the traded value; use 0 or more.")
    if not capital > 0:
        raise ValueError(f"capital must be positive, got {capital}.")
    if int(cooldown_bars) != cooldown_bars or cooldown_bars < 0:
        raise ValueError(f"cooldown_bars is a whole number of bars, 0 or more; got {cooldown_bars}.")


def _simulate(close: np.ndarray, target: np.ndarray, rate: float, capital: float):
    """Equity per bar and the trade list for a target-exposure path (see module docstring)."""
    n = len(close)
    cash, units = np.full(n, np.nan), np.full(n, np.nan)
    cash[0], units[0] = capital, 0.0
    held, money = 0.0, capital
    trades = []
    for t in np.flatnonzero(np.diff(target, prepend=0.0) != 0):
        equity = money + held * close[t]
        desired = target[t] * equity
        fee = abs(desired - held * close[t]) * rate
        held, money = desired / close[t], equity - desired - fee
        cash[t], units[t] = money, held
        trades.append((t, equity, equity - fee, target[t]))
    cash = pd.Series(cash).ffill().to_numpy()
    units = pd.Series(units).ffill().to_numpy()
    return cash + units * close, pd.DataFrame(trades, columns=["bar", "before", "after", "target"])


def backtest_avoid_anomalies(candles: pd.DataFrame, events: pd.DataFrame | None, *,
                             mode: str = "flat", reduced_exposure: float = 0.0,
                             position: float = 1.0, cost: float = 0.001,
                             slippage: float = 0.0005, capital: float = 100_000.0,
                             cooldown_bars: int = 0) -> BacktestResult:
    """Compare holding ``position`` of capital while stepping aside during events with buy-and-hold.

    Parameters
    ----------
    candles : canonical candles (only ``close`` and the index are used), at least two bars.
    events : table with ``start`` and ``end`` (UTC) per event, e.g. ``detectors.to_events``;
        None or empty means no events. Events of ``kind`` "data_error" also mark bad data,
        repaired before any return is computed (see the module docstring).
    mode : "flat" sells everything while an event is active; "reduce" keeps
        ``reduced_exposure`` of the position (0.25 = a quarter of it).
    position : fraction of equity held in the asset outside events (0 < position <= 1).
    cost, slippage : fractions of the traded value charged on every exposure change.
    capital : starting money.
    cooldown_bars : bars after an event's last flagged bar that still count as active.

    Returns
    -------
    BacktestResult with the equity curves, the metrics table, the exposure path and the
    repaired prices with a note on what was repaired.
    """
    _check_params(mode, reduced_exposure, position, cost, slippage, capital, cooldown_bars)
    if not isinstance(candles, pd.DataFrame) or "close" not in candles.columns \
            or not isinstance(candles.index, pd.DatetimeIndex):
        raise ValueError("Pass canonical candles (DatetimeIndex with a close column), "
                         "e.g. from data.load_candles.")
    if len(candles) < 2:
        raise ValueError("A backtest needs at least two candles; widen the time range.")
    index = candles.index
    spans = _spans(index, events)
    close, repaired_bars, n_errors = _repair(candles["close"].to_numpy(dtype="float64"), spans)
    active = _active_bars(len(index), spans, int(cooldown_bars))
    inside = 0.0 if mode == "flat" else position * reduced_exposure
    target = np.where(active, inside, position)

    strategy, trades = _simulate(close, target, cost + slippage, capital)
    buy_and_hold = capital * close / close[0]
    hold_trades = pd.DataFrame([(0, capital, capital, 1.0)], columns=trades.columns)

    bars_per_year = periods_per_year(index)
    equity = pd.DataFrame({"strategy": strategy, "buy_and_hold": buy_and_hold}, index=index)
    metrics = pd.DataFrame({
        "strategy": _performance_metrics(equity["strategy"], target, trades, bars_per_year, capital),
        "buy_and_hold": _performance_metrics(equity["buy_and_hold"], np.ones(len(index)),
                                            hold_trades, bars_per_year, capital),
    }).T[METRICS].astype({"n_trades": "int64"})
    note = (f"{repaired_bars} bar(s) inside {n_errors} data-error event(s) repaired: their close "
            "is the last good close before the event, so bad ticks add no return to either curve."
            if repaired_bars else "No data-error events: both curves use the closes as they are.")
    return BacktestResult(equity=equity, metrics=metrics,
                          exposure=pd.Series(target, index=index, name="exposure"),
                          prices=pd.Series(close, index=index, name="close"),
                          repaired_bars=repaired_bars, note=note)
