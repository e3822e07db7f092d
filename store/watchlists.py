"""Saved watchlists: a small JSON file in the local data folder."""
from __future__ import annotations

import json
import os
import re

from store import data_dir

_NAME = re.compile(r"^[\w .-]{1,40}$")


def _path():
    return data_dir() / "watchlists.json"


def load_watchlists() -> dict[str, list[str]]:
    """All saved watchlists; an unreadable file counts as none (it is rewritten on the next save)."""
    try:
        data = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): [str(s) for s in v] for k, v in data.items() if isinstance(v, list)}


def save_watchlist(name: str, symbols: list[str]) -> None:
    """Save (or replace) a watchlist; names are short plain words."""
    if not _NAME.match(name or ""):
        raise ValueError("Name the watchlist with up to 40 letters, digits, spaces, dots or dashes.")
    lists = load_watchlists()
    lists[name] = symbols
    tmp = _path().with_suffix(".tmp")
    tmp.write_text(json.dumps(lists, indent=1), encoding="utf-8")
    os.replace(tmp, _path())
