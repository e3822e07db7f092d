"""The one detection pipeline: aligned outputs, one flag definition, calibrated severities."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import detectors
from components.controls import DataChoice, DetectorChoice
from data.demo import demo_market

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ("data", "detectors", "events", "evaluation", "options_flow", "explain", "store")


@pytest.fixture(scope="module")
def market():
    return demo_market(seed=3, symbol="DEMO-USD", start="2024-01-01", end="2024-02-15", interval="1h")


def test_default_detection_is_complete_and_aligned(market):
    candles = market.candles
    result = detectors.detect(candles)
    names = [n for n, _ in detectors.DEFAULT_SPECS]
    assert list(result.scores) == names and list(result.severity.columns) == names
    for frame in (*result.scores.values(), result.severity, result.combined, result.flagged):
        assert frame.index.equals(candles.index)
    assert result.flagged.dtype == bool
    finite = result.combined.dropna()
    assert ((finite >= 0) & (finite < 1)).all()
    # every flagged bar lies in an event, every event starts on a flagged bar
    assert result.flagged.loc[result.events["start"]].all()
    inside = np.zeros(len(candles), dtype=bool)
    for start, end in zip(result.events["start"], result.events["end"]):
        inside |= (candles.index >= start) & (candles.index <= end)
    assert not (result.flagged.to_numpy() & ~inside).any()
    assert result.thresholds == {n: pytest.approx(v) for n, v in result.thresholds.items()}


def test_one_flag_definition(market):
    scored = detectors.score_detectors(market.candles, ["zscore", "pump_dump"])
    cuts = {"zscore": 4.0, "pump_dump": 2.5}
    result = scored.detect(cuts, mode="max")
    expected = (detectors.is_flagged(scored.scores["zscore"], 4.0)
                | detectors.is_flagged(scored.scores["pump_dump"], 2.5))
    pd.testing.assert_series_equal(result.flagged, expected.rename("flagged"))
    voted = scored.detect(cuts, mode="vote", k=2).flagged
    both = detectors.is_flagged(scored.scores["zscore"], 4.0) & detectors.is_flagged(scored.scores["pump_dump"], 2.5)
    assert (voted == both).all()
    assert not detectors.is_flagged(pd.Series([np.nan, 1.0, 2.0]), 2.0).iloc[:2].any()


def test_a_threshold_filters_without_changing_severities(market):
    scored = detectors.score_detectors(market.candles)
    low, high = scored.detect({"zscore": 3.0}), scored.detect({"zscore": 6.0})
    assert len(high.events) < len(low.events)
    pd.testing.assert_frame_equal(low.severity, high.severity)
    # An event that spans the same bars at both thresholds keeps its severity.
    same = low.events.merge(high.events, on=["event_id", "start", "end"], suffixes=("_low", "_high"))
    assert len(same) and np.allclose(same["severity_low"], same["severity_high"])


@pytest.mark.parametrize("pair", [("zscore", "pump_dump"), ("zscore", "isolation_forest")])
def test_equal_severities_are_equally_rare_across_detectors(market, pair):
    """The share of bars at or above a severity is the same for two detectors (calibration)."""
    scored = detectors.score_detectors(market.candles, list(pair))
    for level in (0.3, 0.45, 0.6):
        rates = [float((scored.severity[n].dropna() >= level).mean()) for n in pair]
        assert rates[0] == pytest.approx(rates[1], abs=max(0.25 * max(rates), 0.004)), (level, rates)


def test_severity_never_saturates_and_ranks_the_extremes():
    from detectors.calibration import TailCalibration, rarity_text
    rng = np.random.default_rng(0)
    calibration = TailCalibration(np.abs(rng.standard_t(4, 5000)))
    severity = calibration.severity(pd.Series([5.0, 20.0, 1e3, 1e6, 1e12]))
    assert severity.is_monotonic_increasing and severity.diff().dropna().gt(0).all()
    assert (severity < 1).all()
    assert rarity_text(severity.iloc[0]).startswith("about 1 in ")


@pytest.mark.parametrize("name", ["zscore", "pump_dump", "flash_crash"])
def test_trailing_detectors_do_not_look_ahead(market, name):
    candles = market.candles
    cut = len(candles) - 100
    full = detectors.create(name).fit(candles).score(candles)
    head = detectors.create(name).fit(candles.iloc[:cut]).score(candles.iloc[:cut])
    pd.testing.assert_series_equal(full.iloc[:cut], head, check_names=False)


def test_scanner_and_explorer_severities_are_equal():
    from components.scan import scan_symbol
    choice = DataChoice("demo", "DEMO", "1h", pd.Timestamp("2024-01-01").date(), pd.Timestamp("2024-02-10").date())
    chosen = (DetectorChoice("zscore", ()), DetectorChoice("pump_dump", ()))
    row = scan_symbol(choice, chosen, {})
    from data import load_candles
    candles = load_candles("demo", "DEMO", **choice.load_kwargs())
    explorer = detectors.score_detectors(candles, [(d.name, dict(d.params)) for d in chosen]).detect()
    assert row["events"] == len(explorer.events) > 0
    assert row["max_severity"] == pytest.approx(explorer.events["severity"].max())


def _severity_compared_to_a_literal(tree: ast.AST) -> list[int]:
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = any("severity" in ast.unparse(side).lower() for side in sides)
            literal = any(isinstance(side, ast.Constant) and isinstance(side.value, float) for side in sides)
            if named and literal:
                hits.append(node.lineno)
    return hits


def test_no_module_compares_a_severity_to_a_literal():
    """A flag is ``detectors.is_flagged`` (a score against its threshold), never severity >= 0.5."""
    offenders = {}
    for folder in (*LIBRARY, "components", "app_pages", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            hits = _severity_compared_to_a_literal(ast.parse(path.read_text(encoding="utf-8")))
            if hits:
                offenders[str(path.relative_to(ROOT))] = hits
    assert not offenders, offenders


@pytest.mark.parametrize("names", [["zscore"], ["pump_dump"], ["isolation_forest"], ["zscore", "pump_dump"]])
def test_a_flat_market_produces_no_events(names):
    index = pd.date_range("2024-01-01", periods=600, freq="h", tz="UTC", name="timestamp")
    flat = pd.DataFrame({c: 100.0 for c in ("open", "high", "low", "close")} | {"volume": 1_000.0}, index=index)
    result = detectors.detect(flat, names)
    assert result.events.empty and not result.flagged.any()


@pytest.mark.parametrize("bad, message", [
    ({"zscore": [3]}, "finite number"), ({"zscore": "3"}, "finite number"), ([("zscore", 3)], "dict"),
])
def test_thresholds_of_the_wrong_type_name_the_fix(market, bad, message):
    with pytest.raises(ValueError, match=message):
        detectors.detect(market.candles, ["zscore"], thresholds=bad)


@pytest.mark.parametrize("name, params, message", [
    ("isolation_forest", {"n_estimators": 10**7}, "n_estimators"),
    ("isolation_forest", {"threshold": "3"}, "threshold"),
    ("lstm_autoencoder", {"units": 10**6}, "units"),
    ("zscore", {"window": True}, "window"),
])
def test_absurd_parameters_are_refused_before_any_work(market, name, params, message):
    with pytest.raises(ValueError, match=message):
        detectors.detect(market.candles, [(name, params)])


def test_scores_of_the_wrong_type_name_the_fix(market):
    with pytest.raises(ValueError, match="Series"):
        detectors.from_scores(market.candles, {"zscore": [1.0, 2.0]})


def test_hover_text_from_an_explanation_cannot_carry_markup():
    from components.charts import first_sentence
    shown = first_sentence('<a href="https://evil.example">Reset</a> your password. Then more.')
    assert "<" not in shown and ">" not in shown and shown.endswith("password.")


def test_the_worst_bars_of_two_series_rank_by_how_far_out_they_are():
    """Same length, each series' worst bar its own maximum: "1 in n" would tie them; the
    Pareto tail ranks a 60-sigma tick above a 6-sigma spike (the scanner's ranking)."""
    from detectors.calibration import TailCalibration
    rng = np.random.default_rng(3)
    calm = np.abs(rng.standard_normal(744))
    spike, tick = calm.copy(), calm.copy()
    spike[400], tick[400] = 6.0, 60.0
    severities = [TailCalibration(s).severity(pd.Series([s[400]])).iat[0] for s in (spike, tick)]
    assert severities[0] < severities[1] < 1
    # Below the few highest scores severities stay exactly empirical.
    cal = TailCalibration(tick)
    assert cal.severity(pd.Series([np.sort(tick)[-20]])).iat[0] == pytest.approx(
        TailCalibration(spike).severity(pd.Series([np.sort(spike)[-20]])).iat[0])


def test_an_infinite_score_gets_the_highest_severity_not_nan():
    from detectors.calibration import TailCalibration
    calibration = TailCalibration(np.abs(np.random.default_rng(0).standard_normal(1000)))
    severity = calibration.severity(pd.Series([np.inf, 1e300, np.nan]))
    assert 0.99 < severity.iat[0] < 1 and severity.iat[0] >= severity.iat[1] and np.isnan(severity.iat[2])
