"""The audit trail holds against every SQL path the app's connection has, and shows tampering.

On SQLite and on PostgreSQL (an owner role migrates, the app connects as a separate role).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import db
from store.cases import CaseLog, ConflictError
from tests.pg import database, pg_server  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent
EVENTS = pd.DataFrame({
    "event_id": ["e1", "e2", "e3"], "symbol": ["AAPL", "AAPL", "BTCUSDT"],
    "start": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 10:00", "2024-01-03 10:00"], utc=True),
    "kind": ["volume_surge", "price_spike", "pump_and_dump"], "severity": [0.9, 0.5, 0.7]})
EVENTS["end"] = EVENTS["start"] + pd.Timedelta(hours=1)
ONCE = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def log(database):
    app_url, admin_url = database
    case_log = CaseLog(app_url, admin_url=admin_url)
    case_log.upsert_events(EVENTS, "alice")
    case_log.update("e1", who="bob", expected_version=1, status="reviewing", note="look")
    yield case_log
    case_log.close()


@pytest.fixture
def owner(log, database):
    """A connection that may tamper: the owner with triggers off (PostgreSQL), or the app's own
    connection with the triggers dropped (SQLite, where nothing stops a file's user)."""
    engine = sa.create_engine(database[1]) if database[1] else log.engine
    with engine.begin() as conn:
        if database[1]:
            conn.exec_driver_sql("ALTER TABLE audit DISABLE TRIGGER USER")
        else:
            for name in ("audit_no_update", "audit_no_delete", "audit_no_reinsert"):
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
    yield engine
    if database[1]:
        engine.dispose()


def test_sqlite_replace_cannot_overwrite_an_audit_row(tmp_path):
    log = CaseLog(f"sqlite:///{tmp_path / 'c.sqlite'}")
    log.upsert_events(EVENTS, "alice")
    before = log.audit_trail("e1")
    for verb in ("INSERT OR REPLACE INTO", "REPLACE INTO", "INSERT OR IGNORE INTO", "INSERT INTO"):
        with pytest.raises(sa.exc.IntegrityError, match="append-only"):
            with log.engine.begin() as conn:
                conn.exec_driver_sql(f"{verb} audit (id, event_id, at, who, field) "
                                     "VALUES (1, 'e1', '2024-01-01 00:00:00', 'mallory', 'status')")
    with pytest.raises(sa.exc.IntegrityError, match="append-only"):
        with log.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE OR REPLACE audit SET id = 2 WHERE id = 1")
    pd.testing.assert_frame_equal(log.audit_trail("e1"), before)
    assert log.verify_audit().ok
    log.close()


def test_direct_sql_on_cases_is_audited_and_versioned(log):
    with log.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE cases SET note = 'quiet fix', status = 'dismissed' "
                             "WHERE event_id = 'e2'")
    case = log.get("e2")
    assert (case["status"], case["note"], case["version"]) == ("dismissed", "quiet fix", 2)
    assert case["updated_by"].startswith("(direct SQL")
    trail = log.audit_trail("e2")[["who", "field", "old_value", "new_value"]].iloc[1:]
    assert list(trail["field"]) == ["status", "note"]
    assert trail["who"].str.startswith("(direct SQL").all()
    assert list(trail["new_value"]) == ["dismissed", "quiet fix"]
    with pytest.raises(ConflictError):   # an analyst holding version 1 must reload first
        log.update("e2", who="carol", expected_version=1, status="escalated")
    # Columns the app never edits are audited too, and the chain stays whole.
    with log.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE cases SET severity = 0.1 WHERE event_id = 'e3'")
    assert log.audit_trail("e3")["field"].tolist() == ["status", "severity"]
    assert log.verify_audit().ok


def test_cases_cannot_be_deleted_renamed_or_replaced(log, database):
    for sql in ("DELETE FROM cases WHERE event_id = 'e1'",
                "UPDATE cases SET event_id = 'e9' WHERE event_id = 'e1'"):
        with pytest.raises(sa.exc.DBAPIError, match="never|permission denied"):
            with log.engine.begin() as conn:
                conn.exec_driver_sql(sql)
    if database[1] is None:  # SQLite's REPLACE would delete the case without a delete trigger
        with log.engine.begin() as conn:
            conn.exec_driver_sql("REPLACE INTO cases SELECT * FROM cases WHERE event_id = 'e1'")
            conn.exec_driver_sql("UPDATE cases SET symbol = 'X' WHERE 0")
    assert log.get("e1")["note"] == "look" and len(log.audit_trail("e1")) == 3


