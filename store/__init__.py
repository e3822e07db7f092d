"""Storage layer: local files under one data folder (case log, caches). No Streamlit."""
from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The local data folder: ``$SURVEILLANCE_DATA_DIR`` or ``.data`` in the repository root.

    Tests point the variable at a temporary folder so they never touch a user's data.
    """
    root = os.environ.get("SURVEILLANCE_DATA_DIR") or Path(__file__).resolve().parent.parent / ".data"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
