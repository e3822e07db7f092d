"""Case log: one row per detected event, an analyst workflow on top, and an append-only audit.

Storage layer, no Streamlit. SQLAlchemy Core on SQLite by default (``store.data_dir()/
cases.sqlite`` in WAL mode, so readers never block the writer) or on PostgreSQL through a
``postgresql+psycopg://`` URL when a team shares one log.

Concurrency is optimistic: every case carries a ``version``; ``update`` changes a case only
``WHERE version = expected_version`` and bumps it, so two analysts editing the same case never
overwrite each other silently - the second gets a ``ConflictError`` and reloads.

The audit is written by database triggers (migration 0002), not by this module, so a change
made with plain SQL is audited and versioned too: one row per changed field (old and new
value), each hash-chained to the one before (``verify_audit``). Audit rows cannot be updated,
deleted or replaced; on PostgreSQL the app connects as a role that cannot even try (see
``store.db``). The schema itself is created and upgraded by ``store.db`` migrations.
"""
from __future__ import annotations

import json
import math
import numbers
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from store.db import audit_at_text, audit_digest, check_text, open_engine

__all__ = ["CaseLog", "ConflictError", "AuditCheck", "STATUSES", "HIGH_RISK_SEVERITY",
           "CASE_COLUMNS", "AUDIT_COLUMNS"]

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
NOTE_LIMIT = 10_000  # characters; a note is free text, but not a document store


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
    sa.Column("updated_by", sa.String(128), nullable=False, default=""),
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
    sa.Column("prev_hash", sa.String(64), nullable=True),
    sa.Column("hash", sa.String(64), nullable=True),
)

CASE_COLUMNS = [c.name for c in cases_table.columns]
AUDIT_COLUMNS = [c.name for c in audit_table.columns]
#: Characters each text column holds (PostgreSQL enforces them; checked here for every backend).
_LIMITS = {c.name: c.type.length for c in cases_table.columns if isinstance(c.type, sa.String)}
_LIMITS["note"] = NOTE_LIMIT


@dataclass(frozen=True)
class AuditCheck:
    """What ``CaseLog.verify_audit`` found: OK, or the first row whose link is broken.

    ``head`` is the newest row's hash: kept somewhere else (a report, a ticket), it also
    shows later whether rows were cut off the end, which no chain can show by itself.
    """

    ok: bool
    rows: int
    broken_id: int | None = None
    problem: str = ""
    head: str = ""

    def __bool__(self) -> bool:
        return self.ok

    @property
    def message(self) -> str:
        if self.ok:
            return f"audit trail intact ({self.rows} rows)"
        return f"audit trail broken at row {self.broken_id}: {self.problem}"


def _now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(timezone.utc))


def _check_who(who: Any) -> str:
    if not isinstance(who, str) or not who.strip():
        raise ValueError("Say who makes the change: pass who= with the analyst's name.")
    return check_text(who.strip(), "who (the analyst's name)", _LIMITS["updated_by"])


def _check_id(event_id: Any) -> str:
    """A lookup key: any length (a longer one just matches nothing), but no NUL."""
    return check_text(event_id, "event_id", None)


def _check_status(status: Any) -> str:
    if status not in STATUSES:
        raise ValueError(f"Unknown status {status!r}; choose one of {', '.join(STATUSES)}.")
    return status


def _tags_text(tags: str | Iterable[str]) -> str:
    """Tags as one comma-separated string, trimmed, without blanks or repeats, order kept."""
    if isinstance(tags, str):
        items = tags.split(",")
    else:
        items = list(tags) if isinstance(tags, Iterable) and not isinstance(tags, (bytes, dict)) else [None]
        if not all(isinstance(t, str) for t in items):
            raise ValueError("tags must be text: one comma-separated string or a list of strings.")
    return ", ".join(dict.fromkeys(t.strip() for t in items if t.strip()))


