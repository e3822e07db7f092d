"""Case log: one row per detected event, an analyst workflow on top, and an append-only audit.

Storage layer, no Streamlit. SQLAlchemy Core on SQLite by default (``store.data_dir()/
cases.sqlite`` in WAL mode, so readers never block the writer) or on PostgreSQL through a
``postgresql+psycopg://`` URL when a team shares one log.

Concurrency is optimistic: every case carries a ``version``; ``update`` changes a case only
``WHERE version = expected_version`` and bumps it, so two analysts editing the same case never
overwrite each other silently - the second gets a ``ConflictError`` and reloads. Every change
appends one audit row per field (old and new value). Nothing in this module updates or deletes
audit rows, and database triggers refuse it for anyone else.
"""
from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from store import data_dir

__all__ = ["CaseLog", "ConflictError", "STATUSES", "HIGH_RISK_SEVERITY", "CASE_COLUMNS",
           "AUDIT_COLUMNS"]

STATUSES = ("new", "reviewing", "escalated", "dismissed", "confirmed")
#: Severity above which a case counts as high risk in the compliance summary (SEED_FACTS D).
HIGH_RISK_SEVERITY = 0.85

#: Event columns stored in their own case columns; every other event column goes to evidence.
_CASE_FIELDS = ("event_id", "symbol", "interval", "kind", "severity", "start", "end", "detectors")
#: Columns an events table gets from the case log or the explainer: never stored as evidence.
_NOT_EVIDENCE = ("status", "assignee", "tags", "note", "version", "explanation",
                 "explanation_source", "created_at", "updated_at")
_REQUIRED = ("event_id", "symbol", "start", "end", "kind", "severity")
_EDITABLE = ("status", "assignee", "tags", "note")
_PG_LOCK_ID = 7_341_905_112  # advisory lock held while creating the schema on PostgreSQL


class ConflictError(RuntimeError):
    """Somebody changed the case since you loaded it; reload it and apply your change again."""

    def __init__(self, message: str, *, event_id: str, expected_version: int,
                 current_version: int | None, changed_by: str | None):
        super().__init__(message)
        self.event_id = event_id
        self.expected_version = expected_version
        self.current_version = current_version
        self.changed_by = changed_by


class _UtcDateTime(sa.TypeDecorator):
    """Timestamps stored in UTC and always read back tz-aware (SQLite keeps no time zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        out = ts.to_pydatetime()
        return out.replace(tzinfo=None) if dialect.name == "sqlite" else out

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        ts = pd.Timestamp(value)
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


_metadata = sa.MetaData()

cases_table = sa.Table(
    "cases", _metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("interval", sa.String(16), nullable=False, default=""),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("severity", sa.Float, nullable=False),
    sa.Column("start", _UtcDateTime, nullable=False),
    sa.Column("end", _UtcDateTime, nullable=False),
    sa.Column("detectors", sa.String(256), nullable=False, default=""),
    sa.Column("evidence_json", sa.Text, nullable=False, default="{}"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("assignee", sa.String(128), nullable=False, default=""),
    sa.Column("tags", sa.String(512), nullable=False, default=""),
    sa.Column("note", sa.Text, nullable=False, default=""),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", _UtcDateTime, nullable=False),
    sa.Column("updated_at", _UtcDateTime, nullable=False),
    sa.Index("ix_cases_status", "status"),
    sa.Index("ix_cases_start", "start"),
)

audit_table = sa.Table(
    "audit", _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("at", _UtcDateTime, nullable=False),
    sa.Column("who", sa.String(128), nullable=False),
    sa.Column("field", sa.String(32), nullable=False),
    sa.Column("old_value", sa.Text, nullable=True),
    sa.Column("new_value", sa.Text, nullable=True),
    sa.Index("ix_audit_event_id", "event_id"),
)

CASE_COLUMNS = [c.name for c in cases_table.columns]
AUDIT_COLUMNS = [c.name for c in audit_table.columns]

_SQLITE_AUDIT_TRIGGERS = [
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END",
]
_PG_AUDIT_FUNCTION = (
    "CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit rows are append-only'; END $$")
_PG_AUDIT_TRIGGERS = {
    "audit_no_change": "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit "
                       "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
    "audit_no_truncate": "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
                         "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
}


def _now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(timezone.utc))


def _check_who(who: Any) -> str:
    if not isinstance(who, str) or not who.strip():
        raise ValueError("Say who makes the change: pass who= with the analyst's name.")
    return who.strip()


def _check_status(status: Any) -> str:
    if status not in STATUSES:
        raise ValueError(f"Unknown status {status!r}; choose one of {', '.join(STATUSES)}.")
    return status


def _tags_text(tags: str | Iterable[str]) -> str:
    """Tags as one comma-separated string, trimmed, without blanks or repeats, order kept."""
    items = tags.split(",") if isinstance(tags, str) else [str(t) for t in tags]
    return ", ".join(dict.fromkeys(t.strip() for t in items if t.strip()))


def _plain(value: Any) -> Any:
    """A JSON-ready copy of an evidence value (numpy scalars, timestamps, NaN -> None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return [_plain(v) for v in list(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (pd.Timestamp, datetime)):
        return pd.Timestamp(value).isoformat()
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    return str(value)


def _detectors_text(value: Any) -> str:
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return ", ".join(str(v) for v in value)
    return "" if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)) else str(value)