@pytest.mark.postgres
@pytest.mark.xdist_group("postgres")
def test_app_role_can_neither_change_nor_disable_the_audit(pg_server):
    app_url, admin_url = pg_server.team_database()
    log = CaseLog(app_url, admin_url=admin_url)
    log.upsert_events(EVENTS, "alice")
    for sql in ("UPDATE audit SET who = 'mallory'", "DELETE FROM audit", "TRUNCATE audit",
                "INSERT INTO audit (event_id, at, who, field) VALUES ('e1', now(), 'm', 'note')",
                "ALTER TABLE audit DISABLE TRIGGER USER", "DROP TRIGGER audit_no_change ON audit",
                "DROP TABLE audit", "TRUNCATE cases", "DELETE FROM cases",
                "ALTER TABLE cases DISABLE TRIGGER cases_audited",
                "SET session_replication_role = replica"):
        with pytest.raises(sa.exc.DBAPIError, match="permission denied|must be owner"):
            with log.engine.begin() as conn:
                conn.exec_driver_sql(sql)
    with log.engine.connect() as conn:
        owner = conn.exec_driver_sql("SELECT tableowner FROM pg_tables WHERE tablename = 'audit'")
        assert owner.scalar() == "surveillance_owner"
    with pytest.raises(sa.exc.DBAPIError, match="READ COMMITTED"):  # a stale snapshot would fork
        with log.engine.begin() as conn:                            # the chain: refused
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.exec_driver_sql("UPDATE cases SET note = 'x' WHERE event_id = 'e1'")
    assert len(log.audit_trail("e1")) == 1 and log.verify_audit().ok
    log.close()


@pytest.mark.parametrize("tamper, broken, problem", [
    ("UPDATE audit SET who = 'mallory' WHERE id = {2}", 2, "content no longer matches"),
    ("UPDATE audit SET new_value = 'confirmed' WHERE id = {2}", 2, "content no longer matches"),
    ("UPDATE audit SET at = at + interval '1 second' WHERE id = {3}", 3, "content"),
    ("DELETE FROM audit WHERE id = {2}", 3, "does not link to row 1"),
    ("DELETE FROM audit WHERE id = {1}", 2, "does not link to the start"),
    ("UPDATE audit SET hash = NULL WHERE id = {4}", 4, "no hash"),
    ("REHASH 2", 3, "does not link to row 2"),
])
def test_verify_audit_names_the_first_broken_link(log, owner, tamper, broken, problem):
    with log.engine.connect() as conn:
        ids = conn.exec_driver_sql("SELECT id FROM audit ORDER BY id").scalars().all()
    assert log.verify_audit().ok and log.verify_audit().rows == len(ids) == 5
    sqlite = log.engine.dialect.name == "sqlite"
    if sqlite:
        tamper = tamper.replace("at + interval '1 second'", "datetime(at, '+1 second')")
    with owner.begin() as conn:
        if tamper.startswith("REHASH"):   # rewrite a row and give it a matching hash
            row_id = ids[int(tamper.split()[1]) - 1]
            row = conn.exec_driver_sql(
                f"SELECT id, event_id, {db.audit_at_text(log.engine.dialect.name)}, who, field, "
                f"old_value, 'forged', prev_hash FROM audit WHERE id = {row_id}").one()
            digest = db.audit_digest(row[-1], *row[:-1])
            conn.exec_driver_sql(f"UPDATE audit SET new_value = 'forged', hash = '{digest}' "
                                 f"WHERE id = {row_id}")
        else:
            conn.exec_driver_sql(tamper.format(None, *ids))
    check = log.verify_audit()
    assert not check.ok and check.broken_id == ids[broken - 1]
    assert problem.replace("row 1", f"row {ids[0]}").replace("row 2", f"row {ids[1]}") in check.problem
    assert f"broken at row {ids[broken - 1]}" in check.message


