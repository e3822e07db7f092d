"""Detector parameters of the wrong type or out of range fail with a ValueError naming the
parameter and what to pass, never a TypeError from deep inside (fuzzing found those)."""
import numpy as np
import pytest

import detectors
from detectors.base import MAX_SEED, check_flag, check_names, check_number, check_seed, check_whole, is_real
from detectors.lstm import _check_params as lstm_check_params

#: Values that are no number: text, bytes, containers, complex, and booleans.
NOT_NUMBERS = ["5", "", b"1", [1], (), {"a": 1}, complex(1, 1), True, False, np.bool_(True), None]
NOT_FINITE = [float("nan"), float("inf"), -float("inf"), np.float64("nan")]


@pytest.fixture(scope="module")
def market():
    from data.demo import demo_market
    return demo_market(seed=1, symbol="DEMO-USD")


def _fit(name, market, **params):
    data = market.headlines if detectors.detector_class(name).input_kind == "headlines" else market.candles
    return detectors.create(name, **params).fit(data)


# ------------------------------------------------------------------------- shared helpers

@pytest.mark.parametrize("value", [True, False, np.bool_(True), "1", 1.0, None, [1]])
def test_check_whole_refuses_booleans_and_non_integers(value):
    with pytest.raises(ValueError, match="n must be a whole number from 1 to 10"):
        check_whole("n", value, 1, 10)


@pytest.mark.parametrize("value", NOT_NUMBERS + NOT_FINITE)
def test_check_number_refuses_what_is_no_finite_number(value):
    with pytest.raises(ValueError, match=r"x must be a number above 0 and at most 2, e\.g\. 0\.5; got "):
        check_number("x", value, 0.0, 2.0, example="0.5")


@pytest.mark.parametrize("value", [1, 0.5, np.int64(2), np.float32(1.5)])
def test_check_number_takes_real_numbers(value):
    check_number("x", value, 0.0, 2.0, example="0.5")


def test_is_real_handles_huge_integers():
    assert is_real(10**400) and is_real(2**63) and not is_real(True) and not is_real(complex(1, 0))
    with pytest.raises(ValueError, match="at most"):
        check_number("x", 10**400, 0.0, 2.0, example="0.5")


@pytest.mark.parametrize("value", [1, 0, "yes", None, np.int64(1), 1.0])
def test_check_flag_takes_only_true_or_false(value):
    with pytest.raises(ValueError, match=r"robust must be True or False; got "):
        check_flag("robust", value)
    check_flag("robust", np.bool_(False))


@pytest.mark.parametrize("value", [True, -1, MAX_SEED + 1, 1.5, "0", float("nan")])
def test_check_seed_refuses_non_seeds(value):
    with pytest.raises(ValueError, match="random_state must be a whole number from 0 to 4,294,967,295"):
        check_seed("random_state", value)
    check_seed("random_state", None)
    check_seed("random_state", MAX_SEED)


@pytest.mark.parametrize("value, message", [
    (5, "non-empty list"), (True, "non-empty list"), (5.0, "non-empty list"), ("returns", "non-empty list"),
    ((), "non-empty list"), ({"returns"}, "non-empty list"), (b"returns", "non-empty list"),
    ([1], "Unknown features 1"), (("returns", [1]), r"Unknown features \[1\]"),
    (("returns", None), "Unknown features None"), (("returns", "returns"), "twice"),
])
def test_check_names(value, message):
    with pytest.raises(ValueError, match=message):
        check_names("features", value, ("returns", "volume"), example="('returns',)")


# ------------------------------------------------------------------------- each detector

@pytest.mark.parametrize("name", ["zscore", "lstm_autoencoder"])
@pytest.mark.parametrize("value", [5, 0, True, 5.0, [1], ("returns", [1]), {"a": 1}, {"returns"}])
def test_features_of_the_wrong_type_say_what_to_pass(name, value, market):
    with pytest.raises(ValueError, match="features|Unknown features"):
        _fit(name, market, features=value)


@pytest.mark.parametrize("name, top", [("zscore", 1e6), ("isolation_forest", 1.0), ("pump_dump", 1e6),
                                       ("flash_crash", 1e6), ("text_embedding", 2.0)])
@pytest.mark.parametrize("value", NOT_NUMBERS[:-1] + NOT_FINITE + ["top"])
def test_threshold_must_be_a_number_in_range(name, top, value, market):
    if isinstance(value, str) and value == "top":
        value = top * 10
    with pytest.raises(ValueError, match=r"threshold must be a (number above 0|positive distance) .*; got "):
        _fit(name, market, threshold=value)


