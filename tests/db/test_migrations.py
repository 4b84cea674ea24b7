from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from pixelmill.db.schema import metadata


def test_migrations_create_exactly_the_schema_the_code_uses(db: Engine) -> None:
    with db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_upgrade_twice_is_harmless(db: Engine) -> None:
    from pixelmill.db.migrate import upgrade

    upgrade(db)
    assert {"tasks", "api_keys", "tenants", "alembic_version"} <= set(inspect(db).get_table_names())
