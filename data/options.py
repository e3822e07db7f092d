"""Data layer: option chains in one tidy shape, from Yahoo or a deterministic demo.

Plain Python, no Streamlit. ``load_option_chain`` returns one row per contract:
``expiry`` (UTC midnight of the expiry date), ``days_to_expiry`` (float, from ``as_of``),
``type`` ("call"/"put"), ``contract``, ``strike``, ``last_price``, ``volume`` (float,
missing = 0), ``open_interest`` (float, NaN where unknown), ``implied_volatility``,
``last_trade`` (UTC), ``in_the_money`` (bool); sorted by expiry, type, strike. ``attrs``:
``symbol``, ``source``, ``spot`` (underlying price), ``as_of``, and for the demo ``labels``
(the contracts given injected unusual activity, the ground truth for detectors).
"""
from __future__ import annotations

import zlib
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy.special import ndtr

from data import DataError, check_symbol, network

__all__ = ["CHAIN_COLUMNS", "OPTION_SOURCES", "DEFAULT_EXPIRY_COUNT", "load_option_chain",
           "chain_from_yahoo"]

CHAIN_COLUMNS = ["expiry", "days_to_expiry", "type", "contract", "strike", "last_price", "volume",
                 "open_interest", "implied_volatility", "last_trade", "in_the_money"]
OPTION_SOURCES = ("yahoo", "demo")
#: Yahoo answers one request per expiry; without a choice the nearest ones are loaded.
DEFAULT_EXPIRY_COUNT = 8
_DAY = pd.Timedelta(days=1)


def _expiry_key(value: Any) -> str:
    try:
        return pd.Timestamp(value).strftime("%Y-%m-%d")
    except (ValueError, TypeError) as exc:
        raise DataError(f"Cannot read the expiry {value!r}: use a date like 2024-01-19.") from exc


def _choose_expiries(available: list[str], wanted: Iterable[Any] | None) -> list[str]:
    """The wanted expiries (all must exist), or the nearest ``DEFAULT_EXPIRY_COUNT``."""
    if wanted is None:
        return sorted(available)[:DEFAULT_EXPIRY_COUNT]
    keys = [_expiry_key(value) for value in wanted]
    unknown = [key for key in keys if key not in available]
    if unknown:
        raise DataError(f"No expiry {', '.join(unknown)}; available expiries are "
                        f"{', '.join(sorted(available))}.")
    return sorted(set(keys))


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Column order, nanosecond UTC times, rows sorted by expiry, type, strike."""
    out = frame[CHAIN_COLUMNS].sort_values(["expiry", "type", "strike"], kind="stable")
    for column in ("expiry", "last_trade"):
        out[column] = pd.to_datetime(out[column], utc=True).dt.as_unit("ns")
    return out.reset_index(drop=True)


def chain_from_yahoo(calls: pd.DataFrame, puts: pd.DataFrame, expiry: str,
                     as_of: pd.Timestamp) -> pd.DataFrame:
    """Pure: one expiry of yfinance's ``option_chain(date)`` (calls and puts frames with
    ``contractSymbol, lastTradeDate, strike, lastPrice, ..., volume, openInterest,
    impliedVolatility, inTheMoney, ...``) in the tidy shape."""
    expiry_ts = pd.Timestamp(expiry, tz="UTC")
    parts = []
    for kind, frame in (("call", calls), ("put", puts)):
        if frame is None or frame.empty:
            continue
        last_trade = pd.to_datetime(frame["lastTradeDate"], utc=True)
        parts.append(pd.DataFrame({
            "expiry": expiry_ts,
            "days_to_expiry": (expiry_ts - as_of) / _DAY,
            "type": kind,
            "contract": frame["contractSymbol"].astype(str).to_numpy(),
            "strike": frame["strike"].astype("float64").to_numpy(),
            "last_price": frame["lastPrice"].astype("float64").to_numpy(),
            "volume": frame["volume"].astype("float64").fillna(0.0).to_numpy(),
            "open_interest": frame["openInterest"].astype("float64").to_numpy(),
            "implied_volatility": frame["impliedVolatility"].astype("float64").to_numpy(),
            "last_trade": last_trade.dt.as_unit("ns").to_numpy(),
            "in_the_money": frame["inTheMoney"].fillna(False).astype(bool).to_numpy(),
        }))
    if not parts:
        return pd.DataFrame(columns=CHAIN_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    out["last_trade"] = pd.to_datetime(out["last_trade"], utc=True)
    return out


def _yahoo_chain(symbol: str, expiries: Iterable[Any] | None, as_of: pd.Timestamp,
                 deadline: float | None = None) -> pd.DataFrame:
    """Yahoo's chain, all its requests within one network deadline."""
    return network.run_with_deadline(lambda _: _ask_yahoo_chain(symbol, expiries, as_of),
                                     f"Yahoo Finance options for {symbol}", seconds=deadline)


