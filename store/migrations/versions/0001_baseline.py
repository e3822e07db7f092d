"""Baseline: the case log as it was before migrations (cases, audit, append-only triggers).

Idempotent, because databases created by earlier versions already have these tables but no
alembic_version: on them this revision only records that they are at the baseline.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("interval", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("severity", sa.Float, nullable=False),
        sa.Column("start", _TZ, nullable=False),
        sa.Column("end", _TZ, nullable=False),
        sa.Column("detectors", sa.String(256), nullable=False),
        sa.Column("evidence_json", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(128), nullable=False),
        sa.Column("tags", sa.String(512), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        if_not_exists=True)
    op.create_index("ix_cases_status", "cases", ["status"], if_not_exists=True)
    op.create_index("ix_cases_start", "cases", ["start"], if_not_exists=True)
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("at", _TZ, nullable=False),
        sa.Column("who", sa.String(128), nullable=False),
        sa.Column("field", sa.String(32), nullable=False),
        sa.Column("old_value", sa.Text, nullable=True),
        sa.Column("new_value", sa.Text, nullable=True),
        if_not_exists=True)
    op.create_index("ix_audit_event_id", "audit", ["event_id"], if_not_exists=True)
    if op.get_bind().dialect.name == "sqlite":
        for name, event in (("audit_no_update", "UPDATE"), ("audit_no_delete", "DELETE")):
            op.execute(f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {event} ON audit "
                       "BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END")
    else:
        op.execute("CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql "
                   "AS $$ BEGIN RAISE EXCEPTION 'audit rows are append-only'; END $$")
        op.execute("DROP TRIGGER IF EXISTS audit_no_change ON audit")
        op.execute("DROP TRIGGER IF EXISTS audit_no_truncate ON audit")
        op.execute("CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit "
                   "FOR EACH ROW EXECUTE FUNCTION audit_append_only()")
        op.execute("CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()")


def downgrade() -> None:
    """To an empty database: the cases and their audit trail are dropped (back them up first)."""
    op.drop_table("audit")
    op.drop_table("cases")
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
