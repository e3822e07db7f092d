"""Schema changes are migrations, run once under a lock; start-up only reads the version.

Processes that open a fresh database together never deadlock and lose no write, on SQLite and
on PostgreSQL (where start-up DDL used to deadlock against concurrent writers).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from store import db
from store.cases import CaseLog
from tests.pg import collect, database, pg_server, process_context, start_processes  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
PROCESSES, EVENTS_EACH = 4, 3


def _events(worker: int) -> pd.DataFrame:
    start = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=worker)
    return pd.DataFrame({"event_id": [f"w{worker}-{i}" for i in range(EVENTS_EACH)],
                         "symbol": "DEMO", "kind": "price_spike", "severity": 0.5,
                         "start": [start + pd.Timedelta(hours=i) for i in range(EVENTS_EACH)],
                         "end": [start + pd.Timedelta(hours=i + 1) for i in range(EVENTS_EACH)]})


def _start_and_write(app_url, admin_url, worker, barrier, results):
    """Worker (a separate process): open the log at the same moment as the others, then write."""
    barrier.wait()
    log = CaseLog(app_url, admin_url=admin_url)
    log.upsert_events(_events(worker), f"analyst{worker}")
    for i in range(EVENTS_EACH):
        log.update(f"w{worker}-{i}", who=f"analyst{worker}", expected_version=1,
                   status="reviewing", note=f"by {worker}")
    log.upsert_events(_events((worker + 1) % PROCESSES), f"analyst{worker}")  # overlaps a peer
    log.close()
    results.put(worker)


def test_processes_opening_a_fresh_database_together_all_write(database):
    app_url, admin_url = database
    ctx = process_context()
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    workers = [ctx.Process(target=_start_and_write, args=(app_url, admin_url, w, barrier, results))
               for w in range(PROCESSES)]
    start_processes(workers)
    done = sorted(collect(results, workers))   # a deadlock would time out here
    assert done == list(range(PROCESSES))

    log = CaseLog(app_url)
    cases = log.list_cases()
    assert len(cases) == PROCESSES * EVENTS_EACH and set(cases["status"]) == {"reviewing"}
    assert (cases["version"] == 2).all()
    check = log.verify_audit()
    assert check.ok and check.rows == PROCESSES * EVENTS_EACH * 3   # new, status, note
    log.close()


def test_start_up_reads_the_version_and_runs_no_ddl(database):
    app_url, admin_url = database
    CaseLog(app_url, admin_url=admin_url).close()        # migrates
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement.strip().split()[0].upper())

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        log = CaseLog(app_url, admin_url=admin_url)
        log.close()
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    assert statements and set(statements) <= {"SELECT", "PRAGMA"}, statements
    assert db.schema_revision(log.engine) == db.head_revision()


@pytest.mark.postgres
@pytest.mark.xdist_group("postgres")
def test_app_role_alone_cannot_create_the_schema(pg_server):
    app_url, admin_url = pg_server.team_database()
    with pytest.raises(RuntimeError, match=r"python -m store\.db .*--grant"):
        CaseLog(app_url)                        # no admin URL: the app role may not create tables
    db.migrate(admin_url, app_role="surveillance_app")
    log = CaseLog(app_url)                      # now the schema is there and granted
    assert log.upsert_events(_events(0), "alice") == EVENTS_EACH
    log.close()


def test_command_line_migrates_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'cases.sqlite'}"
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "store.db", url], cwd=ROOT, text=True,
                              capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"case database at schema {db.head_revision()}"
    assert db.schema_revision(sa.create_engine(url)) == db.head_revision()


def test_the_head_revision_constant_is_alembics_head():
    """``open_engine`` compares against a constant so an up-to-date start never imports Alembic."""
    from alembic.script import ScriptDirectory
    assert db.head_revision() == ScriptDirectory.from_config(db._config(None)).get_current_head()


def test_downgrades_step_back_keeping_cases_and_upgrade_again(database):
    app_url, admin_url = database
    owner = admin_url or app_url
    log = CaseLog(app_url, admin_url=admin_url)
    log.upsert_events(_events(0), "alice")
    log.update("w0-0", who="alice", expected_version=1, status="reviewing", note="")
    log.close()
    engine = sa.create_engine(owner)

    def tables() -> set[str]:
        return set(sa.inspect(engine).get_table_names())

    assert db.migrate(owner, to="0002") == "0002"
    assert not {"alert_rules", "alert_deliveries"} & tables()
    assert db.migrate(owner, to="0001") == "0001"
    assert not {"watchlists", "saved_views"} & tables()
    assert "hash" not in {c["name"] for c in sa.inspect(engine).get_columns("audit")}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM cases")).scalar() == EVENTS_EACH
        audit_rows = conn.execute(sa.text("SELECT count(*) FROM audit")).scalar()
        assert audit_rows == EVENTS_EACH + 1
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit SET who = 'mallory'"))      # still append-only at 0001

    db.migrate(owner, app_role="surveillance_app" if admin_url else None)   # up again: rows chained anew
    log = CaseLog(app_url, admin_url=admin_url)
    check = log.verify_audit()
    assert check.ok and check.rows == audit_rows
    log.update("w0-1", who="bob", expected_version=1, status="dismissed", note="")
    assert log.verify_audit().ok
    log.close()

    assert db.migrate(owner, to="base") == "base"
    assert not {"cases", "audit", "watchlists", "saved_views", "alert_rules"} & tables()
    assert db.migrate(owner, app_role="surveillance_app" if admin_url else None) == db.head_revision()
    engine.dispose()


def test_command_line_downgrades(tmp_path):
    url = f"sqlite:///{tmp_path / 'cases.sqlite'}"
    db.migrate(url)
    done = subprocess.run([sys.executable, "-m", "store.db", url, "--downgrade", "0002"], cwd=ROOT,
                          text=True, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "case database at schema 0002"
    assert db.schema_revision(sa.create_engine(url)) == "0002"