def _ask_yahoo_chain(symbol: str, expiries: Iterable[Any] | None, as_of: pd.Timestamp) -> pd.DataFrame:
    from data.yahoo import yahoo_errors, yahoo_ticker

    ticker = yahoo_ticker(symbol)
    with yahoo_errors(symbol):
        available = list(ticker.options)
    if not available:
        raise DataError(f"Yahoo lists no options for {symbol}: check the symbol on "
                        "finance.yahoo.com (listed options exist for US stocks and ETFs such as AAPL, SPY).")
    parts, spot = [], float("nan")
    for expiry in _choose_expiries(available, expiries):
        with yahoo_errors(symbol):
            chain = ticker.option_chain(expiry)
        if chain.calls is None:
            continue
        parts.append(chain_from_yahoo(chain.calls, chain.puts, expiry, as_of))
        price = (chain.underlying or {}).get("regularMarketPrice")
        spot = float(price) if price is not None else spot
    parts = [part for part in parts if not part.empty]
    if not parts:
        raise DataError(f"Yahoo sent no contracts for {symbol}; retry later or pick other expiries.")
    out = _tidy(pd.concat(parts, ignore_index=True))
    out.attrs = {"symbol": symbol, "source": "yahoo", "spot": spot, "as_of": as_of}
    return out


def _strike_step(spot: float) -> float:
    """Listed strike spacing grows with the price (0.5 under 25, 1, 2.5, 5, then 10)."""
    for limit, step in ((25, 0.5), (60, 1.0), (150, 2.5), (400, 5.0)):
        if spot < limit:
            return step
    return 10.0


def _black_scholes(spot: float, strike: np.ndarray, years: np.ndarray, vol: np.ndarray,
                   is_call: np.ndarray) -> np.ndarray:
    """Option value at zero rates (good enough for a synthetic chain)."""
    root = vol * np.sqrt(years)
    d1 = (np.log(spot / strike) + 0.5 * root**2) / root
    d2 = d1 - root
    call = spot * ndtr(d1) - strike * ndtr(d2)
    put = strike * ndtr(-d2) - spot * ndtr(-d1)
    return np.where(is_call, call, put)


