"""Storage layer: the explanation cache, one SQLite file in the data folder (WAL mode).

Keyed by (event_id, model, prompt_version), so a new model or a new prompt version asks
again. The value is the explanation as JSON. What may be cached is decided by the caller
(``explain``): model answers and built-in explanations, never a transient failure.
"""
from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from store import data_dir, use_wal

__all__ = ["get_cached", "get_cached_many", "put_cached", "put_cached_many", "clear_cached",
           "cache_path"]

#: Event ids per SELECT (well under SQLite's limit on bound parameters).
_CHUNK = 500
_SCHEMA = """CREATE TABLE IF NOT EXISTS explanations (
    event_id TEXT NOT NULL, model TEXT NOT NULL, prompt_version TEXT NOT NULL,
    payload TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (event_id, model, prompt_version))"""


def cache_path() -> Path:
    """``data_dir()/explanations.sqlite`` (read at each call, so tests can move it)."""
    return data_dir() / "explanations.sqlite"


def _connect() -> sqlite3.Connection:
    conn = sqlite3.connect(cache_path(), timeout=10)
    use_wal(conn, 10)
    conn.execute("PRAGMA synchronous=NORMAL")  # a cache: durability of the last write is not needed
    conn.execute(_SCHEMA)
    return conn


def _load(payload: str) -> dict[str, Any] | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def get_cached_many(event_ids: Iterable[str], model: str,
                    prompt_version: str) -> dict[str, dict[str, Any]]:
    """Cached explanations of these events for one model and prompt version, by event_id.

    Events without a (readable) entry are absent from the result.
    """
    ids = list(dict.fromkeys(event_ids))
    found: dict[str, dict[str, Any]] = {}
    with closing(_connect()) as conn:
        for first in range(0, len(ids), _CHUNK):
            chunk = ids[first:first + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = conn.execute("SELECT event_id, payload FROM explanations WHERE model = ? AND "
                                f"prompt_version = ? AND event_id IN ({marks})",
                                (model, prompt_version, *chunk))
            for event_id, payload in rows:
                if (value := _load(payload)) is not None:
                    found[event_id] = value
    return found


def get_cached(event_id: str, model: str, prompt_version: str) -> dict[str, Any] | None:
    """The cached explanation dict, or None when absent or unreadable."""
    return get_cached_many([event_id], model, prompt_version).get(event_id)


def put_cached_many(entries: Iterable[tuple[str, str, str, Mapping[str, Any]]]) -> None:
    """Store (or replace) many ``(event_id, model, prompt_version, explanation)`` at once."""
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = [(event_id, model, version, json.dumps(dict(explanation), ensure_ascii=False,
                                                  sort_keys=True), created)
            for event_id, model, version, explanation in entries]
    if not rows:
        return
    with closing(_connect()) as conn, conn:
        conn.executemany("INSERT OR REPLACE INTO explanations VALUES (?, ?, ?, ?, ?)", rows)


def put_cached(event_id: str, model: str, prompt_version: str,
               explanation: Mapping[str, Any]) -> None:
    """Store (or replace) the explanation for this key. Values must be JSON-serialisable."""
    put_cached_many([(event_id, model, prompt_version, explanation)])


def clear_cached(model: str | None = None) -> int:
    """Delete cached explanations (of one model, or all); returns how many were deleted."""
    with closing(_connect()) as conn, conn:
        if model is None:
            return conn.execute("DELETE FROM explanations").rowcount
        return conn.execute("DELETE FROM explanations WHERE model = ?", (model,)).rowcount
