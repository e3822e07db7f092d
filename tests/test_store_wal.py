"""Opening a fresh SQLite file while another connection holds it waits, it does not fail.

Processes starting together race to switch a new file to WAL, and SQLite answers the losers
"database is locked" at once (no busy wait): CI lost a worker to it once.
"""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from store import use_wal


def _hold_exclusive(path, seconds: float, locked: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    locked.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def test_switching_to_wal_waits_for_a_held_lock(tmp_path):
    path = tmp_path / "fresh.sqlite"
    locked = threading.Event()
    holder = threading.Thread(target=_hold_exclusive, args=(path, 0.3, locked))
    holder.start()
    locked.wait()
    conn = sqlite3.connect(path, timeout=0)    # no busy handler: SQLite would fail at once
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        conn.execute("PRAGMA journal_mode=WAL")
    use_wal(conn, wait_s=5)
    holder.join()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_lock_held_past_the_wait_is_a_clear_error(tmp_path):
    path = tmp_path / "busy.sqlite"
    locked = threading.Event()
    holder = threading.Thread(target=_hold_exclusive, args=(path, 0.5, locked))
    holder.start()
    locked.wait()
    conn = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        use_wal(conn, wait_s=0.05)
    holder.join()
    conn.close()
