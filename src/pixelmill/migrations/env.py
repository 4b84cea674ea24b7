"""Alembic environment: runs against the engine handed over in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from pixelmill.db.schema import metadata

engine = context.config.attributes["engine"]

with engine.connect().execution_options(pixelmill_write=True) as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