@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=140)
       | st.text(alphabet="ab\x00\n\u00e9\U0001f600", max_size=12))
@ONCE
def test_text_is_stored_exactly_or_refused_with_a_value_error(log, text):
    """NUL or too long: a ValueError naming the field and the limit, never a DataError."""
    version = log.get("e3")["version"]
    try:
        case = log.update("e3", who="bob", expected_version=version, assignee=text.strip(),
                          note=text)
    except ValueError as exc:
        assert ("\x00" in text and "NUL" in str(exc)) or (
            len(text.strip()) > 128 and "assignee" in str(exc) and "128" in str(exc))
    else:
        assert (case["note"], case["assignee"]) == (text, text.strip())
    assert log.verify_audit().ok   # the database's digest matches Python's for any text


def test_over_long_and_nul_values_name_field_and_limit(log):
    cases = [
        (lambda: log.update("e1", who="x" * 129, expected_version=2, note="n"), "who.*128"),
        (lambda: log.update("e1", who="bob", expected_version=2, tags="t" * 513), "tags.*512"),
        (lambda: log.update("e1", who="bob", expected_version=2, note="n" * 10_001), "note.*10000"),
        (lambda: log.upsert_events(EVENTS.assign(event_id="x" * 129), "a"), "event_id.*128"),
        (lambda: log.upsert_events(EVENTS.assign(symbol="S" * 65), "a"), "symbol.*64"),
        (lambda: log.upsert_events(EVENTS.assign(kind="k\x00"), "a"), "kind.*NUL"),
        (lambda: log.get("e\x00"), "event_id.*NUL"),
        (lambda: log.list_cases(symbol="A\x00"), "symbol.*NUL"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_a_pre_migration_database_is_adopted_and_chained(database):
    """A log created before migrations (tables, no alembic_version) keeps its rows and history."""
    from alembic import command
    app_url, admin_url = database
    engine = db._engine(admin_url or app_url)
    with engine.begin() as conn:
        command.upgrade(db._config(conn), "0001")
        conn.exec_driver_sql("DROP TABLE alembic_version")
        conn.exec_driver_sql(
            "INSERT INTO cases VALUES ('old', 'AAPL', '1h', 'price_spike', 0.8, "
            "'2024-01-01 10:00:00.000000', '2024-01-01 11:00:00.000000', 'zscore', '{}', "
            "'escalated', '', '', 'legacy', 2, '2024-01-02 10:00:00.000000', "
            "'2024-01-02 10:00:00.000000')")
        conn.exec_driver_sql(
            "INSERT INTO audit (event_id, at, who, field, old_value, new_value) VALUES "
            "('old', '2024-01-02 10:00:00.000000', 'ann', 'status', NULL, 'new'), "
            "('old', '2024-01-02 11:00:00.000000', 'ann', 'status', 'new', 'escalated')")
    engine.dispose()
    if admin_url:  # the legacy tables belong to the owner; the app role only reads and writes
        pg_grant = db._engine(admin_url)
        db.migrate(pg_grant, app_role=sa.make_url(app_url).username)
        pg_grant.dispose()
    log = CaseLog(app_url, admin_url=admin_url)
    assert db.schema_revision(log.engine) == db.head_revision()
    assert log.verify_audit().ok and log.verify_audit().rows == 2
    log.update("old", who="bob", expected_version=2, status="confirmed")
    trail = log.audit_trail("old")
    assert trail["who"].tolist() == ["ann", "ann", "bob"] and log.verify_audit().rows == 3
    assert log.verify_audit().ok
    log.close()


def test_cases_page_shows_the_audit_check(monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])  # AppTest replaces it
    log = CaseLog()   # the page's default log: SQLite in this test's data folder
    log.upsert_events(EVENTS, "alice")
    at = AppTest.from_file(str(ROOT / "app_pages" / "cases.py"), default_timeout=60)
    at.secrets["test"] = "1"
    at.run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Audit trail intact (3 rows)"]
    with log.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_no_update")
        conn.exec_driver_sql("UPDATE audit SET who = '**mallory**' WHERE id = 2")
    at.run()
    assert not at.success and len(at.error) == 1
    assert at.error[0].value.startswith("Audit trail broken at row 2: its content")
    log.close()
