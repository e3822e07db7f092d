"""Storage layer: local files under one data folder (case log, caches). No Streamlit."""
from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path


def data_dir() -> Path:
    """The local data folder: ``$SURVEILLANCE_DATA_DIR`` or ``.data`` in the repository root.

    Tests point the variable at a temporary folder so they never touch a user's data.
    """
    root = os.environ.get("SURVEILLANCE_DATA_DIR") or Path(__file__).resolve().parent.parent / ".data"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def use_wal(conn, wait_s: float) -> None:
    """Switch a SQLite file to WAL (kept in the file, so once), retrying while it is busy.

    Processes opening a fresh file together race to switch it, and SQLite answers the losers
    "database is locked" at once, without waiting out its busy timeout: so we wait here.
    ``conn`` is a sqlite3 connection or cursor.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
