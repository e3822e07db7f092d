"""Detection library: the detectors, their registry, calibration and the one detection
pipeline (``detect``). No Streamlit, no data loaders.

Detectors are created by name through a registry of import paths, so heavy dependencies
(TensorFlow for ``lstm_autoencoder``) are imported only when that detector is used.
"""
from __future__ import annotations

import importlib
from typing import Any

from detectors.base import Detector

__all__ = ["Detector", "available", "create", "detector_class", "detect", "score_detectors",
           "from_scores", "is_flagged", "to_events", "combine_severities"]

#: name -> "module:Class". Order is the order the app lists them in.
REGISTRY: dict[str, str] = {
    "zscore": "detectors.zscore:RollingZScoreDetector",
    "isolation_forest": "detectors.iforest:IsolationForestDetector",
    "pump_dump": "detectors.pump_dump:PumpDumpDetector",
    "flash_crash": "detectors.pump_dump:FlashCrashDetector",
    "lstm_autoencoder": "detectors.lstm:LstmAutoencoderDetector",
    "text_embedding": "detectors.text:TextEmbeddingDetector",
}


def available(input_kind: str | None = None) -> list[str]:
    """Names of the registered detectors; ``input_kind`` "candles" or "headlines" filters them."""
    if input_kind is None:
        return list(REGISTRY)
    return [n for n in REGISTRY if detector_class(n).input_kind == input_kind]


def detector_class(name: str) -> type[Detector]:
    """The class registered under ``name`` (imports its module, not TensorFlow)."""
    if name not in REGISTRY:
        raise ValueError(f"Unknown detector {name!r}; choose one of {', '.join(REGISTRY)}.")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create(name: str, **params: Any) -> Detector:
    """A new, unfitted detector; unknown parameter names raise ValueError."""
    cls = detector_class(name)
    valid = cls._get_param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"Detector {name!r} has no parameter(s) {', '.join(unknown)}; "
                         f"it takes {', '.join(valid) or 'none'}.")
    return cls(**params)


def __getattr__(attr: str) -> Any:
    # Lazy re-exports keep `import detectors` light.
    lazy = {"detect": "detectors.pipeline", "score_detectors": "detectors.pipeline",
            "from_scores": "detectors.pipeline", "is_flagged": "detectors.pipeline",
            "DEFAULT_SPECS": "detectors.pipeline", "to_events": "events.build",
            "combine_severities": "detectors.ensemble"}
    if attr in lazy:
        return getattr(importlib.import_module(lazy[attr]), attr)
    raise AttributeError(attr)
