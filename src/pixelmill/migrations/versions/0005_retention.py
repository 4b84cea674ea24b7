"""Retention: per-tenant retention, the files each task owns, and tombstones of expired tasks;
a key's default output profile.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("retention_seconds", sa.BigInteger, nullable=True))
    op.add_column("api_keys", sa.Column("output_profile", sa.String(64), nullable=True))
    op.create_table(
        "task_files",
        sa.Column("task_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("task_id", "key"),
    )
    op.create_index("ix_task_files_key", "task_files", ["key"])
    op.create_table(
        "expired_tasks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("expired_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_tasks_finish", "tasks", ["tenant_id", "finish_time"])


def downgrade() -> None:
    op.drop_index("ix_tasks_finish", table_name="tasks")
    op.drop_table("expired_tasks")
    op.drop_index("ix_task_files_key", table_name="task_files")
    op.drop_table("task_files")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("retention_seconds")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("output_profile")
