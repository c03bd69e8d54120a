"""Alembic environment: runs against the connection handed in by config_db.migrate."""

from __future__ import annotations

from alembic import context

from config_db.models import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
