"""Saved Explorer views: a name, who saved it, and the view's parameters as a JSON object.

Stored in the case database (``saved_views``, migration 0002), so a team on PostgreSQL
shares them. Parameters are whatever the Explorer needs to reopen a view - source, symbol,
interval, start, end, detectors, params, thresholds, the selected event id - as plain JSON
values (dates as ISO strings): what is saved is exactly what ``load_view`` returns.

Pass ``log=`` (a ``CaseLog``) to use its database; without it the local default is used.
"""
from __future__ import annotations

import json

import sqlalchemy as sa

from store.db import UtcDateTime, check_name, check_text, default_engine, insert, utc_now

__all__ = ["save_view", "list_views", "load_view", "delete_view", "PARAMS_LIMIT"]

PARAMS_LIMIT = 64 * 1024  # bytes of JSON: a view's settings, not its data

views_table = sa.Table(
    "saved_views", sa.MetaData(),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("analyst", sa.String(128), nullable=False),
    sa.Column("params_json", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)


def save_view(name: str, params: dict, analyst: str, *, log=None) -> None:
    """Save (or replace) a view; replacing keeps its creation time and records the analyst."""
    name = check_name(name, "view")
    if not isinstance(analyst, str) or not analyst.strip():
        raise ValueError("Say who saves the view: pass the analyst's name.")
    analyst = check_text(analyst.strip(), "analyst", 128)
    now = utc_now()
    engine = _engine(log)
    stmt = insert(engine, views_table).values(name=name, analyst=analyst, created_at=now,
                                              updated_at=now, params_json=_params_json(params))
    stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={
        "analyst": stmt.excluded.analyst, "params_json": stmt.excluded.params_json,
        "updated_at": stmt.excluded.updated_at})
    with engine.begin() as conn:
        conn.execute(stmt)


def list_views(*, log=None) -> list[dict]:
    """``name, analyst, created_at, updated_at`` of every saved view, by name."""
    cols = [c for c in views_table.columns if c.name != "params_json"]
    with _engine(log).connect() as conn:
        rows = conn.execute(sa.select(*cols).order_by(views_table.c.name)).all()
    return [dict(row._mapping) for row in rows]


def load_view(name: str, *, log=None) -> dict:
    """The parameters saved under ``name``; ValueError when there is no such view."""
    with _engine(log).connect() as conn:
        text = conn.execute(sa.select(views_table.c.params_json)
                            .where(views_table.c.name == check_name(name, "view"))).scalar()
    if text is None:
        raise ValueError(f"No saved view named {name!r}; pick one from list_views().")
    return json.loads(text)


def delete_view(name: str, *, log=None) -> bool:
    """Delete a view; False when there was none of that name."""
    with _engine(log).begin() as conn:
        return conn.execute(views_table.delete()
                            .where(views_table.c.name == check_name(name, "view"))).rowcount > 0


def _params_json(params) -> str:
    """``params`` as JSON, if it is a dict that survives JSON unchanged and is small enough."""
    if not isinstance(params, dict):
        raise ValueError(f"A view's parameters are a dict, got {type(params).__name__}.")
    try:
        text = json.dumps(params, allow_nan=False, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"A view's parameters must be plain JSON values (str, int, float, "
                         f"bool, None, lists, dicts; dates as ISO strings): {exc}.") from None
    if json.loads(text) != params:
        raise ValueError("A view's parameters must come back unchanged from JSON: use string "
                         "keys and lists (not tuples).")
    size = len(text.encode("utf-8"))
    if size > PARAMS_LIMIT:
        raise ValueError(f"The view's parameters take {size} bytes as JSON; the limit is "
                         f"{PARAMS_LIMIT}. Save settings, not data.")
    return check_text(text, "view parameters", None)


def _engine(log) -> sa.Engine:
    return default_engine() if log is None else log.engine
