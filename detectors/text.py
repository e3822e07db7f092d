"""Detection library: unusual headlines, scored by distance to reference headlines.

PyOD's ``EmbeddingOD`` pattern: any embedder (``detectors.embedders``) chained to a
k-nearest-neighbour outlier score. Promotional spam ("!!! 10X GUARANTEED BUY NOW") sits
far from ordinary corporate and exchange news in embedding space, so its mean distance
to the nearest reference headlines is high.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from detectors.base import Detector, NotFittedError, check_seed, check_whole, is_real
from detectors.embedders import EMBEDDERS, Embedder, create_embedder

#: Reference headlines this close in time to the scored one are not its neighbours: a burst
#: of near-identical posts (spam around a pump) cannot vouch for itself, and a headline is
#: never its own neighbour.
SAME_BURST_WINDOW = pd.Timedelta(hours=12)
#: Default threshold: this fraction of the way from the median reference score (how far a
#: typical headline's neighbours are) to the median distance between two random reference
#: headlines (how far unrelated headlines are). Medians keep it robust to spam in the reference.
THRESHOLD_FRACTION = 0.4
#: Below this many reference headlines each one's 10 neighbours are a large share of the whole
#: stream, so "unusual" says little: the News page tells the analyst so.
FEW_HEADLINES = 30
#: Reference rows sampled for the median pairwise distance.
_PAIR_SAMPLE = 2000
#: Query rows per block when comparing with the reference (bounds memory).
_BLOCK_ROWS = 1024


def _headline_texts(frame: pd.DataFrame) -> list[str]:
    """Headline text per row; missing or blank headlines become "" (scored NaN)."""
    return ["" if pd.isna(v) else " ".join(str(v).split()) for v in frame["headline"]]


def _epoch_ns(frame: pd.DataFrame) -> np.ndarray:
    """Row times as int64 ns since the epoch (UTC); NaT as the int64 minimum."""
    times = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce")
    return times.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").astype("int64")


_NAT = np.iinfo("int64").min


class TextEmbeddingDetector(Detector):
    """Mean cosine distance from each headline to its ``n_neighbors`` nearest reference
    headlines; higher = more unusual language.

    Parameters
    ----------
    embedder : str or Embedder
        "tfidf" (built-in, fitted on the reference headlines), "sentence_transformer",
        "openai", or an ``Embedder`` instance (e.g. an ``OpenAIEmbedder`` with a config).
    n_neighbors : int
        Reference headlines averaged over (k).
    threshold : float or None
        Default cut in embedding distance; None learns it at fit (see Notes).
    random_state : int or None
        Seed for the TF-IDF embedder's SVD and the pair sample of the threshold.

    Notes
    -----
    Takes a headlines frame (columns ``timestamp`` and ``headline``), not candles.
    ``score`` returns a float Series indexed like that frame, in [0, 2] (1 - cosine
    similarity, averaged over the k nearest), NaN for a blank headline or a missing
    timestamp. Reference headlines within ``SAME_BURST_WINDOW`` (12 h) of the scored one
    are never its neighbours, so scoring the fit set gives leave-one-out scores and a
    burst of similar spam cannot vouch for itself; a headline with fewer than k eligible
    neighbours averages over those it has (NaN with none). Scores use only the fitted
    reference, which may span past and future of the scored headline: fit on the span the
    analyst treats as the baseline.

    The learned threshold is the median leave-one-out reference score plus 0.4 of the gap
    between it and the median distance of two random reference headlines. Unlike a high
    quantile it does not rise with the share of spam in the reference (the demo's
    thin-liquidity coin has over 10 % promotional posts).
    """

    input_kind = "headlines"
    label = "Unusual headline (text embedding)"
    unit = "embedding distance"

    def __init__(self, embedder="tfidf", n_neighbors=10, threshold=None, random_state=0):
        self.embedder = embedder
        self.n_neighbors = n_neighbors
        self.threshold = threshold
        self.random_state = random_state

    def _check_frame(self, frame: pd.DataFrame) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"{type(self).__name__} takes a DataFrame, got {type(frame).__name__}.")
        missing = [c for c in ("timestamp", "headline") if c not in frame.columns]
        if missing:
            raise ValueError(f"Pass headlines (columns timestamp, headline), e.g. from "
                             f"data.news.load_headlines; missing {', '.join(missing)}.")

    def _check_params(self) -> None:
        if not isinstance(self.embedder, Embedder) and (not isinstance(self.embedder, str)
                                                        or self.embedder not in EMBEDDERS):
            raise ValueError(f"embedder must be one of {', '.join(EMBEDDERS)} or an Embedder; "
                             f"got {self.embedder!r}.")
        check_whole("n_neighbors", self.n_neighbors, 1, 1_000_000)
        threshold = self._threshold
        if threshold is not None and not (is_real(threshold) and 0 < threshold <= 2):
            # Scores are distances in [0, 2]: a cut above 2 would never flag anything.
            raise ValueError(f"threshold must be a positive distance up to 2 such as 0.4, or None to "
                             f"learn it; got {threshold!r}.")
        check_seed("random_state", self.random_state)

    def _make_embedder(self) -> Embedder:
        if isinstance(self.embedder, Embedder):
            return self.embedder
        if self.embedder == "tfidf":
            return create_embedder("tfidf", random_state=self.random_state)
        return create_embedder(self.embedder)

    def _fit(self, frame: pd.DataFrame) -> None:
        self._check_params()
        texts, times = _headline_texts(frame), _epoch_ns(frame)
        keep = [i for i, t in enumerate(texts) if t and times[i] != _NAT]
        if len(keep) < 3:
            raise ValueError(f"Need at least 3 reference headlines with a time to fit, got "
                             f"{len(keep)}: widen the reference range or choose another source.")
        self.reference_texts_ = [texts[i] for i in keep]
        self.reference_times_ = times[keep]
        self.embedder_ = self._make_embedder().fit(self.reference_texts_)
        self.reference_ = self.embedder_.embed(self.reference_texts_)
        self.reference_scores_ = self._knn_distance(self.reference_, self.reference_times_)
        if np.isnan(self.reference_scores_).all():
            raise ValueError("The reference headlines all fall within 12 hours of each other, "
                             "so none has a neighbour: widen the reference range.")
        self.threshold_ = self._learned_threshold()  # kept even when a threshold is given

    def _learned_threshold(self) -> float:
        typical = float(np.nanmedian(self.reference_scores_))
        rng = np.random.default_rng(self.random_state)
        sample = self.reference_[rng.permutation(len(self.reference_))[:_PAIR_SAMPLE]]
        pairs = 1.0 - sample @ sample.T
        unrelated = float(np.median(pairs[np.triu_indices(len(sample), k=1)]))
        threshold = typical + THRESHOLD_FRACTION * (unrelated - typical)
        return max(threshold, 1e-6)  # identical references: any new wording is unusual

    def _score(self, frame: pd.DataFrame) -> np.ndarray:
        if not hasattr(self, "reference_"):
            raise NotFittedError("Fit the text detector on reference headlines before score().")
        texts, times = _headline_texts(frame), _epoch_ns(frame)
        out = np.full(len(texts), np.nan)
        rows = [i for i, t in enumerate(texts) if t and times[i] != _NAT]
        if rows:
            vectors = self.embedder_.embed([texts[i] for i in rows])
            out[rows] = self._knn_distance(vectors, times[rows])
        return out

    def _knn_distance(self, vectors: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Mean cosine distance of each row to its k nearest reference rows outside
        ``SAME_BURST_WINDOW``; NaN for a row with no such reference row."""
        window = SAME_BURST_WINDOW.value
        k = min(self.n_neighbors, len(self.reference_))
        out = np.empty(len(vectors))
        for lo in range(0, len(vectors), _BLOCK_ROWS):
            sims = vectors[lo:lo + _BLOCK_ROWS] @ self.reference_.T
            near = np.abs(times[lo:lo + _BLOCK_ROWS, None] - self.reference_times_[None, :]) <= window
            sims[near] = -np.inf
            nearest = -np.partition(-sims, k - 1, axis=1)[:, :k]
            eligible = np.isfinite(nearest)
            distance = np.where(eligible, np.clip(1.0 - nearest, 0.0, 2.0), 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[lo:lo + _BLOCK_ROWS] = distance.sum(axis=1) / eligible.sum(axis=1)
        return out
