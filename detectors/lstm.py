"""LSTM autoencoder detector (detection layer): candles whose recent window reconstructs badly.

A Keras 3 encoder-decoder learns to reproduce sliding windows of scaled candle features on
the span it is fitted on; a window unlike that span reconstructs badly. TensorFlow is
imported only when a model is trained or loaded, so importing this module (and listing
detectors) stays light. Trained models are cached on disk under ``store.data_dir()/models``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from detectors.base import (
    Detector,
    NotFittedError,
    ParamSpec,
    check_flag,
    check_names,
    check_number,
    check_seed,
    check_whole,
    is_real,
)
from detectors.features import churn, log_returns, log_volume, range_ratio

#: Feature name -> causal series computed from candles (bar t uses bars t-1 and t only).
FEATURES: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
    "returns": lambda c: log_returns(c["close"]),
    "log_volume_change": lambda c: log_volume(c["volume"]).diff(),
    "range": range_ratio,
    "body": lambda c: (c["close"] - c["open"]) / c["open"],
    "churn": churn,
}
#: Scaled features are clipped to +-CLIP so one absurd bar cannot dominate training.
CLIP = 10.0
#: Fewest complete windows a fit needs, so the threshold percentile means something.
MIN_TRAIN_WINDOWS = 50
#: Windows per prediction batch when scoring: large batches keep 100,000 candles fast.
SCORE_BATCH = 8192
#: Version of the on-disk format written by ``save``; other versions are not loaded.
FORMAT_VERSION = 2
MODEL_FILE = "model.keras"
STATE_FILE = "detector.json"

Progress = Callable[[float, str], None]


def _import_keras():
    """Import Keras on the TensorFlow backend, quietly and deterministically (call lazily)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    return keras


def _plain(value: Any) -> Any:
    """JSON fallback: numpy scalars (e.g. a window of np.int64) become Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} cannot be written as JSON.")


def _check_params(det: "LstmAutoencoderDetector") -> None:
    """Raise ValueError, saying what to change, for parameters no data can make valid."""
    # Upper bounds keep a typo from exhausting memory (units=10**6) or running for days.
    for name, least, most in (("window", 2, 1000), ("units", 1, 512), ("epochs", 1, 1000),
                              ("batch_size", 1, 65_536), ("patience", 0, 1000)):
        check_whole(name, getattr(det, name), least, most)
    check_whole("score_steps", det.score_steps, 1, det.window)
    # Adam diverges well before a rate of 1; above it training only produces NaN losses.
    check_number("learning_rate", det.learning_rate, 0.0, 1.0, example="1e-3")
    if not (is_real(det.validation_split) and 0 <= det.validation_split < 1):
        raise ValueError(f"validation_split must be at least 0 and below 1, e.g. 0.2; "
                         f"got {det.validation_split!r}.")
    if not (is_real(det.threshold_percentile) and 0 < det.threshold_percentile < 100):
        raise ValueError(f"threshold_percentile must be strictly between 0 and 100, e.g. 99; "
                         f"got {det.threshold_percentile!r}.")
    check_names("features", det.features, FEATURES, example="('returns', 'range')")
    check_seed("random_state", det.random_state)
    check_flag("cache", det.cache)


def _feature_matrix(frame: pd.DataFrame, features: tuple[str, ...]) -> np.ndarray:
    """Raw features, one column per name, float64; NaN where a feature is still warming up."""
    columns = [FEATURES[name](frame).to_numpy(dtype="float64") for name in features]
    matrix = np.column_stack(columns)
    matrix[~np.isfinite(matrix)] = np.nan
    return matrix


def _warmup(features: tuple[str, ...]) -> int:
    """Leading candles without a value for some feature (1 when any feature needs a diff)."""
    probe = pd.DataFrame({c: [1.0, 1.0, 1.0] for c in ("open", "high", "low", "close", "volume")})
    rows = np.isfinite(_feature_matrix(probe, features)).all(axis=1)
    return int(np.argmax(rows))


def _fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of the candle values and timestamps: equal data gives an equal cache key."""
    digest = hashlib.sha256()
    digest.update(frame.index.asi8.tobytes())
    for col in ("open", "high", "low", "close", "volume"):
        digest.update(np.ascontiguousarray(frame[col].to_numpy(dtype="float64")).tobytes())
    return digest.hexdigest()


