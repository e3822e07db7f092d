"""Opening a fresh SQLite file while another connection holds it waits, it does not fail.

Processes starting together race to switch a new file to WAL, and SQLite answers the losers
"database is locked" at once (no busy wait): CI lost a worker to it once.
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
import time

import pytest

from store import use_wal


@contextlib.contextmanager
def held(path, seconds: float):
    """Another connection holds ``path`` exclusively for ``seconds``; yields a connection
    without a busy handler, which SQLite would fail at once."""
    locked = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait()
    conn = sqlite3.connect(path, timeout=0)
    try:
        yield conn
    finally:
        holder.join()
        conn.close()


def test_switching_to_wal_waits_for_a_held_lock(tmp_path):
    with held(tmp_path / "fresh.sqlite", 0.3) as conn:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            conn.execute("PRAGMA journal_mode=WAL")
        use_wal(conn, wait_s=5)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_lock_held_past_the_wait_is_a_clear_error(tmp_path):
    with held(tmp_path / "busy.sqlite", 0.5) as conn:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            use_wal(conn, wait_s=0.05)