@pytest.mark.parametrize("value", [1e18, 3.0, 1e308])
def test_text_threshold_beyond_the_distance_range_is_refused(value, market):
    with pytest.raises(ValueError, match=r"threshold must be a positive distance up to 2"):
        _fit("text_embedding", market, threshold=value)


def test_text_threshold_within_range_is_taken(market):
    assert _fit("text_embedding", market, threshold=2.0).threshold == 2.0


@pytest.mark.parametrize("value", [[1], {"a": 1}, 5, None, "", "nope", b"tfidf"])
def test_text_embedder_must_be_a_known_name_or_an_embedder(value, market):
    with pytest.raises(ValueError, match="embedder must be one of tfidf"):
        _fit("text_embedding", market, embedder=value)


@pytest.mark.parametrize("value", [True, False, 0, 1.0, "3", None])
def test_text_n_neighbors_must_be_a_whole_number(value, market):
    with pytest.raises(ValueError, match="n_neighbors must be a whole number"):
        _fit("text_embedding", market, n_neighbors=value)


@pytest.mark.parametrize("name", ["isolation_forest", "text_embedding"])
@pytest.mark.parametrize("value", [True, False, -1, 2**32, 0.5, "5", [1]])
def test_random_state_must_be_a_seed(name, value, market):
    with pytest.raises(ValueError, match="random_state must be a whole number"):
        _fit(name, market, random_state=value)


@pytest.mark.parametrize("value", [1, 0, "yes", "", None, np.int64(1), float("nan"), [1]])
def test_zscore_robust_must_be_true_or_false(value, market):
    with pytest.raises(ValueError, match="robust must be True or False"):
        _fit("zscore", market, robust=value)
    with pytest.raises(ValueError, match="robust must be True or False"):
        from detectors.zscore import IncrementalZScore
        IncrementalZScore(window=5, robust=value)


@pytest.mark.parametrize("value", ["auto", 0.1, np.float32(0.1)])
def test_isolation_forest_contamination_takes_auto_or_a_share(value, market):
    _fit("isolation_forest", market, contamination=value)


@pytest.mark.parametrize("value", ["AUTO", 0, 0.51, True, complex(0.1, 0), "0.1"])
def test_isolation_forest_contamination_refused(value, market):
    with pytest.raises(ValueError, match="contamination must be a number"):
        _fit("isolation_forest", market, contamination=value)


@pytest.mark.parametrize("params, fragment", [
    ({"cache": 1}, "cache must be True or False"),
    ({"cache": "yes"}, "cache must be True or False"),
    ({"cache": None}, "cache must be True or False"),
    ({"learning_rate": 1e308}, "learning_rate must be a number above 0 and at most 1"),
    ({"learning_rate": 3.0}, "learning_rate must be a number above 0 and at most 1"),
    ({"learning_rate": True}, "learning_rate"),
    ({"learning_rate": "1e-3"}, "learning_rate"),
    ({"random_state": True}, "random_state"),
    ({"random_state": 2**32}, "random_state"),
    ({"window": True}, "window"),
    ({"validation_split": True}, "validation_split"),
    ({"threshold_percentile": "99"}, "threshold_percentile"),
])
def test_lstm_params_say_what_to_change(params, fragment, market):
    # Refused before TensorFlow is imported, so this runs without it.
    with pytest.raises(ValueError, match=fragment):
        _fit("lstm_autoencoder", market, **params)


@pytest.mark.parametrize("params", [{"learning_rate": 1.0}, {"cache": np.bool_(False)}, {"random_state": None},
                                    {"features": ["returns"]}])
def test_lstm_params_in_range_are_taken(params):
    lstm_check_params(detectors.create("lstm_autoencoder", **params))


@pytest.mark.parametrize("spec", [("zscore", {"features": 5}), ("zscore", {"robust": "no"}),
                                  ("lstm_autoencoder", {"features": 5}),
                                  ("isolation_forest", {"random_state": True})])
def test_skip_failed_keeps_the_message_instead_of_raising(spec, market):
    scored = detectors.score_detectors(market.candles, [spec, "pump_dump"], skip_failed=True)
    assert spec[0] in scored.errors and "pump_dump" not in scored.errors


def test_text_threshold_type_errors_are_value_errors_for_skip_failed(market):
    det = detectors.create("text_embedding", threshold="5")
    with pytest.raises(ValueError, match=r"threshold must be a positive distance .*; got '5'"):
        det.fit(market.headlines)
