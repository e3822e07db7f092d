"""Case log: workflow, audit trail, optimistic locking; on SQLite and on a throwaway PostgreSQL."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from store.cases import STATUSES, CaseLog, ConflictError
from tests.pg import collect, database, pg_server, process_context, start_processes  # noqa: F401


@pytest.fixture
def db_url(database):
    return database[0]


@pytest.fixture
def admin_url(database):
    return database[1]


@pytest.fixture
def log(db_url, admin_url):
    case_log = CaseLog(db_url, admin_url=admin_url)
    yield case_log
    case_log.close()


def make_events(rows) -> pd.DataFrame:
    """An events table shaped like detectors.to_events output.

    rows: (event_id, symbol, start, kind, severity)
    """
    frame = pd.DataFrame(rows, columns=["event_id", "symbol", "start", "kind", "severity"])
    frame["start"] = pd.to_datetime(frame["start"], utc=True)
    frame["end"] = frame["start"] + pd.Timedelta(hours=2)
    frame["detectors"] = [["zscore", "pump_dump"]] * len(frame)
    frame["peak_score"] = 4.5
    frame["return_pct"] = [float("nan")] + [1.5] * (len(frame) - 1)
    return frame


EVENTS = make_events([
    ("e1", "BTCUSDT", "2024-01-01 10:00", "volume_surge", 0.9),
    ("e2", "BTCUSDT", "2024-01-03 12:00", "price_spike", 0.6),
    ("e3", "AAPL", "2024-01-09 15:00", "volume_surge", 0.95),
    ("e4", "AAPL", "2024-01-10 15:00", "pump_and_dump", 0.4),
])


def test_upsert_opens_new_cases_with_evidence(log):
    assert log.upsert_events(EVENTS, "alice") == 4
    case = log.get("e1")
    assert case["status"] == "new" and case["version"] == 1
    assert case["start"] == pd.Timestamp("2024-01-01 10:00", tz="UTC")
    assert case["end"] == pd.Timestamp("2024-01-01 12:00", tz="UTC")
    assert case["detectors"] == "zscore, pump_dump"
    assert (case["assignee"], case["tags"], case["note"]) == ("", "", "")
    assert json.loads(case["evidence_json"]) == {"peak_score": 4.5, "return_pct": None}
    assert log.get("nope") is None


def test_lifecycle_and_audit_record_every_change(log):
    log.upsert_events(EVENTS, "alice")
    case = log.update("e1", who="bob", expected_version=1, status="reviewing", assignee="bob")
    assert (case["status"], case["assignee"], case["version"]) == ("reviewing", "bob", 2)
    case = log.update("e1", who="bob", expected_version=2, status="escalated",
                      tags=["insider", " spoofing", "insider"], note="large OTM calls")
    assert case["tags"] == "insider, spoofing" and case["version"] == 3
    version = log.statuses(["e1"])["version"].iloc[0]      # numpy int from a table works too
    case = log.update("e1", who="carol", expected_version=version, status="confirmed")
    assert log.get("e1")["status"] == "confirmed" and case["version"] == 4
    unchanged = log.update("e1", who="carol", expected_version=4, status="confirmed")
    assert unchanged["version"] == 4

    trail = log.audit_trail("e1")
    got = list(trail[["who", "field", "old_value", "new_value"]].itertuples(index=False, name=None))
    assert [tuple(None if pd.isna(v) else v for v in row) for row in got] == [
        ("alice", "status", None, "new"),
        ("bob", "status", "new", "reviewing"),
        ("bob", "assignee", "", "bob"),
        ("bob", "status", "reviewing", "escalated"),
        ("bob", "tags", "", "insider, spoofing"),
        ("bob", "note", "", "large OTM calls"),
        ("carol", "status", "escalated", "confirmed"),
    ]
    assert trail["at"].dt.tz is not None and trail["at"].is_monotonic_increasing


def test_audit_rows_cannot_be_changed(log):
    log.upsert_events(EVENTS, "alice")
    for sql in ("UPDATE audit SET who = 'mallory'", "DELETE FROM audit"):
        # SQLite: the triggers refuse; PostgreSQL: the app role has no such privilege.
        with pytest.raises(sa.exc.DBAPIError, match="append-only|permission denied"):
            with log.engine.begin() as conn:
                conn.execute(sa.text(sql))
    assert set(log.audit_trail("e1")["who"]) == {"alice"}


def test_version_conflict_names_who_and_says_reload(log):
    log.upsert_events(EVENTS, "alice")
    log.update("e2", who="bob", expected_version=1, note="mine")
    with pytest.raises(ConflictError, match=r"changed by bob.*Reload") as caught:
        log.update("e2", who="carol", expected_version=1, status="dismissed")
    assert (caught.value.current_version, caught.value.changed_by) == (2, "bob")
    assert log.get("e2")["status"] == "new"
    assert len(log.audit_trail("e2")) == 2


def test_dismissed_event_stays_dismissed_after_reupsert(log):
    log.upsert_events(EVENTS, "alice")
    log.update("e3", who="bob", expected_version=1, status="dismissed", note="earnings day")
    assert log.upsert_events(EVENTS, "scanner") == 0
    case = log.get("e3")
    assert (case["status"], case["note"], case["version"]) == ("dismissed", "earnings day", 2)
    assert log.statuses(["e3", "e1", "unknown"]).set_index("event_id").to_dict("index") == {
        "e1": {"status": "new", "assignee": "", "note": "", "version": 1},
        "e3": {"status": "dismissed", "assignee": "", "note": "earnings day", "version": 2},
    }


def test_list_cases_filters(log):
    log.upsert_events(EVENTS, "alice")
    log.update("e2", who="bob", expected_version=1, status="escalated")
    ids = lambda frame: list(frame["event_id"])  # noqa: E731
    assert ids(log.list_cases()) == ["e4", "e3", "e2", "e1"]
    assert ids(log.list_cases(status="escalated")) == ["e2"]
    assert ids(log.list_cases(status=["new", "escalated"], symbol="BTCUSDT")) == ["e2", "e1"]
    assert ids(log.list_cases(min_severity=0.9)) == ["e3", "e1"]
    assert ids(log.list_cases(kind="volume_surge", symbol="AAPL")) == ["e3"]
    assert ids(log.list_cases(start="2024-01-01 11:00", end="2024-01-09")) == ["e2", "e1"]
    empty = log.list_cases(status="confirmed")
    assert empty.empty and "version" in empty.columns


def test_compliance_summary_counts(log):
    log.upsert_events(EVENTS, "alice")
    log.update("e1", who="bob", expected_version=1, status="escalated")
    log.update("e3", who="bob", expected_version=1, status="confirmed")
    summary = log.compliance_summary("W")
    week1, week2 = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-08", tz="UTC")
    rows = {(r.period, r.kind): (r.detections, r.high_risk, r.new, r.escalated, r.confirmed)
            for r in summary.itertuples()}
    assert rows == {
        (week1, "price_spike"): (1, 0, 1, 0, 0),
        (week1, "volume_surge"): (1, 1, 0, 1, 0),
        (week2, "pump_and_dump"): (1, 0, 1, 0, 0),
        (week2, "volume_surge"): (1, 1, 0, 0, 1),
    }
    totals = summary.groupby("period")[["detections", "high_risk"]].sum()
    assert totals.loc[week1].tolist() == [2, 1] and totals.loc[week2].tolist() == [2, 1]
    monthly = log.compliance_summary("M")
    assert set(monthly["period"]) == {pd.Timestamp("2024-01-01", tz="UTC")}
    with pytest.raises(ValueError, match="period"):
        log.compliance_summary("fortnight")


def test_bulk_update_checks_each_case_version(log, db_url, monkeypatch):
    log.upsert_events(EVENTS, "alice")
    log.update("e4", who="bob", expected_version=1, status="dismissed")
    other_analyst = CaseLog(db_url)
    real_get = log.get

    def get_then_someone_edits(event_id):
        case = real_get(event_id)
        if event_id == "e2":  # another analyst saves between bulk_update's read and write
            other_analyst.update("e2", who="dave", expected_version=case["version"], note="wait")
        return case

    monkeypatch.setattr(log, "get", get_then_someone_edits)
    counts = log.bulk_update(["e1", "e2", "e4", "missing", "e1"], who="carol", status="dismissed")
    other_analyst.close()
    assert counts == {"updated": 1, "unchanged": 1, "conflicts": 1, "missing": 1}
    assert real_get("e1")["status"] == "dismissed"
    assert (real_get("e2")["status"], real_get("e2")["note"]) == ("new", "wait")


def test_inputs_are_validated(log):
    log.upsert_events(EVENTS, "alice")
    with pytest.raises(ValueError, match="new, reviewing, escalated, dismissed, confirmed"):
        log.update("e1", who="bob", expected_version=1, status="closed")
    with pytest.raises(ValueError, match="who"):
        log.update("e1", who="  ", expected_version=1, status="reviewing")
    with pytest.raises(ValueError, match="who"):
        log.upsert_events(EVENTS, "")
    with pytest.raises(ValueError, match="expected_version"):
        log.update("e1", who="bob", expected_version="1", status="reviewing")
    with pytest.raises(ValueError, match="No case"):
        log.update("zz", who="bob", expected_version=1, status="reviewing")
    with pytest.raises(ValueError, match="severity"):
        log.upsert_events(EVENTS.drop(columns="severity"), "alice")
    with pytest.raises(ValueError, match="choose one of"):
        log.bulk_update(["e1"], who="bob", status="done")
    with pytest.raises(ValueError, match="choose one of"):
        log.list_cases(status="open")
    with pytest.raises(ValueError, match="start or end"):
        log.upsert_events(EVENTS.assign(end=pd.NaT), "alice")
    assert log.upsert_events(EVENTS.iloc[:0], "alice") == 0
    assert len(STATUSES) == 5


@pytest.mark.parametrize("tags", [5, 1.5, b"a,b", {"a": 1}, ["ok", 3], [None]])
def test_tags_that_are_not_text_are_refused_by_name(log, tags):
    log.upsert_events(EVENTS, "alice")
    with pytest.raises(ValueError, match="tags must be text"):
        log.update("e1", who="bob", expected_version=1, tags=tags)
    assert log.get("e1")["version"] == 1


@pytest.mark.parametrize("bounds", [{"start": "not a date"}, {"end": "2024-13-45"}, {"start": []}, {"start": 2024},
                                    {"end": "2024-01-01" * 50}, {"min_severity": "high"},
                                    {"min_severity": float("nan")}])
def test_list_filters_of_the_wrong_kind_say_what_to_pass(log, bounds):
    with pytest.raises(ValueError, match="must be a"):
        log.list_cases(**bounds)


def test_list_window_reads_aware_and_naive_times_alike(log):
    log.upsert_events(EVENTS, "alice")
    assert len(log.list_cases(min_severity=np.float32(0.9))) == len(log.list_cases(min_severity=0.9))
    ids = lambda frame: list(frame["event_id"])  # noqa: E731
    naive = ids(log.list_cases(start="2024-01-01 11:00", end="2024-01-09"))
    assert naive == ids(log.list_cases(start=pd.Timestamp("2024-01-01 12:00", tz="Europe/Paris"),
                                       end=pd.Timestamp("2024-01-09", tz="UTC")))


def test_row_from_an_object_table_is_accepted(log):
    """The dashboard logs one event at a time from a row (``event.to_frame().T``: object dtype)."""
    row = EVENTS.iloc[1].to_frame().T
    assert log.upsert_events(row, who="alice") == 1
    case = log.get("e2")
    assert case["severity"] == 0.6 and case["start"] == pd.Timestamp("2024-01-03 12:00", tz="UTC")


def test_default_log_is_sqlite_in_wal_mode_under_the_data_dir():
    from store import data_dir
    log = CaseLog()
    try:
        assert (data_dir() / "cases.sqlite").exists()
        with log.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
    finally:
        log.close()


def _edit_note_repeatedly(url, who, edits, barrier, results):
    """Worker (a separate process): save ``edits`` notes, reloading after every conflict."""
    log = CaseLog(url)
    conflicts = 0
    barrier.wait()
    for i in range(edits):
        while True:
            case = log.get("e1")
            try:
                log.update("e1", who=who, expected_version=case["version"], note=f"{who}-{i}")
                break
            except ConflictError:
                conflicts += 1
    log.close()
    results.put((who, conflicts))


def test_two_processes_editing_one_case_lose_nothing(log, db_url):
    log.upsert_events(EVENTS, "alice")
    edits = 15
    ctx = process_context()
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_edit_note_repeatedly, args=(db_url, who, edits, barrier, results))
               for who in ("bob", "carol")]
    start_processes(workers)
    outcome = dict(collect(results, workers))
    assert set(outcome) == {"bob", "carol"}

    assert log.get("e1")["version"] == 1 + 2 * edits
    notes = log.audit_trail("e1").query("field == 'note'")
    assert sorted(notes["new_value"]) == sorted(f"{w}-{i}" for w in ("bob", "carol")
                                               for i in range(edits))
    # Every change started from the value the previous change left: nothing was overwritten.
    assert notes["old_value"].tolist() == [""] + notes["new_value"].tolist()[:-1]
    for who in ("bob", "carol"):
        mine = notes[notes["who"] == who]["new_value"].tolist()
        assert mine == [f"{who}-{i}" for i in range(edits)]