def _demo_chain(symbol: str, expiries: Iterable[Any] | None, as_of: pd.Timestamp, seed: int,
                unusual: bool) -> pd.DataFrame:
    """Synthetic chain: weekly expiries 2-59 days out, 21 strikes around spot, a put-skewed
    volatility smile, open interest peaking at the money, volume/open interest mostly below 1.

    With ``unusual``, three short-dated out-of-the-money calls get two to three times the rest
    of the chain's volume at 6-12x their open interest, recent trades and a bid-up
    volatility: the insider-buying signature (call-heavy, short-dated, concentrated strikes).
    """
    rng = np.random.default_rng([seed, zlib.crc32(symbol.upper().encode())])
    spot = round(float(100.0 * np.exp(rng.normal(0.0, 0.6))), 2)
    step = _strike_step(spot)
    strikes = step * (np.round(spot / step) + np.arange(-10, 11))
    strikes = strikes[strikes > 0]
    dates = [as_of.floor("D") + pd.Timedelta(days=3 + 7 * k) for k in range(9)]
    available = [d.strftime("%Y-%m-%d") for d in dates]
    chosen = _choose_expiries(available, expiries) if expiries is not None else available
    base_vol = rng.uniform(0.22, 0.45)
    root = "".join(ch for ch in symbol.upper() if ch.isalnum())[:6] or "DEMO"

    rows = []
    for expiry_key in available:
        expiry = pd.Timestamp(expiry_key, tz="UTC")
        days = (expiry - as_of) / _DAY
        for kind in ("call", "put"):
            moneyness = np.log(strikes / spot)
            vol = base_vol * (1 + 0.15 * np.sqrt(30 / days)) + 0.9 * moneyness**2 - 0.12 * moneyness
            width = 0.04 + 0.08 * np.sqrt(days / 30)
            open_interest = np.round(rng.lognormal(np.log(2500), 0.35, strikes.size)
                                     * np.exp(-0.5 * (moneyness / width) ** 2) + rng.integers(5, 60, strikes.size))
            volume = np.round(open_interest * rng.uniform(0.02, 0.6, strikes.size) * (1.5 if days < 10 else 1.0))
            rows.append(pd.DataFrame({
                "expiry": expiry, "days_to_expiry": days, "type": kind, "strike": strikes,
                "implied_volatility": np.round(np.maximum(vol, 0.05), 4),
                "volume": volume, "open_interest": open_interest,
                "last_trade": (as_of - pd.to_timedelta(rng.exponential(90, strikes.size), unit="min")).floor("s"),
            }))
    chain = pd.concat(rows, ignore_index=True)

    picked = pd.Index([], dtype="int64")
    if unusual:
        nearest = chain["expiry"] == chain["expiry"].min()
        otm_calls = nearest & (chain["type"] == "call") & (chain["strike"] > spot * 1.04)
        picked = chain.index[otm_calls][:3]
        # A flood: two to three times the rest of the chain's volume, mostly at one strike.
        flood = chain["volume"].sum() * rng.uniform(2.0, 3.0) * np.array([0.5, 0.3, 0.2])[:picked.size]
        chain.loc[picked, "volume"] = np.round(flood)
        chain.loc[picked, "open_interest"] = np.round(flood / rng.uniform(6, 12, picked.size))
        chain.loc[picked, "implied_volatility"] += 0.08
        ago = pd.to_timedelta(rng.uniform(1, 15, picked.size), unit="min")
        chain.loc[picked, "last_trade"] = (as_of - ago).floor("s")

    is_call = (chain["type"] == "call").to_numpy()
    chain["last_price"] = np.maximum(np.round(_black_scholes(
        spot, chain["strike"].to_numpy(), chain["days_to_expiry"].to_numpy() / 365,
        chain["implied_volatility"].to_numpy(), is_call), 2), 0.01)
    chain["in_the_money"] = np.where(is_call, chain["strike"] < spot, chain["strike"] > spot)
    chain["contract"] = [f"{root}{e:%y%m%d}{'C' if t == 'call' else 'P'}{int(round(k * 1000)):08d}"
                         for e, t, k in zip(chain["expiry"], chain["type"], chain["strike"])]
    labels = chain.loc[picked, "contract"].tolist()
    chain = chain[chain["expiry"].dt.strftime("%Y-%m-%d").isin(chosen)]
    out = _tidy(chain.astype({"volume": "float64", "open_interest": "float64"}))
    out.attrs = {"symbol": symbol, "source": "demo", "spot": spot, "as_of": as_of,
                 "labels": [c for c in labels if c in set(out["contract"])]}
    return out


def load_option_chain(source: str, symbol: str, *, expiries: Iterable[Any] | None = None,
                      as_of: Any = None, seed: int = 7, unusual: bool | None = None,
                      deadline: float | None = None) -> pd.DataFrame:
    """The option chain of ``symbol`` from ``source`` ("yahoo" or "demo") in the tidy shape.

    ``expiries``: dates to load (e.g. ``["2024-01-19"]``); by default Yahoo loads the nearest
    ``DEFAULT_EXPIRY_COUNT`` and the demo all of its nine. ``as_of`` (default now) is the clock
    for ``days_to_expiry``; Yahoo only serves today's chain, the demo builds its expiries from
    it. ``seed`` and ``unusual`` (default: on for symbol "DEMO") drive the demo only; the
    same seed, symbol and ``as_of`` always give the same chain. Yahoo's requests end within
    ``deadline`` seconds in all (default ``SURVEILLANCE_NETWORK_DEADLINE``, else 20).
    Raises DataError.
    """
    if source not in OPTION_SOURCES:
        raise DataError(f"Unknown option source {source!r}; choose one of {', '.join(OPTION_SOURCES)}.")
    symbol = check_symbol(symbol)
    if not symbol:
        raise DataError("Enter a symbol.")
    now = pd.Timestamp.now(tz="UTC")
    try:
        as_of_ts = now if as_of is None else pd.Timestamp(as_of)
    except (ValueError, TypeError) as exc:
        raise DataError(f"Cannot read the as-of time {as_of!r}: use a date like 2024-01-31.") from exc
    as_of_ts = as_of_ts.tz_localize("UTC") if as_of_ts.tzinfo is None else as_of_ts.tz_convert("UTC")
    if source == "yahoo":
        return _yahoo_chain(symbol, expiries, as_of_ts, deadline)
    unusual = symbol.upper() == "DEMO" if unusual is None else unusual
    return _demo_chain(symbol, expiries, as_of_ts, seed, unusual)
