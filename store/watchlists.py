"""Saved watchlists, in the case database: a team on PostgreSQL shares them, saves are atomic.

Each save is one upsert, so concurrent saves from many processes all land (the old JSON
file lost most of them). A ``watchlists.json`` left by earlier versions in the data folder
is imported once, then renamed ``watchlists.json.imported``; a malformed one is renamed
``watchlists.json.malformed`` and reported, never half-read.

Pass ``log=`` (a ``CaseLog``) to use its database; without it the local default is used.
"""
from __future__ import annotations

import json
import logging
import unicodedata
from pathlib import Path

import sqlalchemy as sa

from store import data_dir
from store.db import UtcDateTime, check_name, default_engine, insert, utc_now

__all__ = ["load_watchlists", "save_watchlist", "delete_watchlist", "import_legacy_watchlists",
           "SYMBOL_LIMIT", "MAX_SYMBOLS"]

SYMBOL_LIMIT = 64
MAX_SYMBOLS = 1000
_log = logging.getLogger(__name__)

watchlists_table = sa.Table(
    "watchlists", sa.MetaData(),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("symbols_json", sa.Text, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)


def load_watchlists(*, log=None) -> dict[str, list[str]]:
    """All saved watchlists by name (a legacy JSON file is imported first, once)."""
    engine = _engine(log)
    for warning in import_legacy_watchlists(log=log):
        _log.warning(warning)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(watchlists_table.c.name, watchlists_table.c.symbols_json)
                            .order_by(watchlists_table.c.name)).all()
    return {name: json.loads(symbols) for name, symbols in rows}


def save_watchlist(name: str, symbols: list[str], *, log=None) -> None:
    """Save (or replace) a watchlist in one atomic statement."""
    name = check_name(name, "watchlist")
    row = {"name": name, "symbols_json": json.dumps(_check_symbols(symbols)),
           "updated_at": utc_now()}
    engine = _engine(log)
    stmt = insert(engine, watchlists_table).values(row)
    stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={
        "symbols_json": stmt.excluded.symbols_json, "updated_at": stmt.excluded.updated_at})
    with engine.begin() as conn:
        conn.execute(stmt)


def delete_watchlist(name: str, *, log=None) -> bool:
    """Delete a watchlist; False when there was none of that name."""
    with _engine(log).begin() as conn:
        return conn.execute(watchlists_table.delete()
                            .where(watchlists_table.c.name == check_name(name, "watchlist"))
                            ).rowcount > 0


def import_legacy_watchlists(path: str | Path | None = None, *, log=None) -> list[str]:
    """Import ``watchlists.json`` from the data folder once; returns warnings (empty: all fine).

    Names already in the database keep their saved symbols. Entries that fail today's checks
    are skipped with a warning; a file that is not a JSON object of lists is not imported.
    """
    path = Path(path) if path else data_dir() / "watchlists.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        return [_set_aside(path, f"it is not valid JSON ({exc})")]
    if not isinstance(data, dict):
        return [_set_aside(path, f"it holds a JSON {type(data).__name__}, not an object of "
                                 "name: [symbols]")]
    warnings, rows = [], []
    for name, symbols in data.items():
        try:
            rows.append({"name": check_name(name, "watchlist"),
                         "symbols_json": json.dumps(_check_symbols(symbols)),
                         "updated_at": utc_now()})
        except ValueError as exc:
            warnings.append(f"Skipped watchlist {name!r} from {path.name}: {exc}")
    if rows:
        engine = _engine(log)
        with engine.begin() as conn:
            conn.execute(insert(engine, watchlists_table).on_conflict_do_nothing(
                index_elements=["name"]), rows)
    try:
        path.rename(path.with_name(path.name + ".imported"))
    except FileNotFoundError:
        pass  # another process imported it at the same time
    return warnings


def _set_aside(path: Path, why: str) -> str:
    target = path.with_name(path.name + ".malformed")
    try:
        path.rename(target)
    except FileNotFoundError:
        pass
    return (f"Did not import {path}: {why}. It was renamed {target.name}; fix it and rename it "
            "back to import it, or delete it.")


def _check_symbols(symbols) -> list[str]:
    if isinstance(symbols, str) or not isinstance(symbols, (list, tuple)):
        raise ValueError("Pass the watchlist's symbols as a list of strings.")
    if len(symbols) > MAX_SYMBOLS:
        raise ValueError(f"A watchlist holds at most {MAX_SYMBOLS} symbols; this one has "
                         f"{len(symbols)}.")
    for symbol in symbols:
        if (not isinstance(symbol, str) or not symbol or len(symbol) > SYMBOL_LIMIT
                or any(c.isspace() or unicodedata.category(c)[0] in "CZ" for c in symbol)):
            shown = repr(symbol)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise ValueError(f"Symbol {shown} is not a symbol: use 1 to {SYMBOL_LIMIT} "
                             "characters without spaces or control characters, e.g. AAPL.")
    return list(symbols)


def _engine(log) -> sa.Engine:
    return default_engine() if log is None else log.engine