class CaseLog:
    """The case log.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL. None means the local SQLite file ``store.data_dir()/cases.sqlite``;
        ``"postgresql+psycopg://user@host/db"`` shares one log in a team.
    """

    def __init__(self, url: str | None = None):
        if url is None:
            url = f"sqlite:///{data_dir() / 'cases.sqlite'}"
        self.engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        elif self.engine.dialect.name != "postgresql":
            raise ValueError(f"The case log runs on SQLite or PostgreSQL, not "
                             f"{self.engine.dialect.name}; use a postgresql+psycopg:// URL.")
        self._create_schema()

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def _create_schema(self) -> None:
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                # Two processes opening a fresh database at once would race on CREATE TABLE.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_ID})
            for table in _metadata.sorted_tables:
                conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
                for index in table.indexes:
                    conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
            if self.engine.dialect.name == "sqlite":
                for ddl in _SQLITE_AUDIT_TRIGGERS:
                    conn.exec_driver_sql(ddl)
            else:
                conn.exec_driver_sql(_PG_AUDIT_FUNCTION)
                existing = set(conn.execute(sa.text(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit'::regclass")).scalars())
                for name, ddl in _PG_AUDIT_TRIGGERS.items():
                    if name not in existing:
                        conn.exec_driver_sql(ddl)

    # ---- writing -------------------------------------------------------------------------

    def upsert_events(self, events_df: pd.DataFrame, who: str) -> int:
        """Open a case (status "new", version 1) for each event not logged yet.

        Events already in the log are left exactly as they are - status, notes and the
        evidence as first logged - so an event the detectors find again after it was
        dismissed stays dismissed (event ids are stable). Returns the number of new cases.
        """
        who = _check_who(who)
        if not isinstance(events_df, pd.DataFrame):
            raise ValueError("Pass the events table (a DataFrame from detectors.to_events).")
        missing = [c for c in _REQUIRED if c not in events_df.columns]
        if missing:
            raise ValueError(f"The events table lacks the column(s) {', '.join(missing)}; "
                             "pass the table from detectors.to_events.")
        if events_df.empty:
            return 0
        events = events_df.drop_duplicates("event_id", keep="last")
        starts = pd.to_datetime(events["start"], utc=True)
        ends = pd.to_datetime(events["end"], utc=True)
        if starts.isna().any() or ends.isna().any():
            raise ValueError("Some events have no start or end time; every event needs both.")
        starts, ends = starts.tolist(), ends.tolist()
        severities = pd.to_numeric(events["severity"], errors="coerce").fillna(0.0).tolist()
        evidence_cols = [c for c in events.columns if c not in _CASE_FIELDS + _NOT_EVIDENCE]
        default_interval = str(events_df.attrs.get("interval", ""))
        now = _now()
        rows = []
        for event, start, end, severity in zip(events.to_dict("records"), starts, ends, severities):
            interval = event.get("interval", default_interval)
            rows.append({
                "event_id": str(event["event_id"]), "symbol": str(event["symbol"]),
                "interval": "" if pd.isna(interval) else str(interval),
                "kind": str(event["kind"]), "severity": severity, "start": start, "end": end,
                "detectors": _detectors_text(event.get("detectors")),
                "evidence_json": json.dumps({c: _plain(event[c]) for c in evidence_cols}),
                "status": "new", "assignee": "", "tags": "", "note": "", "version": 1,
                "created_at": now, "updated_at": now,
            })
        insert = (sqlite.insert if self.engine.dialect.name == "sqlite" else postgresql.insert)
        stmt = (insert(cases_table).on_conflict_do_nothing(index_elements=["event_id"])
                .returning(cases_table.c.event_id))
        with self.engine.begin() as conn:
            created = list(conn.execute(stmt, rows).scalars())
            if created:
                conn.execute(audit_table.insert(), [
                    {"event_id": e, "at": now, "who": who, "field": "status",
                     "old_value": None, "new_value": "new"} for e in created])
        return len(created)

    def update(self, event_id: str, *, who: str, expected_version: int, status: str | None = None,
               assignee: str | None = None, tags: str | Iterable[str] | None = None,
               note: str | None = None) -> dict:
        """Change a case if nobody else changed it since you read ``expected_version``.

        Fields left as None stay as they are; pass "" to clear assignee, tags or note. Each
        changed field is appended to the audit with its old and new value, in the same
        transaction as the change. Returns the case after the change (unchanged when every
        field already had the given value). Raises ConflictError when the case's version is
        no longer ``expected_version``, ValueError for an unknown case, status or empty who.
        """
        who = _check_who(who)
        try:
            expected_version = operator.index(expected_version)
        except TypeError:
            raise ValueError(f"expected_version is the case's version number as you loaded it "
                             f"(an int), got {expected_version!r}.") from None
        wanted = {"status": None if status is None else _check_status(status),
                  "assignee": None if assignee is None else str(assignee).strip(),
                  "tags": None if tags is None else _tags_text(tags),
                  "note": None if note is None else str(note)}
        with self.engine.begin() as conn:
            current = self._fetch(conn, event_id)
            if current is None:
                raise ValueError(f"No case for event {event_id!r}; log the event first "
                                 "(CaseLog.upsert_events).")
            if current["version"] != expected_version:
                raise self._conflict(conn, event_id, expected_version, current["version"])
            changes = {f: v for f, v in wanted.items() if v is not None and v != current[f]}
            if not changes:
                return current
            now = _now()
            result = conn.execute(
                cases_table.update()
                .where(cases_table.c.event_id == event_id,
                       cases_table.c.version == expected_version)
                .values(**changes, version=expected_version + 1, updated_at=now))
            if result.rowcount != 1:
                # Someone committed between our read and our write: the version check caught it.
                raise self._conflict(conn, event_id, expected_version, None)
            conn.execute(audit_table.insert(), [
                {"event_id": event_id, "at": now, "who": who, "field": f,
                 "old_value": current[f], "new_value": v} for f, v in changes.items()])
            return self._fetch(conn, event_id)

    def bulk_update(self, event_ids: Iterable[str], *, who: str, status: str) -> dict[str, int]:
        """Set ``status`` on many cases, each with its own version check.

        A case changed by someone else between this call's read and write is not
        overwritten; it is counted in "conflicts" (reload and decide again). Returns counts
        ``{"updated", "unchanged", "conflicts", "missing"}``.
        """
        who = _check_who(who)
        _check_status(status)
        counts = {"updated": 0, "unchanged": 0, "conflicts": 0, "missing": 0}
        for event_id in dict.fromkeys(event_ids):
            case = self.get(event_id)
            if case is None:
                counts["missing"] += 1
            elif case["status"] == status:
                counts["unchanged"] += 1
            else:
                try:
                    self.update(event_id, who=who, expected_version=case["version"], status=status)
                    counts["updated"] += 1
                except ConflictError:
                    counts["conflicts"] += 1
        return counts

    # ---- reading -------------------------------------------------------------------------

    def get(self, event_id: str) -> dict | None:
        """The case as a dict of its columns (``start``/``end`` tz-aware UTC), or None."""
        with self.engine.connect() as conn:
            return self._fetch(conn, event_id)

    def statuses(self, event_ids: Iterable[str]) -> pd.DataFrame:
        """``event_id, status, assignee, note, version`` of the logged ones among ``event_ids``.

        Meant to be merged (left join on ``event_id``) into an events table; events not in
        the log are simply absent.
        """
        ids = list(dict.fromkeys(str(e) for e in event_ids))
        cols = ["event_id", "status", "assignee", "note", "version"]
        rows: list = []
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):  # stay under the database's bound-parameter limit
                chunk = ids[i:i + 500]
                rows += conn.execute(sa.select(*(cases_table.c[c] for c in cols))
                                     .where(cases_table.c.event_id.in_(chunk))).all()
        return pd.DataFrame([tuple(r) for r in rows], columns=cols).astype({"version": "int64"})

    def list_cases(self, status: str | Iterable[str] | None = None,
                   min_severity: float | None = None, kind: str | None = None,
                   symbol: str | None = None, start: Any = None, end: Any = None) -> pd.DataFrame:
        """Cases matching every filter given, newest event first.

        ``status`` is one status or several; ``start``/``end`` keep cases whose event
        overlaps that window (naive times are read as UTC). Columns are ``CASE_COLUMNS``.
        """
        query = sa.select(cases_table)
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            query = query.where(cases_table.c.status.in_([_check_status(s) for s in wanted]))
        if min_severity is not None:
            query = query.where(cases_table.c.severity >= float(min_severity))
        if kind is not None:
            query = query.where(cases_table.c.kind == kind)
        if symbol is not None:
            query = query.where(cases_table.c.symbol == symbol)
        if start is not None:
            query = query.where(cases_table.c.end >= start)
        if end is not None:
            query = query.where(cases_table.c.start <= end)
        query = query.order_by(cases_table.c.start.desc(), cases_table.c.event_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return _frame(rows, CASE_COLUMNS, ("start", "end", "created_at", "updated_at"))

    def audit_trail(self, event_id: str) -> pd.DataFrame:
        """Every recorded change of one case, oldest first (columns ``AUDIT_COLUMNS``)."""
        query = (sa.select(audit_table).where(audit_table.c.event_id == event_id)
                 .order_by(audit_table.c.id))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return _frame(rows, AUDIT_COLUMNS, ("at",))

    def compliance_summary(self, period: str = "W") -> pd.DataFrame:
        """Counts per period and event kind, for a compliance report.

        Periods follow the event's start (when the market activity happened), in pandas
        period codes ("D", "W", "M", "Q", "Y"). One row per (period, kind) that has cases:
        ``period`` (start of the period, UTC), ``kind``, ``detections``, ``high_risk``
        (severity > 0.85), and one count column per status (``new`` ... ``confirmed``).
        Totals per period: ``summary.groupby("period").sum(numeric_only=True)``.
        """
        cols = ["period", "kind", "detections", "high_risk", *STATUSES]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(cases_table.c.start, cases_table.c.kind,
                                          cases_table.c.severity, cases_table.c.status)).all()
        try:
            pd.Period("2024-01-01", freq=period)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"Unknown period {period!r}; use D, W, M, Q or Y.") from exc
        if not rows:
            return pd.DataFrame(columns=cols)
        cases = pd.DataFrame([tuple(r) for r in rows], columns=["start", "kind", "severity", "status"])
        starts = pd.to_datetime(cases["start"], utc=True).dt.tz_localize(None)
        cases["period"] = starts.dt.to_period(period).dt.start_time.dt.tz_localize("UTC")
        cases["high_risk"] = cases["severity"] > HIGH_RISK_SEVERITY
        for s in STATUSES:
            cases[s] = cases["status"] == s
        out = (cases.groupby(["period", "kind"])
               .agg(detections=("status", "size"), high_risk=("high_risk", "sum"),
                    **{s: (s, "sum") for s in STATUSES})
               .reset_index())
        return out[cols].astype({c: "int64" for c in cols[2:]})

    # ---- helpers -------------------------------------------------------------------------

    @staticmethod
    def _fetch(conn, event_id: str) -> dict | None:
        row = conn.execute(sa.select(cases_table)
                           .where(cases_table.c.event_id == event_id)).first()
        return None if row is None else dict(row._mapping)

    @staticmethod
    def _conflict(conn, event_id: str, expected: int, current: int | None) -> ConflictError:
        last = conn.execute(sa.select(audit_table.c.who, audit_table.c.at)
                            .where(audit_table.c.event_id == event_id)
                            .order_by(audit_table.c.id.desc()).limit(1)).first()
        who, at = (last.who, last.at) if last is not None else ("someone", None)
        when = f" at {at:%Y-%m-%d %H:%M:%S} UTC" if at is not None else ""
        now = f"it is now at version {current}" if current is not None else "it has a newer version"
        return ConflictError(
            f"Case {event_id} was changed by {who}{when} after you loaded it (you had version "
            f"{expected}; {now}). Reload the case, check their change, and apply yours again.",
            event_id=event_id, expected_version=expected, current_version=current, changed_by=who)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the dashboard read while another process writes; busy_timeout makes a writer
    # wait for the lock instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _frame(rows, columns: list[str], time_columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    for col in time_columns:
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame
