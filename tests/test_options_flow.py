"""Unusual options activity: each rule on a small hand-made chain."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from options_flow.analysis import analyze_options_flow, blend_risk

AS_OF = pd.Timestamp("2024-03-01 15:00", tz="UTC")


def make_chain(rows, spot=100.0) -> pd.DataFrame:
    """rows: (type, strike, days_to_expiry, volume, open_interest), in the data.options shape."""
    frame = pd.DataFrame(rows, columns=["type", "strike", "days_to_expiry", "volume", "open_interest"])
    frame["expiry"] = (AS_OF.floor("D") + pd.to_timedelta(frame["days_to_expiry"], unit="D")).dt.as_unit("ns")
    frame["days_to_expiry"] = (frame["expiry"] - AS_OF) / pd.Timedelta(days=1)
    frame["contract"] = [f"XYZ{i:03d}" for i in range(len(frame))]
    frame["last_price"] = 1.0
    frame["implied_volatility"] = 0.3
    frame["last_trade"] = AS_OF
    frame["in_the_money"] = False
    frame = frame.astype({"strike": "float64", "volume": "float64", "open_interest": "float64"})
    frame.attrs = {"symbol": "XYZ", "source": "demo", "spot": spot, "as_of": AS_OF}
    return frame


# A balanced chain: half calls, spread strikes and expiries, volume well under open interest.
CALM = [("call", 80, 30, 100, 1000), ("call", 120, 30, 100, 1000),
        ("put", 80, 30, 100, 1000), ("put", 120, 30, 100, 1000)]


def test_calm_chain_scores_zero():
    result = analyze_options_flow(make_chain(CALM))
    assert result.scores == {"vol_oi": 0.0, "call_share": 0.0, "short_dated": 0.0, "strikes": 0.0}
    assert result.risk_score == 0.0 and result.flags == [] and result.alert_level == "none"
    assert not result.contracts["unusual"].any() and (result.contracts["reasons"] == "").all()
    m = result.metrics
    assert (m["total_volume"], m["call_share"], m["put_call_ratio"]) == (400.0, 0.5, 1.0)
    assert m["strike_concentration"] == pytest.approx(0.8)       # strikes 80/120: std 20, mean 100
    assert m["volume_vs_history"] is None and m["volume_z"] is None


def test_volume_over_open_interest_and_missing_open_interest():
    chain = make_chain(CALM + [
        ("call", 110, 30, 600, 100),        # ratio 6 > 5: unusual
        ("call", 90, 30, 150, 100),         # ratio 1.5: normal
        ("put", 90, 30, 50, 0),             # traded with no open interest: unusual
        ("put", 70, 30, 0, 0),              # nothing at all
        ("put", 75, 30, 10, np.nan),        # open interest unknown: not judged
    ], spot=100.0)
    result = analyze_options_flow(chain)
    c = result.contracts.set_index("strike")
    assert c.loc[110, "vol_oi_ratio"] == 6.0 and c.loc[110, "unusual"]
    assert c.loc[110, "reasons"] == "volume/OI 6.0 > 5; 10% out of the money"
    assert math.isinf(c.loc[90].query("type == 'put'")["vol_oi_ratio"].item())
    assert c.loc[90].query("type == 'put'")["reasons"].item() == "no open interest; 10% out of the money"
    assert not c.loc[90].query("type == 'call'")["unusual"].item()
    assert c.loc[70, "vol_oi_ratio"] == 0.0 and not c.loc[70, "unusual"]
    assert np.isnan(c.loc[75, "vol_oi_ratio"]) and not c.loc[75, "unusual"]
    assert list(result.contracts.columns[-3:]) == ["vol_oi_ratio", "unusual", "reasons"]
    total = 400 + 600 + 150 + 50 + 10
    assert result.metrics["unusual_contracts"] == 2
    assert result.metrics["unusual_volume_share"] == pytest.approx(650 / total)
    assert result.scores["vol_oi"] == 1.0                  # over 10 % of volume is unusual
    assert any("2 contract(s) traded more than 5x" in f for f in result.flags)
    # Share below 10 % scales linearly.
    small = analyze_options_flow(make_chain(CALM * 10 + [("call", 110, 30, 20, 2)]))
    assert small.scores["vol_oi"] == pytest.approx((20 / 4020) / 0.10)


def test_volume_against_history():
    history = [100.0, 120.0, 80.0, 100.0]
    sd = statistics.stdev(history)
    loud = analyze_options_flow(make_chain(CALM), history=history)      # 400 = 4x the mean
    assert loud.metrics["volume_vs_history"] == 4.0
    assert loud.metrics["volume_z"] == pytest.approx(300 / sd)
    assert loud.scores["volume"] == 1.0
    assert loud.flags == ["Volume is 4.0x its historical average (over 300%)."]
    assert loud.risk_score == pytest.approx(1.0 / 5)

    quiet_chain = make_chain([(t, k, 30, 27.5, 1000) for t, k, *_ in CALM])   # total 110
    quiet = analyze_options_flow(quiet_chain, history=pd.Series(history))
    assert quiet.metrics["volume_vs_history"] == pytest.approx(1.1)
    assert quiet.scores["volume"] == pytest.approx((10 / sd) / 5)
    assert quiet.flags == []
    flat_history = analyze_options_flow(make_chain(CALM), history=[100.0, 100.0])
    assert flat_history.metrics["volume_vs_history"] == 4.0
    assert "volume" not in flat_history.scores               # no spread: z undefined


@pytest.mark.parametrize("call_volume, put_volume, score, flag", [
    (900, 100, 1.0, "one-sided bets on a rise"),
    (100, 900, 1.0, "one-sided bets on a fall"),
    (725, 275, 0.5, None),
    (600, 400, 0.0, None),
])
def test_call_share(call_volume, put_volume, score, flag):
    chain = make_chain([("call", 80, 30, call_volume / 2, 5000), ("call", 120, 30, call_volume / 2, 5000),
                        ("put", 80, 30, put_volume / 2, 5000), ("put", 120, 30, put_volume / 2, 5000)])
    result = analyze_options_flow(chain)
    assert result.metrics["call_share"] == pytest.approx(call_volume / 1000)
    assert result.metrics["put_call_ratio"] == pytest.approx(put_volume / call_volume)
    assert result.scores["call_share"] == pytest.approx(score)
    call_flags = [f for f in result.flags if f.startswith("Calls")]
    assert [flag in f for f in call_flags] == ([] if flag is None else [True])


@pytest.mark.parametrize("short_volume, score, flagged", [(140, 1.0, True), (90, 0.5, False),
                                                          (40, 0.0, False)])
def test_short_dated_share(short_volume, score, flagged):
    chain = make_chain([("call", 80, 30, 200 - short_volume, 1000),
                        ("put", 120, 5, short_volume, 1000)])
    result = analyze_options_flow(chain)
    assert result.metrics["short_dated_share"] == pytest.approx(short_volume / 200)
    assert result.scores["short_dated"] == pytest.approx(score)
    assert any("within 7 days" in f for f in result.flags) is flagged


def test_exactly_seven_days_counts_as_short_dated():
    chain = make_chain([("call", 100, 7, 10, 100), ("put", 100, 8, 10, 100)])
    chain["days_to_expiry"] = [7.0, 7.01]
    assert analyze_options_flow(chain).metrics["short_dated_share"] == 0.5


@pytest.mark.parametrize("low, high, concentration, score, flagged", [
    (90, 110, 0.90, 0.0, False),
    (95, 105, 0.95, 1.0, False),      # score is full at the threshold; the flag needs more
    (97.5, 102.5, 0.975, 1.0, True),
    (100, 100, 1.0, 1.0, True),
])
def test_strike_concentration(low, high, concentration, score, flagged):
    chain = make_chain([("call", low, 30, 100, 1000), ("call", high, 30, 100, 1000),
                        ("put", low, 30, 100, 1000), ("put", high, 30, 100, 1000)])
    result = analyze_options_flow(chain)
    assert result.metrics["strike_concentration"] == pytest.approx(concentration)
    assert result.metrics["volume_weighted_strike"] == pytest.approx(100.0)
    assert result.scores["strikes"] == pytest.approx(score)
    assert any("concentrated around strike 100.00" in f for f in result.flags) is flagged


def test_strikes_are_volume_weighted():
    chain = make_chain([("call", 100, 30, 300, 1000), ("put", 200, 30, 100, 1000),
                        ("put", 300, 30, 0, 1000)])
    mean = (100 * 300 + 200 * 100) / 400
    std = math.sqrt((300 * (100 - mean) ** 2 + 100 * (200 - mean) ** 2) / 400)
    metrics = analyze_options_flow(chain).metrics
    assert metrics["strike_concentration"] == pytest.approx(1 - std / mean)
    assert metrics["strike_vs_spot"] == pytest.approx(mean / 100 - 1)


def test_risk_blends_statistics_with_an_llm_risk():
    # Insider signature: short-dated calls, one strike, volume far above open interest.
    chain = make_chain([("call", 110, 3, 900, 100), ("put", 110, 3, 100, 1000)])
    result = analyze_options_flow(chain, history=[100.0, 120.0, 80.0, 100.0])
    assert result.scores == {"vol_oi": 1.0, "call_share": 1.0, "short_dated": 1.0,
                             "strikes": 1.0, "volume": 1.0}
    assert result.risk_score == 1.0 and result.alert_level == "high priority"
    assert len(result.flags) == 5
    with_llm = analyze_options_flow(chain, history=[100.0, 120.0, 80.0, 100.0], llm_risk=0.5)
    assert with_llm.risk_score == pytest.approx(0.6 * 1.0 + 0.4 * 0.5)
    assert with_llm.alert_level == "alert"
    assert blend_risk([0.5, 0.0], None) == 0.25
    assert blend_risk([], 0.5) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="0 to 1"):
        blend_risk([0.5], 1.5)


def test_as_of_recomputes_days_and_attrs_supply_spot():
    chain = make_chain([("call", 120, 10, 600, 100), ("put", 80, 40, 100, 1000)], spot=110.0)
    later = analyze_options_flow(chain, as_of=AS_OF + pd.Timedelta(days=5), spot=100.0)
    assert later.contracts["days_to_expiry"].tolist() == pytest.approx([4.375, 34.375])
    assert later.contracts.loc[0, "reasons"] == ("volume/OI 6.0 > 5; expires in 4 day(s); "
                                                 "20% out of the money")
    from_attrs = analyze_options_flow(chain.drop(columns="days_to_expiry"))
    assert from_attrs.contracts["days_to_expiry"].tolist() == pytest.approx([9.375, 39.375])
    assert from_attrs.metrics["strike_vs_spot"] == pytest.approx((120 * 600 + 80 * 100) / 700 / 110 - 1)
    no_clock = chain.drop(columns="days_to_expiry")
    no_clock.attrs = {}
    with pytest.raises(ValueError, match="as_of"):
        analyze_options_flow(no_clock)


def test_missing_volume_counts_as_zero_and_empty_volume_is_reported():
    chain = make_chain(CALM)
    chain["volume"] = np.nan
    result = analyze_options_flow(chain)
    assert result.metrics["total_volume"] == 0.0 and result.metrics["call_share"] is None
    assert result.scores == {} and result.risk_score == 0.0
    assert result.flags == ["No traded volume in this chain: nothing to judge."]


def test_bad_chains_say_what_to_fix():
    with pytest.raises(ValueError, match="open_interest"):
        analyze_options_flow(make_chain(CALM).drop(columns="open_interest"))
    bad = make_chain(CALM)
    bad.loc[0, "type"] = "future"
    with pytest.raises(ValueError, match="'call' or 'put'"):
        analyze_options_flow(bad)
    calls_upper = make_chain(CALM)
    calls_upper["type"] = calls_upper["type"].str.upper()
    assert analyze_options_flow(calls_upper).metrics["call_share"] == 0.5
