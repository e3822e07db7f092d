"""The case database: one engine per URL, its schema kept by Alembic migrations, input checks.

The case log, watchlists and saved views share this database (SQLite in the data folder, or
PostgreSQL for a team). Start-up only *reads* the schema version; migrations run when the
version is behind, once, under a lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL
``pg_advisory_xact_lock``), so processes starting together never race DDL against writers.

On PostgreSQL the migration should run as the schema owner (``admin_url``) and the app as a
separate role that may read and append but not update or delete the audit, nor own (and so
disable triggers on) any table::

    python -m store.db postgresql+psycopg://owner@host/db --grant surveillance_app

Run from Python with ``migrate(admin_url, app_role="surveillance_app")``, or let
``CaseLog(app_url, admin_url=admin_url)`` do it when the schema is behind.
"""
from __future__ import annotations

import hashlib
import threading
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from store import data_dir, use_wal

__all__ = ["open_engine", "default_engine", "default_url", "migrate", "schema_revision",
           "head_revision", "audit_digest", "audit_at_text", "check_text", "check_name",
           "NAME_LIMIT", "UtcDateTime", "utc_now", "insert"]

NAME_LIMIT = 64
_BUSY_MS = 10_000  # how long a SQLite connection waits for another's lock
_MIGRATION_LOCK = 7_341_905_113  # pg_advisory_xact_lock key held while migrating
_MIGRATIONS = Path(__file__).with_name("migrations")
_default: tuple[str, sa.Engine] | None = None
_default_lock = threading.Lock()


def audit_digest(prev: str | None, *parts) -> str:
    """sha256 over the previous row's hash and this row's parts, each length-prefixed.

    The same function runs in SQLite (registered on every connection), in PostgreSQL (as
    SQL, in migration 0002) and in ``CaseLog.verify_audit``; the length prefix keeps
    ("ab", "c") and ("a", "bc") apart, "-" marks NULL.
    """
    body = "".join("-" if p is None else f"{len(str(p))}:{p}" for p in parts)
    return hashlib.sha256(((prev or "") + body).encode("utf-8")).hexdigest()


def audit_at_text(dialect: str, column: str = "at") -> str:
    """SQL for an audit time as the exact text its hash covers (UTC, microseconds)."""
    if dialect == "sqlite":
        return f"CAST({column} AS TEXT)"  # stored as text: what SQLAlchemy or the trigger wrote
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"


def default_url() -> str:
    """The local SQLite case database in the data folder."""
    return f"sqlite:///{data_dir() / 'cases.sqlite'}"


def open_engine(url: str | None = None, *, admin_url: str | None = None) -> sa.Engine:
    """An engine on ``url`` whose schema is at the newest migration (migrating it if behind).

    ``admin_url`` (PostgreSQL) is the schema owner's URL: when given, migrations run with it
    and grant the app role (the user in ``url``) what the app needs. Without it, ``url``
    migrates itself (fine on SQLite; on PostgreSQL the app then owns its tables).
    """
    engine = _engine(url or default_url())
    current = schema_revision(engine)
    if current != head_revision():
        try:
            if admin_url:
                migrate(admin_url, app_role=engine.url.username)
            else:
                migrate(engine)
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            raise RuntimeError(
                f"The case database at {engine.url.render_as_string(hide_password=True)} is at "
                f"schema {current}, this app needs {head_revision()}, and migrating failed "
                f"({exc.orig}). Run the migration as the schema owner: "
                "python -m store.db <owner URL> --grant <app role>.") from exc
        current = schema_revision(engine)
    if current != head_revision():
        engine.dispose()
        raise RuntimeError(f"The case database is at schema {current}, this app needs "
                           f"{head_revision()}: is a newer app version using it?")
    return engine


def default_engine() -> sa.Engine:
    """The engine on ``default_url()``, kept for reuse (a new data folder gets a new one)."""
    global _default
    url = default_url()
    with _default_lock:
        if _default is None or _default[0] != url:
            if _default is not None:
                _default[1].dispose()
            _default = (url, open_engine(url))
        return _default[1]


def _engine(url: str | sa.URL, **kw) -> sa.Engine:
    engine = sa.create_engine(url, **kw)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_connect)
    elif engine.dialect.name != "postgresql":
        raise ValueError(f"The case log runs on SQLite or PostgreSQL, not "
                         f"{engine.dialect.name}; use a postgresql+psycopg:// URL.")
    return engine


