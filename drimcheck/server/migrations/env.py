"""Alembic environment: the connection is handed over by drimcheck.server.db.upgrade()."""

from alembic import context

from drimcheck.server.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only drimcheck.server.db.upgrade() runs the migrations
    raise RuntimeError("run the migrations through drimcheck.server.db.upgrade(url)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
