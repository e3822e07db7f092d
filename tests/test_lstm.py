"""LSTM autoencoder detector: contract, alignment, determinism, persistence, cache, params.

Training tests use tiny models (window 12, 8 units, 3 epochs on 600 candles) and share one
fitted detector, so the file stays fast; they are marked ``slow``.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import detectors
from detectors.lstm import LstmAutoencoderDetector

# One xdist worker runs this file, so the shared fitted detector is trained once.
pytestmark = pytest.mark.xdist_group(name="lstm")

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(window=12, units=8, epochs=3, batch_size=64, random_state=0)
N_TRAIN = 600
ANOMALY = slice(640, 646)  # positions of the injected pump in the scoring frame


def synthetic_candles(n: int = 700, seed: int = 3) -> pd.DataFrame:
    """Hourly random-walk candles with a volume x10 and +4% per bar block at ``ANOMALY``."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0, 0.004, n)
    volume = rng.lognormal(10.0, 0.2, n)
    returns[ANOMALY] = 0.04
    volume[ANOMALY] *= 10
    close = 100 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[100.0], close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.002, n)) * close
    frame = pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close) + wick,
         "low": np.minimum(open_, close) - wick, "close": close, "volume": volume},
        index=pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC", name="timestamp"))
    frame.attrs.update(symbol="SYN-USD", source="test", interval="1h")
    return frame


def require_tensorflow() -> None:
    """Skip when TensorFlow is missing locally; in CI a missing TensorFlow is a failure."""
    if importlib.util.find_spec("tensorflow") is None:
        if os.environ.get("CI"):
            pytest.fail("TensorFlow is required in CI for the LSTM detector tests.")
        pytest.skip("TensorFlow is not installed.")


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return synthetic_candles()


@pytest.fixture(scope="module")
def fitted(candles):
    """A detector trained once on the clean first 600 candles (no disk cache), with its
    progress calls recorded."""
    require_tensorflow()
    calls: list[tuple[float, str]] = []
    det = LstmAutoencoderDetector(**TINY, cache=False)
    returned = det.fit(candles.iloc[:N_TRAIN], progress=lambda f, m: calls.append((f, m)))
    assert returned is det
    return det, calls