def _sqlite_connect(dbapi_connection, _record) -> None:
    # busy_timeout first: a writer (or a migration) waits for the lock instead of failing;
    # WAL lets readers go on while one process writes; audit_digest is what the audit
    # triggers call, so a connection without it (a plain sqlite3 shell) cannot change cases.
    dbapi_connection.create_function("audit_digest", 8, audit_digest, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
    use_wal(cursor, _BUSY_MS / 1000)
    cursor.close()



#: The newest migration in ``store/migrations/versions`` (a test checks it is Alembic's head),
#: so that opening an up-to-date database never imports Alembic (0.2 s of the first page).
HEAD_REVISION = "0003"


def head_revision() -> str:
    """The newest migration in ``store/migrations/versions``."""
    return HEAD_REVISION


def schema_revision(engine_or_conn) -> str | None:
    """The migration the database is at (None for an empty or pre-migration database):
    Alembic's ``alembic_version`` table, read with plain SQL."""
    if isinstance(engine_or_conn, sa.Engine):
        with engine_or_conn.connect() as conn:
            return schema_revision(conn)
    if not sa.inspect(engine_or_conn).has_table("alembic_version"):
        return None
    return engine_or_conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def migrate(url: str | sa.Engine | None = None, *, app_role: str | None = None,
            to: str | None = None) -> str:
    """Bring the schema to the newest migration, once, under a lock; returns the revision.

    Safe to call from many processes at once: the first migrates, the others wait for its
    lock, see the new version and do nothing. ``app_role`` (PostgreSQL) is granted what the
    app needs: read all tables; insert and update cases; read-only audit (the triggers write
    it as the owner); read and write watchlists and saved views. ``to`` (an older revision,
    or "base") downgrades instead, to roll back a release: what the newer migrations added is
    dropped, rows included.
    """
    from alembic import command
    target, step = (head_revision(), command.upgrade) if to is None else (to, command.downgrade)
    wanted = None if target == "base" else target
    source = url if isinstance(url, sa.Engine) else _engine(url or default_url())
    try:
        if source.dialect.name == "sqlite":
            # AUTOCOMMIT hands transaction control to us: BEGIN IMMEDIATE takes the write lock
            # before the version is read, so exactly one process migrates, atomically.
            with source.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    if schema_revision(conn) != wanted:
                        step(_config(conn), target)
                    conn.exec_driver_sql("COMMIT")
                except BaseException:
                    conn.exec_driver_sql("ROLLBACK")
                    raise
        else:
            with source.begin() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
                if schema_revision(conn) != wanted:
                    step(_config(conn), target)
                if app_role and to is None:
                    _grant(conn, app_role)
        return target
    finally:
        if source is not url:
            source.dispose()


def _grant(conn, role: str) -> None:
    quote = conn.dialect.identifier_preparer.quote
    role, schema = quote(role), quote(conn.execute(sa.text("SELECT current_schema()")).scalar())
    for sql in (f"GRANT USAGE ON SCHEMA {schema} TO {role}",
                f"GRANT SELECT ON alembic_version, audit TO {role}",
                f"GRANT SELECT, INSERT, UPDATE ON cases TO {role}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON watchlists, saved_views TO {role}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON alert_rules, alert_deliveries TO {role}",
                f"GRANT USAGE, SELECT ON SEQUENCE alert_rules_id_seq, alert_deliveries_id_seq TO {role}"):
        conn.exec_driver_sql(sql)


def _config(conn):
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


# ---- small shared pieces ----------------------------------------------------------------

class UtcDateTime(sa.TypeDecorator):
    """A UTC time read back tz-aware (SQLite keeps no time zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None or value.tzinfo is not None:
            return value if value is None else value.astimezone(timezone.utc)
        return value.replace(tzinfo=timezone.utc)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def insert(engine: sa.Engine, table: sa.Table):
    """The dialect's INSERT, which has ``on_conflict_do_update`` / ``on_conflict_do_nothing``."""
    from sqlalchemy.dialects import postgresql, sqlite
    return (sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert)(table)


# ---- input checks -----------------------------------------------------------------------

_HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # control, format, unassigned, separators


def check_text(value, field: str, limit: int | None) -> str:
    """``value`` if it fits the column: a str of at most ``limit`` characters, no NUL.

    Checked before the database so every backend gives the same clear ValueError (PostgreSQL
    would raise a DataError; SQLite would store anything).
    """
    if not isinstance(value, str):
        raise ValueError(f"{field} must be text, got {type(value).__name__}.")
    if "\x00" in value:
        raise ValueError(f"{field} contains a NUL character (\\x00); remove it.")
    if limit is not None and len(value) > limit:
        raise ValueError(f"{field} is {len(value)} characters long; the limit is {limit}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field} contains an invalid character (a lone surrogate); "
                         "remove it.") from None
    return value


def check_name(name, what: str) -> str:
    """A watchlist or view name exactly as given, or a ValueError saying what to fix.

    Nothing is stripped silently: "desk\\n" and "desk" would otherwise be two lookalike names.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Name the {what}: up to {NAME_LIMIT} characters.")
    if len(name) > NAME_LIMIT:
        raise ValueError(f"The {what} name is {len(name)} characters long; shorten it to at "
                         f"most {NAME_LIMIT}.")
    if name != name.strip():
        raise ValueError(f"The {what} name {name!r} starts or ends with whitespace; remove it.")
    hidden = next((c for c in name if unicodedata.category(c) in _HIDDEN), None)
    if hidden is not None:
        raise ValueError(f"The {what} name contains a control or invisible character "
                         f"(U+{ord(hidden):04X}); remove it.")
    if "/" in name or "\\" in name:
        raise ValueError(f"The {what} name {name!r} contains a slash; names become file names "
                         "in exports, use a dash instead.")
    return name


if __name__ == "__main__":  # python -m store.db [URL] [--grant ROLE] [--downgrade REVISION]
    import argparse
    parser = argparse.ArgumentParser(description="Create or upgrade the case database schema.")
    parser.add_argument("url", nargs="?", help="the schema owner's URL (default: local SQLite)")
    parser.add_argument("--grant", metavar="ROLE", help="PostgreSQL role the app connects as")
    parser.add_argument("--downgrade", metavar="REVISION",
                        help='roll back to this revision ("base": an empty database); back up first')
    args = parser.parse_args()
    print(f"case database at schema {migrate(args.url, app_role=args.grant, to=args.downgrade)}")
