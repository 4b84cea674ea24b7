"""Stars on tasks (issue 22, the console's gallery): when a tenant starred a task, null when not.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

STARRED = sa.text("starred_at IS NOT NULL")


def upgrade() -> None:
    op.add_column("tasks", sa.Column("starred_at", sa.BigInteger(), nullable=True))
    # Only starred tasks are in it: a "starred" filter walks a tenant's stars, not its history.
    op.create_index("ix_tasks_tenant_starred", "tasks", ["tenant_id", "submit_time"], postgresql_where=STARRED, sqlite_where=STARRED)


def downgrade() -> None:
    op.drop_index("ix_tasks_tenant_starred", table_name="tasks")
    op.drop_column("tasks", "starred_at")