def test_importing_module_does_not_import_tensorflow():
    code = ("import sys, detectors, detectors.lstm; detectors.create('lstm_autoencoder'); "
            "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_registry_creates_detector_with_defaults():
    det = detectors.create("lstm_autoencoder")
    assert isinstance(det, LstmAutoencoderDetector)
    assert det.name == "lstm_autoencoder"
    assert det.unit == "reconstruction error"
    assert det.get_params()["window"] == 24


@pytest.mark.parametrize("params, fragment", [
    ({"window": 1}, "window"),
    ({"window": 2.5}, "window"),
    ({"units": 0}, "units"),
    ({"epochs": 0}, "epochs"),
    ({"batch_size": 0}, "batch_size"),
    ({"learning_rate": 0}, "learning_rate"),
    ({"validation_split": 1.0}, "validation_split"),
    ({"threshold_percentile": 100}, "threshold_percentile"),
    ({"threshold_percentile": 0}, "threshold_percentile"),
    ({"features": ("returns", "volume")}, "'volume'"),
    ({"features": ()}, "features"),
    ({"features": "returns"}, "features"),
])
def test_bad_params_raise_value_error(candles, params, fragment):
    det = LstmAutoencoderDetector(**{**TINY, **params})
    with pytest.raises(ValueError, match=fragment):
        det.fit(candles)


@pytest.mark.parametrize("window, n", [(12, 74), (550, N_TRAIN)])
def test_too_few_candles_says_how_many(candles, window, n):
    det = LstmAutoencoderDetector(**{**TINY, "window": window})
    needed = det.min_candles()
    # 1 warm-up candle, window - 1 candles before the first full window, and 63 windows
    # so that 50 remain for training after the 20% validation split.
    assert needed == 1 + (window - 1) + 63
    assert n < needed
    with pytest.raises(ValueError, match=f"at least {needed} candles"):
        det.fit(candles.iloc[:n])


def test_score_before_fit_raises(candles):
    with pytest.raises(ValueError, match="not fitted"):
        LstmAutoencoderDetector(**TINY).score(candles)


@pytest.mark.slow
def test_scores_align_with_nan_only_in_warm_up(fitted, candles):
    det, _ = fitted
    scores = det.score(candles)
    assert scores.index.equals(candles.index)
    assert scores.dtype == "float64"
    warm_up = TINY["window"]  # window - 1 candles plus one for the diff-based features
    assert scores.iloc[:warm_up].isna().all()
    assert np.isfinite(scores.iloc[warm_up:]).all()
    assert (scores.iloc[warm_up:] >= 0).all()


@pytest.mark.slow
def test_no_look_ahead_and_short_frames_are_all_nan(fitted, candles):
    det, _ = fitted
    full = det.score(candles)
    head = det.score(candles.iloc[:N_TRAIN])
    np.testing.assert_allclose(head.to_numpy(), full.iloc[:N_TRAIN].to_numpy(), rtol=1e-6)
    assert det.score(candles.iloc[:TINY["window"]]).isna().all()


@pytest.mark.slow
def test_threshold_is_percentile_of_fit_span_errors(fitted, candles):
    det, _ = fitted
    train_scores = det.score(candles.iloc[:N_TRAIN]).dropna()
    expected = np.percentile(train_scores, det.threshold_percentile)
    assert det.threshold == pytest.approx(expected, rel=1e-5)
    from detectors.calibration import one_in_bars
    det.calibrate(train_scores)     # the cut is the 99th percentile: about 1 in 100 bars
    assert one_in_bars(det.severity(pd.Series([det.threshold]))[0]) == pytest.approx(100, rel=0.25)


@pytest.mark.slow
def test_injected_anomaly_scores_higher_than_normal_bars(fitted, candles):
    det, _ = fitted
    scores = det.score(candles)
    touched = scores.iloc[ANOMALY.start:ANOMALY.stop]    # each anomalous bar, newest in its window
    normal = scores.iloc[TINY["window"]:N_TRAIN]
    assert touched.min() > normal.median()
    assert touched.max() > 5 * normal.quantile(0.99)
    assert (touched > det.threshold).any()


@pytest.mark.slow
def test_progress_called_once_per_epoch(fitted):
    det, calls = fitted
    assert len(calls) == det.epochs_trained_ == len(det.history_["loss"])
    assert calls[0][1].startswith(f"Epoch 1/{TINY['epochs']}, loss ")
    fractions = [f for f, _ in calls]
    assert fractions == [pytest.approx((i + 1) / TINY["epochs"]) for i in range(len(calls))]


@pytest.mark.slow
def test_same_seed_gives_identical_scores(fitted, candles):
    det, _ = fitted
    again = LstmAutoencoderDetector(**TINY, cache=False).fit(candles.iloc[:N_TRAIN])
    np.testing.assert_allclose(again.score(candles).to_numpy(), det.score(candles).to_numpy(),
                               atol=1e-6, rtol=0)
    assert again.threshold == pytest.approx(det.threshold, abs=1e-6)


@pytest.mark.slow
def test_saved_model_reloads_and_scores_identically(fitted, candles, tmp_path):
    det, _ = fitted
    det.save(tmp_path / "saved")
    loaded = LstmAutoencoderDetector.load(tmp_path / "saved")
    assert loaded.get_params() == det.get_params()
    assert loaded.threshold == det.threshold
    pd.testing.assert_series_equal(loaded.score(candles), det.score(candles))


def copy_fitted_state(source: LstmAutoencoderDetector):
    """A stand-in for ``_train`` that counts calls and copies the fixture's fitted state."""
    calls = []

    def fake_train(self, frame, progress):
        calls.append(len(frame))
        for attr in ("model_", "scaler_", "threshold_", "history_", "epochs_trained_"):
            setattr(self, attr, getattr(source, attr))

    return fake_train, calls


@pytest.mark.slow
def test_second_fit_loads_from_cache_without_training(fitted, candles, monkeypatch):
    det, _ = fitted
    train = candles.iloc[:N_TRAIN]
    fake_train, trained = copy_fitted_state(det)
    monkeypatch.setattr(LstmAutoencoderDetector, "_train", fake_train)
    first = LstmAutoencoderDetector(**TINY).fit(train)
    assert trained == [N_TRAIN] and first.fitted_from_cache_ is False
    models = Path(os.environ["SURVEILLANCE_DATA_DIR"]) / "models"
    assert [e.name for e in models.iterdir()] == [first.cache_key(train)]

    progress = []
    second = LstmAutoencoderDetector(**TINY).fit(train, progress=lambda f, m: progress.append(f))
    assert trained == [N_TRAIN], "a cached model must not be trained again"
    assert second.fitted_from_cache_ is True
    assert progress == [1.0]
    assert second.model_ is not det.model_  # read back from disk
    assert second.threshold == det.threshold
    pd.testing.assert_series_equal(second.score(candles), det.score(candles))
    # The key depends on the data and on the parameters (except ``cache``).
    assert first.cache_key(candles.iloc[1:N_TRAIN + 1]) != first.cache_key(train)
    assert LstmAutoencoderDetector(**{**TINY, "units": 9}).cache_key(train) != first.cache_key(train)
    assert LstmAutoencoderDetector(**TINY, cache=False).cache_key(train) == first.cache_key(train)


@pytest.mark.slow
def test_corrupt_cache_entry_is_ignored_and_retrained(fitted, candles, monkeypatch):
    det, _ = fitted
    train = candles.iloc[:N_TRAIN]
    fake_train, trained = copy_fitted_state(det)
    monkeypatch.setattr(LstmAutoencoderDetector, "_train", fake_train)
    fresh = LstmAutoencoderDetector(**TINY)
    entry = Path(os.environ["SURVEILLANCE_DATA_DIR"]) / "models" / fresh.cache_key(train)
    entry.mkdir(parents=True)
    (entry / "model.keras").write_bytes(b"not a model")
    (entry / "detector.json").write_text("{broken", encoding="utf-8")
    fresh.fit(train)
    assert trained == [N_TRAIN] and fresh.fitted_from_cache_ is False
    # The retrained model replaced the corrupt entry, so the next fit loads it.
    assert LstmAutoencoderDetector(**TINY).fit(train).fitted_from_cache_ is True
    assert trained == [N_TRAIN]