class LstmAutoencoderDetector(Detector):
    """Reconstruction error of an LSTM autoencoder over the window ending at each candle.

    Parameters
    ----------
    window : int
        Candles per window; the score of candle t covers candles t-window+1 .. t.
    units : int
        LSTM units in the encoder and in the decoder.
    epochs, batch_size, learning_rate : int, int, float
        Adam training settings (MSE loss). 10 epochs of batches of 256 train on 10,000
        candles in about 15 s on two CPU cores (20 epochs: 28 s); on the demo market more
        epochs, or batches of 64 (twice the time per epoch), detect no better.
    validation_split : float
        Share of windows, the latest in time, held out for early stopping (0 = none).
    patience : int
        Epochs without improvement before training stops; the best weights are kept.
    threshold_percentile : float
        The default threshold is this percentile of the errors on the fitted span.
    features : tuple of str
        Any of "returns" (log close change), "log_volume_change", "range"
        ((high - low) / close) and "body" ((close - open) / open).
    random_state : int or None
        Seed for weights and shuffling; with a seed, training is repeatable on CPU
        (None draws a fresh seed per fit).
    score_steps : int
        A candle's score is the reconstruction error of the newest this many bars of the
        window ending at it (1: the candle itself, in the context of the bars before).
    cache : bool
        Load a model trained earlier on the same data and parameters from disk instead of
        training again, and save newly trained ones there.

    Notes
    -----
    ``score`` is indexed like the input, higher = more anomalous, in units of mean squared
    error of standardised features (about 1 means no better than guessing the average).
    It is NaN for the first ``window - 1`` candles plus the features' warm-up (one candle
    for the diff-based features) and for any window that contains a missing feature value.
    A candle's score uses candles up to it only; the model and scaler come from the span
    passed to ``fit``.
    """

    label = "LSTM autoencoder"
    unit = "reconstruction error"
    parameters = (ParamSpec("window", "Sequence window (bars)", 4, 96),
                  ParamSpec("epochs", "Max epochs", 1, 100),
                  ParamSpec("units", "LSTM units", 4, 128, 4))
    slow = True

    def __init__(self, window=24, units=32, epochs=10, batch_size=256, learning_rate=1e-3,
                 validation_split=0.2, patience=3, threshold_percentile=99.0,
                 features=("returns", "log_volume_change", "range", "churn"), random_state=0,
                 cache=True, score_steps=1):
        self.window = window
        self.units = units
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_split = validation_split
        self.patience = patience
        self.threshold_percentile = threshold_percentile
        self.features = features
        self.random_state = random_state
        self.cache = cache
        self.score_steps = score_steps

    def min_candles(self) -> int:
        """Fewest candles ``fit`` accepts with these parameters (valid parameters assumed)."""
        return _warmup(tuple(self.features)) + self.window - 1 + self._min_windows()

    def _min_windows(self) -> int:
        """Windows needed so that MIN_TRAIN_WINDOWS remain for training after validation."""
        return int(np.ceil(MIN_TRAIN_WINDOWS / (1 - self.validation_split)))

    # ------------------------------------------------------------------ fit
    def fit(self, frame: pd.DataFrame, progress: Progress | None = None) -> "LstmAutoencoderDetector":
        """Train on ``frame`` (or load the cached model for it) and return self.

        ``progress(fraction, message)`` is called after every epoch, and once when a cached
        model is loaded. Sets ``model_``, ``scaler_``, ``threshold_``, ``history_``,
        ``epochs_trained_`` and ``fitted_from_cache_``.
        """
        self._check_frame(frame)
        _check_params(self)
        needed = self.min_candles()
        if len(frame) < needed:
            raise ValueError(f"The LSTM autoencoder with window={self.window} needs at least "
                             f"{needed} candles to train; got {len(frame)}. Load a longer "
                             "range or lower window.")
        entry = self._cache_dir(frame) if self.cache else None
        if entry is not None and entry.is_dir():
            try:
                self._restore(entry, expect_params=True)
            except Exception:  # a corrupt or foreign entry: drop it and train afresh
                shutil.rmtree(entry, ignore_errors=True)
            else:
                self.fitted_from_cache_ = True
                if progress is not None:
                    progress(1.0, "Loaded the trained model from the cache")
                return self
        self._train(frame, progress)
        self.fitted_from_cache_ = False
        if entry is not None:
            self._write_entry(entry)
        return self

    def _train(self, frame: pd.DataFrame, progress: Progress | None) -> None:
        keras = _import_keras()
        # Deterministic TensorFlow ops refuse to run unseeded, so None draws a fresh seed.
        seed = (int(self.random_state) if self.random_state is not None
                else int(np.random.SeedSequence().entropy % 2**31))
        keras.utils.set_random_seed(seed)
        features = tuple(self.features)
        raw = _feature_matrix(frame, features)
        finite = np.isfinite(raw).all(axis=1)
        from sklearn.preprocessing import StandardScaler
        scaler = StandardScaler().fit(raw[finite])
        windows, _ = self._windows(self._scale(raw, scaler))
        if len(windows) < self._min_windows():
            raise ValueError(f"Only {len(windows)} complete windows in these candles (missing "
                             f"values break windows); need {self._min_windows()}. Load a "
                             "longer range or lower window.")
        samples = np.ascontiguousarray(windows)
        # The latest windows validate; the split is in time, shuffling happens only within
        # the training part.
        n_train = len(samples) - int(round(len(samples) * self.validation_split))
        train, val = samples[:n_train], samples[n_train:]
        n_val = len(val)

        model = self._build_model(keras, len(features))
        callbacks = [keras.callbacks.EarlyStopping(
            monitor="val_loss" if n_val else "loss", patience=int(self.patience),
            restore_best_weights=True)]
        if progress is not None:
            callbacks.append(_progress_callback(keras, progress, self.epochs))
        history = model.fit(self._dataset(train, shuffle_seed=seed),
                            validation_data=self._dataset(val) if n_val else None,
                            epochs=int(self.epochs), shuffle=False, callbacks=callbacks, verbose=0)
        errors = self._errors(model, samples)
        self.model_ = model
        self.scaler_ = scaler
        self.threshold_ = max(float(np.percentile(errors, self.threshold_percentile)),
                              float(np.finfo("float32").eps))
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        self.epochs_trained_ = len(self.history_.get("loss", []))

    def _dataset(self, windows: np.ndarray, shuffle_seed: int | None = None):
        """Batches of (window, window) pairs, reshuffled every epoch when a seed is given
        (a plain tf.data pipeline: faster than Keras's array adapter)."""
        import tensorflow as tf

        data = tf.data.Dataset.from_tensor_slices((windows, windows))
        if shuffle_seed is not None:
            data = data.shuffle(len(windows), seed=shuffle_seed)
        return data.batch(int(self.batch_size))

    def _build_model(self, keras, n_features: int):
        """Input(window, n) -> LSTM -> RepeatVector -> LSTM(sequences) -> per-step Dense(n)."""
        layers = keras.layers
        window, units = int(self.window), int(self.units)  # Keras rejects numpy integers
        inputs = keras.Input(shape=(window, n_features))
        code = layers.LSTM(units)(inputs)
        repeated = layers.RepeatVector(window)(code)
        decoded = layers.LSTM(units, return_sequences=True)(repeated)
        outputs = layers.TimeDistributed(layers.Dense(n_features))(decoded)
        model = keras.Model(inputs, outputs, name="lstm_autoencoder")
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=self.learning_rate),
                      loss="mse", jit_compile=False)
        return model

    # ---------------------------------------------------------------- score
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit(candles) first.")

    def _score(self, frame: pd.DataFrame) -> np.ndarray:
        self._check_fitted()
        scores = np.full(len(frame), np.nan)
        raw = _feature_matrix(frame, tuple(self.features))
        windows, ends = self._windows(self._scale(raw, self.scaler_))
        if len(windows):
            scores[ends] = self._errors(self.model_, windows)
        return scores

    def _scale(self, raw: np.ndarray, scaler) -> np.ndarray:
        """Standardise with the fitted scaler, clip to +-CLIP, float32; NaN rows stay NaN."""
        return np.clip(scaler.transform(raw), -CLIP, CLIP).astype("float32")

    def _windows(self, scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Complete windows (a view, shape (k, window, n_features)) and their end positions."""
        if len(scaled) < self.window:
            return np.empty((0, self.window, scaled.shape[1]), "float32"), np.empty(0, int)
        windows = sliding_window_view(scaled, self.window, axis=0).transpose(0, 2, 1)
        bad = (~np.isfinite(scaled).all(axis=1)).astype(int)
        bad_in_window = sliding_window_view(bad, self.window).sum(axis=1)
        complete = np.flatnonzero(bad_in_window == 0)
        return windows[complete], complete + self.window - 1

    def _errors(self, model, windows: np.ndarray) -> np.ndarray:
        """Mean squared reconstruction error of the newest ``score_steps`` bars of each window,
        predicted in large batches (a whole-window mean dilutes a one-bar anomaly 24 times)."""
        errors = np.empty(len(windows))
        steps = int(self.score_steps)
        for start in range(0, len(windows), SCORE_BATCH):
            batch = np.ascontiguousarray(windows[start:start + SCORE_BATCH])
            rebuilt = np.asarray(model.predict_on_batch(batch))
            errors[start:start + len(batch)] = np.mean((rebuilt - batch)[:, -steps:, :] ** 2, axis=(1, 2))
        return errors

    # ---------------------------------------------------- save, load, cache
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted detector to folder ``path`` (model.keras + detector.json)."""
        self._check_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.model_.save(folder / MODEL_FILE)
        params = self.get_params()
        params["features"] = list(params["features"])
        state = {"format": FORMAT_VERSION, "params": params,
                 "scaler_mean": self.scaler_.mean_.tolist(),
                 "scaler_scale": self.scaler_.scale_.tolist(),
                 "threshold": self.threshold_, "history": self.history_,
                 "epochs_trained": self.epochs_trained_}
        (folder / STATE_FILE).write_text(json.dumps(state, indent=1, default=_plain),
                                         encoding="utf-8")
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LstmAutoencoderDetector":
        """A fitted detector read from a folder written by ``save``; it scores identically.

        The model is read with Keras's safe mode, so a file cannot make it run code.
        """
        state = json.loads((Path(path) / STATE_FILE).read_text(encoding="utf-8"))
        params = dict(state["params"])
        params["features"] = tuple(params["features"])
        det = cls(**params)
        det._restore(Path(path), expect_params=False)
        det.fitted_from_cache_ = False
        return det

    def _restore(self, folder: Path, expect_params: bool) -> None:
        """Set the fitted state from ``folder``; raises if it is unreadable or does not match."""
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        if state.get("format") != FORMAT_VERSION:
            raise ValueError(f"{folder} holds format {state.get('format')!r}, "
                             f"not {FORMAT_VERSION}; fit again.")
        saved = dict(state["params"], cache=self.cache)
        mine = dict(self.get_params(), features=list(self.features))
        if expect_params and saved != mine:
            raise ValueError(f"{folder} was trained with other parameters.")
        from sklearn.preprocessing import StandardScaler
        scaler = StandardScaler()
        scaler.mean_ = np.asarray(state["scaler_mean"], dtype="float64")
        scaler.scale_ = np.asarray(state["scaler_scale"], dtype="float64")
        scaler.var_ = scaler.scale_ ** 2
        scaler.n_features_in_ = len(scaler.mean_)
        if scaler.n_features_in_ != len(self.features):
            raise ValueError(f"{folder} has a scaler for other features; fit again.")
        threshold = float(state["threshold"])
        keras = _import_keras()
        model = keras.saving.load_model(folder / MODEL_FILE, compile=False)
        if tuple(model.input_shape[1:]) != (self.window, len(self.features)):
            raise ValueError(f"{folder} holds a model for other windows; fit again.")
        self.model_ = model
        self.scaler_ = scaler
        self.threshold_ = threshold
        self.history_ = state.get("history", {})
        self.epochs_trained_ = int(state.get("epochs_trained", 0))

    def cache_key(self, frame: pd.DataFrame) -> str:
        """sha256 of symbol, interval, parameters (not ``cache``), span and data fingerprint."""
        params = self.get_params()
        params.pop("cache")
        params["features"] = list(params["features"])
        payload = {"format": FORMAT_VERSION, "symbol": str(frame.attrs.get("symbol", "")),
                   "interval": str(frame.attrs.get("interval", "")), "params": params,
                   "start": frame.index[0].isoformat(), "end": frame.index[-1].isoformat(),
                   "rows": len(frame), "data": _fingerprint(frame)}
        text = json.dumps(payload, sort_keys=True, default=_plain)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _cache_dir(self, frame: pd.DataFrame) -> Path:
        from store import data_dir
        return data_dir() / "models" / self.cache_key(frame)

    def _write_entry(self, entry: Path) -> None:
        """Save into a temporary folder beside ``entry`` and rename it into place atomically."""
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
        try:
            self.save(tmp)
            os.replace(tmp, entry)
        except OSError:  # the cache is best effort; another process may have written it first
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename


def _progress_callback(keras, progress: Progress, epochs: int):
    """A Keras callback that reports ``(epoch / epochs, "Epoch e/E, loss ..., about N s left")``
    per epoch (time left from the mean epoch so far; early stopping may end sooner)."""
    import time

    class _EpochProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            done = epoch + 1
            left = (time.perf_counter() - self.started) / done * (epochs - done)
            message = f"Epoch {done}/{epochs}, loss {logs.get('loss', float('nan')):.4g}"
            if "val_loss" in logs:
                message += f", validation loss {logs['val_loss']:.4g}"
            message += f", about {left:.0f} s left" if done < epochs else ", done"
            progress(done / epochs, message)

    return _EpochProgress()
