"""Alert rules and the delivery record, in the case database (its SQLAlchemy engine).

The tables (``alert_rules``, ``alert_deliveries``) come from the case database's migrations
(``store/migrations``, 0003), beside the cases, so an alert is stored wherever the cases are
(SQLite or PostgreSQL) and the app's role never needs to create tables. A delivery is
unique per (rule, event): an event alerts each rule once, however often scans find it again.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from store.db import check_text

__all__ = ["AlertBook", "Rule", "CHANNELS"]

CHANNELS = ("webhook", "email")
_metadata = sa.MetaData()

rules_table = sa.Table(
    "alert_rules", _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("symbols", sa.String(2048), nullable=False, default=""),   # "" all, "A, B", "watchlist:NAME"
    sa.Column("kind", sa.String(64), nullable=False, default=""),        # "" any kind
    sa.Column("min_severity", sa.Float, nullable=False, default=0.0),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),                 # webhook URL or e-mail address
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

deliveries_table = sa.Table(
    "alert_deliveries", _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rule_id", sa.Integer, nullable=False),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),                  # "sent" or "failed"
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("rule_id", "event_id", name="uq_alert_delivery"),
)


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    symbols: str
    kind: str
    min_severity: float
    channel: str
    target: str
    enabled: bool = True

    def symbol_set(self) -> set[str] | None:
        """The symbols this rule watches (None: every symbol)."""
        text = self.symbols.strip()
        if not text:
            return None
        if text.startswith("watchlist:"):
            from store.watchlists import load_watchlists
            return {s.upper() for s in load_watchlists().get(text.split(":", 1)[1].strip(), [])}
        return {s.strip().upper() for s in text.replace(";", ",").split(",") if s.strip()}

    def matches(self, event: dict, symbols: set[str] | None = None) -> bool:
        return (self.enabled and float(event.get("severity", 0.0)) >= self.min_severity
                and (not self.kind or event.get("kind") == self.kind)
                and (symbols is None or str(event.get("symbol", "")).upper() in symbols))


def _now() -> datetime:
    return datetime.now(timezone.utc)


class AlertBook:
    """Rules and deliveries on ``engine`` (e.g. ``CaseLog().engine``)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def add_rule(self, name: str, *, channel: str, target: str, symbols: str = "", kind: str = "",
                 min_severity: float = 0.0) -> Rule:
        if channel not in CHANNELS:
            raise ValueError(f"Unknown alert channel {channel!r}; choose one of {', '.join(CHANNELS)}.")
        for field, value, limit in (("name", name, 64), ("target", target, 2000), ("symbols", symbols, 20000),
                                    ("kind", kind, 64)):
            check_text(value, f"The rule's {field}", limit)
        if isinstance(min_severity, bool) or not isinstance(min_severity, (int, float)):
            raise ValueError("The minimum severity is a number between 0 and 1.")
        if not str(name).strip() or not str(target).strip():
            raise ValueError("An alert rule needs a name and a target (webhook URL or e-mail address).")
        if channel == "webhook" and not str(target).startswith(("https://", "http://")):
            raise ValueError("A webhook target is an http(s):// URL.")
        if channel == "email" and "@" not in str(target):
            raise ValueError("An e-mail target is an address such as desk@example.com.")
        if not 0.0 <= float(min_severity) <= 1.0:
            raise ValueError("The minimum severity is between 0 and 1.")
        values = {"name": name.strip(), "symbols": symbols.strip(), "kind": kind.strip(),
                  "min_severity": float(min_severity), "channel": channel, "target": target.strip(),
                  "enabled": True, "created_at": _now()}
        with self.engine.begin() as conn:
            rule_id = conn.execute(rules_table.insert().values(**values)).inserted_primary_key[0]
        return Rule(id=int(rule_id), **{k: v for k, v in values.items() if k != "created_at"})

    def rules(self, *, enabled_only: bool = False) -> list[Rule]:
        query = sa.select(rules_table).order_by(rules_table.c.id)
        if enabled_only:
            query = query.where(rules_table.c.enabled.is_(True))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [Rule(**{k: v for k, v in row.items() if k != "created_at"}) for row in rows]

    def set_enabled(self, rule_id: int, enabled: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(rules_table.update().where(rules_table.c.id == rule_id).values(enabled=bool(enabled)))

    def delete_rule(self, rule_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(rules_table.delete().where(rules_table.c.id == rule_id))

    def delivered(self, rule_id: int, event_ids: list[str], *, max_attempts: int) -> set[str]:
        """Events done for a rule: sent, or failed ``max_attempts`` times in all."""
        done: set[str] = set()
        t = deliveries_table.c
        with self.engine.connect() as conn:
            for i in range(0, len(event_ids), 500):   # under the bound-parameter limit
                rows = conn.execute(sa.select(t.event_id).where(
                    t.rule_id == rule_id, t.event_id.in_(event_ids[i:i + 500]),
                    sa.or_(t.status == "sent", t.attempts >= max_attempts))).all()
                done |= {r[0] for r in rows}
        return done

    def record(self, rule: Rule, event_id: str, status: str, attempts: int, error: str = "") -> None:
        """Record a delivery; a retry of a failed one adds its attempts to the same row."""
        from store.db import insert
        values = {"rule_id": rule.id, "event_id": event_id, "channel": rule.channel, "target": rule.target,
                  "status": status, "attempts": attempts, "error": error[:2000], "at": _now()}
        stmt = insert(self.engine, deliveries_table).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["rule_id", "event_id"],
            set_={"status": status, "error": error[:2000], "at": values["at"],
                  "attempts": deliveries_table.c.attempts + attempts})
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def deliveries(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(deliveries_table).order_by(deliveries_table.c.id)).mappings().all()
        return [dict(r) for r in rows]
