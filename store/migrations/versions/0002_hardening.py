"""Hardening: a hash-chained audit written by triggers, cases guarded; watchlists and saved views.

- Every audit row carries ``prev_hash`` and ``hash = audit_digest(prev_hash, row...)``;
  existing rows are chained here, oldest first.
- Triggers on ``cases`` audit every change, whoever makes it (the app, a SQL shell), and bump
  the version of an UPDATE that did not, so optimistic locking sees direct edits too. The app
  declares itself by setting ``updated_by`` and ``version = old + 1``; anything else is
  recorded as "(direct SQL)". Cases are never deleted, their event_id never changes, and a
  re-insert (SQLite ``REPLACE``) of an existing case is ignored.
- Audit rows cannot be updated, deleted, or re-inserted over an existing id (SQLite's
  ``REPLACE`` deletes without firing delete triggers, hence the BEFORE INSERT check).
- On PostgreSQL the audit is written by a SECURITY DEFINER trigger as the owner, so the app
  role needs no privilege on it beyond SELECT; a chain lock orders concurrent writers.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

from store.db import audit_at_text, audit_digest

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHAIN_LOCK = 7_341_905_114  # pg_advisory_xact_lock key: one audit writer at a time
FIELDS = ("status", "assignee", "tags", "note", "symbol", "interval", "kind", "severity",
          "start", "end", "detectors", "evidence_json")
_TZ = sa.DateTime(timezone=True)
_ABORT = "BEGIN SELECT RAISE(ABORT, '{}'); END"
_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"   # the text SQLAlchemy writes


def upgrade() -> None:
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    for name in (("audit_no_update", "audit_no_delete") if sqlite else ()):
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    if not sqlite:
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_no_change ON audit")
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_no_truncate ON audit")
    op.add_column("cases", sa.Column("updated_by", sa.String(128), nullable=False,
                                     server_default=""))
    op.add_column("audit", sa.Column("prev_hash", sa.String(64), nullable=True))
    op.add_column("audit", sa.Column("hash", sa.String(64), nullable=True))
    _chain_existing_rows(conn)
    for ddl in (_sqlite_triggers() if sqlite else _postgres_triggers(conn)):
        conn.exec_driver_sql(ddl)
    op.create_table(
        "watchlists",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("symbols_json", sa.Text, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False))
    op.create_table(
        "saved_views",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("analyst", sa.String(128), nullable=False),
        sa.Column("params_json", sa.Text, nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False))


def downgrade() -> None:
    """Back to 0001: cases and audit rows are kept, the hash chain, the case guards, watchlists
    and saved views are dropped; audit rows stay append-only (0001's triggers). Upgrading
    again chains the rows anew. Needs SQLite 3.35+ (ALTER TABLE DROP COLUMN)."""
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for name in ("audit_no_reinsert", "cases_no_delete", "cases_keep_id", "cases_no_replace",
                     "cases_audit_insert", "cases_audit_update"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    else:
        for name in ("cases_no_delete", "cases_no_truncate", "cases_versioned", "cases_audited"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON cases")
        for function in ("cases_keep()", "cases_version()", "cases_audit()",
                         "audit_digest(text, VARIADIC text[])"):
            conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {function}")
    for table, column in (("audit", "hash"), ("audit", "prev_hash"), ("cases", "updated_by")):
        conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
    op.drop_table("saved_views")
    op.drop_table("watchlists")


def _chain_existing_rows(conn) -> None:
    rows = conn.exec_driver_sql(
        f"SELECT id, event_id, {audit_at_text(conn.dialect.name)}, who, field, old_value, "
        "new_value FROM audit ORDER BY id").all()
    prev, links = "", []
    for row in rows:
        digest = audit_digest(prev, *row)
        links.append({"id": row[0], "prev": prev, "hash": digest})
        prev = digest
    if links:
        conn.execute(sa.text("UPDATE audit SET prev_hash = :prev, hash = :hash WHERE id = :id"),
                     links)


def _sqlite_audit_row(field: str, old: str, new: str, who: str, when: str = "") -> str:
    return (
        "INSERT INTO audit (id, event_id, at, who, field, old_value, new_value, prev_hash, hash) "
        f"SELECT n.id, NEW.event_id, n.at, n.who, '{field}', {old}, {new}, n.prev, "
        f"audit_digest(n.prev, n.id, NEW.event_id, n.at, n.who, '{field}', {old}, {new}) "
        "FROM (SELECT (SELECT coalesce(max(id), 0) + 1 FROM audit) AS id, "
        f"{_NOW} AS at, {who} AS who, "
        "coalesce((SELECT hash FROM audit ORDER BY id DESC LIMIT 1), '') AS prev) AS n"
        f"{when};")


def _sqlite_triggers() -> list[str]:
    who = "CASE WHEN NEW.version = OLD.version + 1 THEN NEW.updated_by ELSE '(direct SQL)' END"
    audit_changes = " ".join(
        _sqlite_audit_row(f, f'CAST(OLD."{f}" AS TEXT)', f'CAST(NEW."{f}" AS TEXT)', who,
                          f' WHERE OLD."{f}" IS NOT NEW."{f}"') for f in FIELDS)
    return [
        f"CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
        f"{_ABORT.format('audit rows are append-only')}",
        f"CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
        f"{_ABORT.format('audit rows are append-only')}",
        "CREATE TRIGGER audit_no_reinsert BEFORE INSERT ON audit "
        "WHEN EXISTS (SELECT 1 FROM audit WHERE id = NEW.id) "
        f"{_ABORT.format('audit rows are append-only: that audit id exists')}",
        "CREATE TRIGGER cases_no_delete BEFORE DELETE ON cases "
        f"{_ABORT.format('cases are never deleted; set their status to dismissed')}",
        "CREATE TRIGGER cases_keep_id BEFORE UPDATE OF event_id ON cases "
        "WHEN NEW.event_id IS NOT OLD.event_id "
        f"{_ABORT.format('the event_id of a case never changes')}",
        "CREATE TRIGGER cases_no_replace BEFORE INSERT ON cases "
        "WHEN EXISTS (SELECT 1 FROM cases WHERE event_id = NEW.event_id) "
        "BEGIN SELECT RAISE(IGNORE); END",
        "CREATE TRIGGER cases_audit_insert AFTER INSERT ON cases BEGIN "
        + _sqlite_audit_row("status", "NULL", "CAST(NEW.status AS TEXT)",
                            "coalesce(nullif(NEW.updated_by, ''), '(direct SQL)')")
        + " END",
        f"CREATE TRIGGER cases_audit_update AFTER UPDATE ON cases BEGIN {audit_changes} "
        f"UPDATE cases SET version = OLD.version + 1, updated_by = '(direct SQL)', "
        f"updated_at = {_NOW} WHERE event_id = NEW.event_id "
        "AND NEW.version IS NOT OLD.version + 1; END",
    ]


def _postgres_triggers(conn) -> list[str]:
    schema = conn.dialect.identifier_preparer.quote(
        conn.exec_driver_sql("SELECT current_schema()").scalar())
    fields = ", ".join(f"'{f}'" for f in FIELDS)
    refuse = ("CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
              "$$ BEGIN RAISE EXCEPTION '{message}'; END $$")
    return [
        refuse.format(name="audit_append_only", message="audit rows are append-only"),
        refuse.format(name="cases_keep", message="cases are never deleted; set their status "
                                                 "to dismissed"),
        """CREATE OR REPLACE FUNCTION audit_digest(prev text, VARIADIC parts text[])
        RETURNS text LANGUAGE sql IMMUTABLE AS $$
          SELECT encode(sha256(convert_to(coalesce(prev, '') || coalesce((
            SELECT string_agg(CASE WHEN p IS NULL THEN '-' ELSE length(p)::text || ':' || p END,
                              '' ORDER BY i)
            FROM unnest(parts) WITH ORDINALITY AS t(p, i)), ''), 'UTF8')), 'hex') $$""",
        """CREATE OR REPLACE FUNCTION cases_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.event_id IS DISTINCT FROM OLD.event_id THEN
            RAISE EXCEPTION 'the event_id of a case never changes';
          END IF;
          IF NEW.version IS DISTINCT FROM OLD.version + 1 THEN
            NEW.version := OLD.version + 1;
            NEW.updated_by := '(direct SQL: ' || session_user || ')';
            NEW.updated_at := clock_timestamp();
          END IF;
          RETURN NEW;
        END $$""",
        f"""CREATE OR REPLACE FUNCTION cases_audit() RETURNS trigger LANGUAGE plpgsql
        SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
        DECLARE
          v_field text; v_old text; v_new text; v_id bigint; v_at timestamptz; v_prev text;
          v_who text := coalesce(nullif(NEW.updated_by, ''),
                                 '(direct SQL: ' || session_user || ')');
        BEGIN
          IF current_setting('transaction_isolation') <> 'read committed' THEN
            -- an older snapshot would miss the newest audit row and fork the chain
            RAISE EXCEPTION 'changes to cases need READ COMMITTED isolation';
          END IF;
          FOREACH v_field IN ARRAY ARRAY[{fields}] LOOP
            CONTINUE WHEN TG_OP = 'INSERT' AND v_field <> 'status';
            v_old := CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) ->> v_field END;
            v_new := to_jsonb(NEW) ->> v_field;
            CONTINUE WHEN TG_OP = 'UPDATE' AND v_old IS NOT DISTINCT FROM v_new;
            PERFORM pg_advisory_xact_lock({CHAIN_LOCK});
            SELECT a.hash INTO v_prev FROM audit a ORDER BY a.id DESC LIMIT 1;
            v_prev := coalesce(v_prev, '');
            v_id := nextval(pg_get_serial_sequence('audit', 'id'));
            v_at := clock_timestamp();
            INSERT INTO audit (id, event_id, at, who, field, old_value, new_value, prev_hash, hash)
            VALUES (v_id, NEW.event_id, v_at, v_who, v_field, v_old, v_new, v_prev,
                    audit_digest(v_prev, v_id::text, NEW.event_id,
                                 {audit_at_text('postgresql', 'v_at')},
                                 v_who, v_field, v_old, v_new));
          END LOOP;
          RETURN NULL;
        END $$""",
        "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
        "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
        "CREATE TRIGGER cases_no_delete BEFORE DELETE ON cases "
        "FOR EACH ROW EXECUTE FUNCTION cases_keep()",
        "CREATE TRIGGER cases_no_truncate BEFORE TRUNCATE ON cases "
        "FOR EACH STATEMENT EXECUTE FUNCTION cases_keep()",
        "CREATE TRIGGER cases_versioned BEFORE UPDATE ON cases "
        "FOR EACH ROW EXECUTE FUNCTION cases_version()",
        "CREATE TRIGGER cases_audited AFTER INSERT OR UPDATE ON cases "
        "FOR EACH ROW EXECUTE FUNCTION cases_audit()",
    ]
