"""Unusual options activity: the rules analysts use to spot possible insider trading.

Detection layer, no Streamlit and no data loaders: it takes an option chain in the shape of
``data.options`` (one row per contract: ``expiry``, ``days_to_expiry``, ``type``,
``contract``, ``strike``, ``volume``, ``open_interest``, ...; ``attrs`` ``symbol``, ``spot``,
``as_of``).

Rules (SEED_FACTS D), each with a score in [0, 1] that is 0 at a normal level and 1 where
the rule fires:

================  =====================================  ===================================
rule              fires when                             score
================  =====================================  ===================================
vol_oi            a contract's volume / OI > 5 (normal   share of the chain's volume in such
                  < 2), or volume with no open interest  contracts, 1 at 10 % or more
volume            volume > 300 % of its history average  min(|z| / 5, 1), z against history
call_share        calls > 80 % or < 20 % of volume       0 inside 35-65 %, 1 at 80 % / 20 %
short_dated       > 60 % of volume in expiries <= 7 days 0 at 30 %, 1 at 60 %
strikes           1 - std/mean of volume-weighted        0 at 0.90, 1 at 0.95
                  strikes > 0.95
================  =====================================  ===================================

The normal levels where a score starts (35-65 %, 30 %, 0.90, 10 %) are ours, chosen so an
ordinary chain scores near 0; the firing thresholds are SEED's. ``risk_score`` is the mean
of the scores available (``volume`` needs a history), blended 0.6 / 0.4 with an LLM's risk
when one is given. Alert above 0.7, high priority above 0.85.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = ["OptionsFlowResult", "analyze_options_flow", "blend_risk",
           "ALERT_RISK", "HIGH_PRIORITY_RISK"]

VOL_OI_UNUSUAL = 5.0
UNUSUAL_VOLUME_SHARE_FULL = 0.10
VOLUME_VS_HISTORY_UNUSUAL = 3.0
VOLUME_Z_FULL = 5.0
CALL_SHARE_LOW, CALL_SHARE_HIGH = 0.2, 0.8
CALL_SHARE_NORMAL_BAND = 0.15            # |call share - 0.5| below this scores 0
SHORT_DATED_DAYS = 7
SHORT_DATED_NORMAL, SHORT_DATED_UNUSUAL = 0.3, 0.6
STRIKES_NORMAL, STRIKES_UNUSUAL = 0.90, 0.95
STAT_WEIGHT, LLM_WEIGHT = 0.6, 0.4
ALERT_RISK, HIGH_PRIORITY_RISK = 0.7, 0.85

_REQUIRED = ("type", "strike", "volume", "open_interest")


@dataclass(frozen=True)
class OptionsFlowResult:
    """What ``analyze_options_flow`` found.

    contracts : the chain plus ``vol_oi_ratio`` (inf with volume but no open interest, NaN
        where open interest is unknown), ``unusual`` (bool) and ``reasons`` ("" if usual).
    metrics : ``total_volume``, ``call_share``, ``put_call_ratio``, ``short_dated_share``,
        ``strike_concentration``, ``volume_weighted_strike``, ``strike_vs_spot``,
        ``unusual_contracts``, ``unusual_volume_share``, ``volume_vs_history``,
        ``volume_z``; None where undefined (no volume, no calls, no history, no spot).
    scores : rule name -> score in [0, 1], only the rules that could be scored.
    risk_score : 0-1, see the module docstring.
    flags : one sentence per rule that fired, saying why.
    """

    contracts: pd.DataFrame
    metrics: dict[str, Any]
    scores: dict[str, float]
    risk_score: float
    flags: list[str] = field(default_factory=list)

    @property
    def alert_level(self) -> str:
        """"high priority" above 0.85, "alert" above 0.7, else "none"."""
        if self.risk_score > HIGH_PRIORITY_RISK:
            return "high priority"
        return "alert" if self.risk_score > ALERT_RISK else "none"


def _ramp(value: float, normal: float, unusual: float) -> float:
    """0 at ``normal``, 1 at ``unusual``, linear between, clipped."""
    return float(np.clip((value - normal) / (unusual - normal), 0.0, 1.0))


def blend_risk(stat_scores: Sequence[float], llm_risk: float | None = None) -> float:
    """Mean of the statistical scores, or 0.6 x that mean + 0.4 x ``llm_risk`` when given."""
    stat = float(np.mean(stat_scores)) if len(stat_scores) else 0.0
    if llm_risk is None:
        return stat
    if not 0.0 <= llm_risk <= 1.0:
        raise ValueError(f"llm_risk is a score from 0 to 1, got {llm_risk!r}.")
    return STAT_WEIGHT * stat + LLM_WEIGHT * float(llm_risk)


def _prepare(chain: pd.DataFrame, as_of: Any) -> pd.DataFrame:
    """A copy with clean numeric columns and ``days_to_expiry`` (recomputed when ``as_of`` is given)."""
    if not isinstance(chain, pd.DataFrame):
        raise ValueError("Pass the option chain as a DataFrame (data.options.load_option_chain).")
    missing = [c for c in _REQUIRED if c not in chain.columns]
    if "days_to_expiry" not in chain.columns and "expiry" not in chain.columns:
        missing.append("expiry")
    if missing:
        raise ValueError(f"The option chain lacks the column(s) {', '.join(missing)}; "
                         "load it with data.options.load_option_chain.")
    out = chain.copy()
    out["type"] = out["type"].astype(str).str.lower()
    bad_types = sorted(set(out["type"]) - {"call", "put"})
    if bad_types:
        raise ValueError(f"Option type must be 'call' or 'put', found {', '.join(bad_types)}.")
    out["volume"] = pd.to_numeric(out["volume"], errors="coerce").fillna(0.0).astype("float64")
    out["open_interest"] = pd.to_numeric(out["open_interest"], errors="coerce").astype("float64")
    out["strike"] = pd.to_numeric(out["strike"], errors="coerce").astype("float64")
    if (out["volume"] < 0).any() or (out["open_interest"] < 0).any():
        raise ValueError("Volume and open interest must be zero or more.")
    as_of = as_of if as_of is not None else (
        None if "days_to_expiry" in out.columns else chain.attrs.get("as_of"))
    if as_of is not None:
        if "expiry" not in out.columns:
            raise ValueError("as_of needs the expiry column to count days to expiry.")
        as_of_ts = pd.Timestamp(as_of)
        as_of_ts = as_of_ts.tz_localize("UTC") if as_of_ts.tzinfo is None else as_of_ts.tz_convert("UTC")
        out["days_to_expiry"] = (pd.to_datetime(out["expiry"], utc=True) - as_of_ts) / pd.Timedelta(days=1)
    elif "days_to_expiry" not in out.columns:
        raise ValueError("Give as_of (or a days_to_expiry column) to tell how far each expiry is.")
    out["days_to_expiry"] = pd.to_numeric(out["days_to_expiry"], errors="coerce").astype("float64")
    return out


def _contract_reasons(contracts: pd.DataFrame, spot: float | None) -> pd.Series:
    """Why each unusual contract stands out; "" for the others."""
    reasons = []
    for row in contracts.itertuples(index=False):
        if not row.unusual:
            reasons.append("")
            continue
        parts = (["no open interest"] if np.isinf(row.vol_oi_ratio)
                 else [f"volume/OI {row.vol_oi_ratio:.1f} > {VOL_OI_UNUSUAL:g}"])
        if row.days_to_expiry <= SHORT_DATED_DAYS:
            parts.append(f"expires in {row.days_to_expiry:.0f} day(s)")
        if spot:
            otm = (row.strike / spot - 1) if row.type == "call" else (1 - row.strike / spot)
            if otm > 0:
                parts.append(f"{otm:.0%} out of the money")
        reasons.append("; ".join(parts))
    return pd.Series(reasons, index=contracts.index, dtype="object")


def _history_stats(total: float, history: Any) -> tuple[float | None, float | None]:
    """(volume / history mean, z of volume against history), None where undefined."""
    if history is None:
        return None, None
    past = pd.to_numeric(pd.Series(np.asarray(history, dtype="float64").ravel()), errors="coerce").dropna()
    if (past < 0).any():
        raise ValueError("The volume history must hold zero or positive daily volumes.")
    mean = past.mean() if len(past) else np.nan
    ratio = float(total / mean) if len(past) and mean > 0 else None
    std = past.std(ddof=1) if len(past) > 1 else np.nan
    z = float((total - mean) / std) if std > 0 else None
    return ratio, z


def analyze_options_flow(chain: pd.DataFrame, *, spot: float | None = None, as_of: Any = None,
                         history: Sequence[float] | pd.Series | None = None,
                         llm_risk: float | None = None) -> OptionsFlowResult:
    """Score one option chain for unusual activity.

    Parameters
    ----------
    chain : contracts in the ``data.options`` shape. Missing volume counts as 0; missing
        open interest is unknown (the contract's ratio is NaN and the vol/OI rule skips it).
    spot : underlying price (default ``chain.attrs["spot"]``), used to say how far out of
        the money an unusual contract is and for ``strike_vs_spot``.
    as_of : when given, ``days_to_expiry`` is recomputed from ``expiry``; otherwise the
        chain's column (or ``attrs["as_of"]``) is used.
    history : past total daily option volumes of the symbol, for the volume rule.
    llm_risk : an LLM's 0-1 risk for this chain, blended in per SEED (0.6 stat + 0.4 LLM).
    """
    contracts = _prepare(chain, as_of)
    spot = spot if spot is not None else chain.attrs.get("spot")
    spot = float(spot) if spot is not None and np.isfinite(spot) and spot > 0 else None

    volume, open_interest = contracts["volume"], contracts["open_interest"]
    ratio = volume / open_interest.where(open_interest > 0)
    ratio = ratio.mask((open_interest == 0) & (volume > 0), np.inf)
    ratio = ratio.mask((open_interest == 0) & (volume == 0), 0.0)
    contracts["vol_oi_ratio"] = ratio
    contracts["unusual"] = (ratio > VOL_OI_UNUSUAL).fillna(False).astype(bool)
    contracts["reasons"] = _contract_reasons(contracts, spot)

    total = float(volume.sum())
    call_volume = float(volume[contracts["type"] == "call"].sum())
    put_volume = total - call_volume
    traded = contracts[volume > 0]
    unusual_volume = float(volume[contracts["unusual"]].sum())
    metrics: dict[str, Any] = {"total_volume": total, "unusual_contracts": int(contracts["unusual"].sum())}
    scores: dict[str, float] = {}
    flags: list[str] = []

    if total > 0:
        weights = traded["volume"].to_numpy()
        strikes = traded["strike"].to_numpy()
        mean_strike = float(np.average(strikes, weights=weights))
        std_strike = float(np.sqrt(np.average((strikes - mean_strike) ** 2, weights=weights)))
        metrics.update(
            call_share=call_volume / total,
            put_call_ratio=put_volume / call_volume if call_volume > 0 else None,
            short_dated_share=float(volume[contracts["days_to_expiry"] <= SHORT_DATED_DAYS].sum()) / total,
            strike_concentration=float(np.clip(1 - std_strike / mean_strike, 0.0, 1.0)),
            volume_weighted_strike=mean_strike,
            strike_vs_spot=mean_strike / spot - 1 if spot else None,
            unusual_volume_share=unusual_volume / total,
        )
        scores["vol_oi"] = min(metrics["unusual_volume_share"] / UNUSUAL_VOLUME_SHARE_FULL, 1.0)
        scores["call_share"] = _ramp(abs(metrics["call_share"] - 0.5), CALL_SHARE_NORMAL_BAND,
                                     CALL_SHARE_HIGH - 0.5)
        scores["short_dated"] = _ramp(metrics["short_dated_share"], SHORT_DATED_NORMAL, SHORT_DATED_UNUSUAL)
        scores["strikes"] = _ramp(metrics["strike_concentration"], STRIKES_NORMAL, STRIKES_UNUSUAL)
    else:
        metrics.update(call_share=None, put_call_ratio=None, short_dated_share=None,
                       strike_concentration=None, volume_weighted_strike=None,
                       strike_vs_spot=None, unusual_volume_share=None)
        flags.append("No traded volume in this chain: nothing to judge.")

    metrics["volume_vs_history"], metrics["volume_z"] = _history_stats(total, history)
    if metrics["volume_z"] is not None:
        scores["volume"] = min(abs(metrics["volume_z"]) / VOLUME_Z_FULL, 1.0)

    if metrics["unusual_contracts"]:
        flags.append(f"{metrics['unusual_contracts']} contract(s) traded more than "
                     f"{VOL_OI_UNUSUAL:g}x their open interest or had none, "
                     f"{metrics['unusual_volume_share']:.0%} of the volume: new positions.")
    if metrics["volume_vs_history"] is not None and metrics["volume_vs_history"] > VOLUME_VS_HISTORY_UNUSUAL:
        flags.append(f"Volume is {metrics['volume_vs_history']:.1f}x its historical average "
                     f"(over {VOLUME_VS_HISTORY_UNUSUAL:.0%}).")
    if total > 0 and metrics["call_share"] > CALL_SHARE_HIGH:
        flags.append(f"Calls are {metrics['call_share']:.0%} of the volume (over "
                     f"{CALL_SHARE_HIGH:.0%}): one-sided bets on a rise.")
    if total > 0 and metrics["call_share"] < CALL_SHARE_LOW:
        flags.append(f"Calls are only {metrics['call_share']:.0%} of the volume (under "
                     f"{CALL_SHARE_LOW:.0%}): one-sided bets on a fall.")
    if total > 0 and metrics["short_dated_share"] > SHORT_DATED_UNUSUAL:
        flags.append(f"{metrics['short_dated_share']:.0%} of the volume is in expiries within "
                     f"{SHORT_DATED_DAYS} days (over {SHORT_DATED_UNUSUAL:.0%}): a bet on news soon.")
    if total > 0 and metrics["strike_concentration"] > STRIKES_UNUSUAL:
        flags.append(f"Volume is concentrated around strike {metrics['volume_weighted_strike']:.2f} "
                     f"(concentration {metrics['strike_concentration']:.3f}, over {STRIKES_UNUSUAL}).")

    risk = blend_risk(list(scores.values()), llm_risk)
    return OptionsFlowResult(contracts=contracts, metrics=metrics, scores=scores,
                             risk_score=risk, flags=flags)
