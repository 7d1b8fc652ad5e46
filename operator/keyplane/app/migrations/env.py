"""Alembic's environment: migrate over the connection that :mod:`keyplane.app.schema` passes in."""

from __future__ import annotations

from alembic import context

from keyplane.app.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the app's migrations run through keyplane.app.schema.upgrade(engine)")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
