"""Alembic environment: store.db.migrate passes an open connection (already locked, in a transaction).

There is no alembic.ini: run migrations with ``python -m store.db [URL] [--grant ROLE]``.
"""
from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations through store.db.migrate (python -m store.db URL).")
context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