def _window_time(value: Any, name: str) -> pd.Timestamp:
    """A filter bound as a UTC timestamp (naive read as UTC), or a ValueError that says what to pass."""
    try:  # numbers would read as nanoseconds since 1970; long text is slow to parse (quadratic)
        when = (pd.NaT if isinstance(value, (bool, numbers.Number)) or isinstance(value, str) and len(value) > 64
                else pd.Timestamp(value))
    except (TypeError, ValueError, OverflowError):
        when = pd.NaT
    if pd.isna(when):
        raise ValueError(f"{name} must be a date or time such as 2024-03-01 or 2024-03-01 14:00 UTC.")
    return when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")


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
        ``"postgresql+psycopg://app_role@host/db"`` shares one log in a team.
    admin_url : str, optional
        PostgreSQL: the schema owner's URL, used only to migrate a schema that is behind
        (and to grant the app role in ``url`` its privileges). See ``store.db``.
    """

    def __init__(self, url: str | None = None, *, admin_url: str | None = None):
        # Start-up only reads the schema version; migrations run (once, locked) when behind.
        self.engine = open_engine(url, admin_url=admin_url)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

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
            row = {
                "event_id": str(event["event_id"]), "symbol": str(event["symbol"]),
                "interval": "" if pd.isna(interval) else str(interval),
                "kind": str(event["kind"]), "detectors": _detectors_text(event.get("detectors")),
            }
            for field, value in row.items():
                check_text(value, field, _LIMITS[field])
            rows.append(row | {
                "severity": severity, "start": start, "end": end,
                "evidence_json": json.dumps({c: _plain(event[c]) for c in evidence_cols}),
                "status": "new", "assignee": "", "tags": "", "note": "", "version": 1,
                "created_at": now, "updated_at": now, "updated_by": who,
            })
        insert = (sqlite.insert if self.engine.dialect.name == "sqlite" else postgresql.insert)
        stmt = (insert(cases_table).on_conflict_do_nothing(index_elements=["event_id"])
                .returning(cases_table.c.event_id))
        with self.engine.begin() as conn:  # the insert trigger audits each new case
            return len(list(conn.execute(stmt, rows).scalars()))

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
        event_id = _check_id(event_id)
        try:
            expected_version = operator.index(expected_version)
        except TypeError:
            raise ValueError(f"expected_version is the case's version number as you loaded it "
                             f"(an int), got {expected_version!r}.") from None
        wanted = {"status": None if status is None else _check_status(status),
                  "assignee": None if assignee is None else str(assignee).strip(),
                  "tags": None if tags is None else _tags_text(tags),
                  "note": None if note is None else str(note)}
        for field, value in wanted.items():
            if value is not None:
                check_text(value, field, _LIMITS[field])
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
            # version + 1 and updated_by tell the audit trigger who changed it (migration 0002).
            result = conn.execute(
                cases_table.update()
                .where(cases_table.c.event_id == event_id,
                       cases_table.c.version == expected_version)
                .values(**changes, version=expected_version + 1, updated_at=_now(),
                        updated_by=who))
            if result.rowcount != 1:
                # Someone committed between our read and our write: the version check caught it.
                raise self._conflict(conn, event_id, expected_version, None)
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
        event_id = _check_id(event_id)
        with self.engine.connect() as conn:
            return self._fetch(conn, event_id)

    def statuses(self, event_ids: Iterable[str]) -> pd.DataFrame:
        """``event_id, status, assignee, note, version`` of the logged ones among ``event_ids``.

        Meant to be merged (left join on ``event_id``) into an events table; events not in
        the log are simply absent.
        """
        ids = list(dict.fromkeys(_check_id(str(e)) for e in event_ids))
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
            if isinstance(min_severity, bool) or not isinstance(min_severity, numbers.Real) \
                    or not math.isfinite(min_severity):
                raise ValueError(f"min_severity must be a number (a severity, 0 to 1), got {min_severity!r}.")
            query = query.where(cases_table.c.severity >= float(min_severity))
        if kind is not None:
            query = query.where(cases_table.c.kind == check_text(kind, "kind", None))
        if symbol is not None:
            query = query.where(cases_table.c.symbol == check_text(symbol, "symbol", None))
        if start is not None:
            query = query.where(cases_table.c.end >= _window_time(start, "start"))
        if end is not None:
            query = query.where(cases_table.c.start <= _window_time(end, "end"))
        query = query.order_by(cases_table.c.start.desc(), cases_table.c.event_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return _frame(rows, CASE_COLUMNS, ("start", "end", "created_at", "updated_at"))

    def audit_trail(self, event_id: str) -> pd.DataFrame:
        """Every recorded change of one case, oldest first (columns ``AUDIT_COLUMNS``)."""
        event_id = _check_id(event_id)
        query = (sa.select(audit_table).where(audit_table.c.event_id == event_id)
                 .order_by(audit_table.c.id))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return _frame(rows, AUDIT_COLUMNS, ("at",))

    def verify_audit(self) -> AuditCheck:
        """Recompute the audit's hash chain, oldest row first; report the first broken link.

        A row whose content was edited no longer matches its hash; a row deleted, inserted
        or rewritten with a fresh hash breaks the next row's ``prev_hash``.
        """
        at = audit_at_text(self.engine.dialect.name)
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT id, event_id, {at}, who, field, old_value, new_value, prev_hash, hash "
                "FROM audit ORDER BY id").all()
        prev, prev_id = "", None
        for row in rows:
            row_id, content, (prev_hash, digest) = row[0], row[:7], row[7:]
            if digest is None:
                return AuditCheck(False, len(rows), row_id, "it has no hash (it was written "
                                  "around the audit triggers)", prev)
            if prev_hash != prev:
                before = f"row {prev_id}" if prev_id is not None else "the start of the trail"
                return AuditCheck(False, len(rows), row_id, f"it does not link to {before}: "
                                  "that row was rewritten, or rows between were removed or "
                                  "inserted", prev)
            if audit_digest(prev, *content) != digest:
                return AuditCheck(False, len(rows), row_id, "its content no longer matches its "
                                  "hash: the row was changed", prev)
            prev, prev_id = digest, row_id
        return AuditCheck(True, len(rows), head=prev)

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


def _frame(rows, columns: list[str], time_columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    for col in time_columns:
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame
