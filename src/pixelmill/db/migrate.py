"""Bring a database to the newest schema with Alembic, from code (no alembic.ini needed)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "pixelmill:migrations")
    cfg.attributes["engine"] = engine
    return cfg


#: The PostgreSQL advisory lock that lets one process at a time migrate (any 64-bit number will do).
MIGRATION_LOCK = 0x706978656C6D696C  # "pixelmil"


def upgrade(engine: Engine) -> None:
    """Bring the schema to head. On PostgreSQL, processes started together (API and workers of a
    deployment) take turns under an advisory lock, so two never run the same migration at once;
    the later ones find nothing left to do."""
    if engine.dialect.name != "postgresql":
        command.upgrade(alembic_config(engine), "head")
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
        try:
            command.upgrade(alembic_config(engine), "head")
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            conn.commit()


def current(engine: Engine) -> str | None:
    """The schema revision the database is at."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
