"""Alert rules and their delivery record, beside the cases (shared by a team on PostgreSQL).

A delivery is unique per (rule, event): an event alerts each rule once, however often scans
find it again.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("symbols", sa.String(2048), nullable=False, server_default=""),
        sa.Column("kind", sa.String(64), nullable=False, server_default=""),
        sa.Column("min_severity", sa.Float, nullable=False, server_default="0"),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", _TZ, nullable=False))
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule_id", sa.Integer, nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("at", _TZ, nullable=False),
        sa.UniqueConstraint("rule_id", "event_id", name="uq_alert_delivery"))


def downgrade() -> None:
    """Back to 0002: the alert rules and the record of what was sent are dropped."""
    op.drop_table("alert_deliveries")
    op.drop_table("alert_rules")
