"""Storage layer: text embeddings cached on disk, keyed by (embedder key, text).

One SQLite file under ``store.data_dir()``. Embedding a headline with a pretrained model
or a paid API costs time or money; the same headline under the same model and version
always gives the same vector, so it is computed once. Vectors are stored as float32 bytes.
No Streamlit, nothing about detectors.
"""
from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np

from store import data_dir

__all__ = ["EmbeddingCache"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL, text_hash TEXT NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (model, text_hash))"""


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Embeddings by (model key, text). ``path`` defaults to ``data_dir()/embeddings.sqlite``.

    The model key must change whenever the vectors would (model name plus version).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else data_dir() / "embeddings.sqlite"
        with closing(self._connect()) as conn, conn:
            conn.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def get_many(self, model: str, texts: list[str]) -> list[np.ndarray | None]:
        """One float32 vector per text, or None where it is not cached."""
        hashes = [_text_hash(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        with closing(self._connect()) as conn:
            unique = list(dict.fromkeys(hashes))
            for i in range(0, len(unique), 500):  # stay under SQLite's variable limit
                chunk = unique[i:i + 500]
                rows = conn.execute(
                    f"SELECT text_hash, dim, vector FROM embeddings WHERE model = ? AND text_hash "
                    f"IN ({','.join('?' * len(chunk))})", [model, *chunk]).fetchall()
                for text_hash, dim, blob in rows:
                    found[text_hash] = np.frombuffer(blob, dtype="<f4", count=dim).copy()
        return [found.get(h) for h in hashes]

    def put_many(self, model: str, texts: list[str], vectors: np.ndarray) -> None:
        """Store one row of ``vectors`` per text (replacing any earlier vector)."""
        vectors = np.asarray(vectors, dtype="<f4")
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ValueError(f"Need one vector per text: got {len(texts)} texts and vectors "
                             f"of shape {vectors.shape}.")
        rows = [(model, _text_hash(t), int(v.shape[0]), v.tobytes()) for t, v in zip(texts, vectors)]
        with closing(self._connect()) as conn, conn:
            conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)

    def count(self, model: str | None = None) -> int:
        """Number of cached vectors (for one model key, or all)."""
        with closing(self._connect()) as conn:
            if model is None:
                return int(conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM embeddings WHERE model = ?",
                                    (model,)).fetchone()[0])
