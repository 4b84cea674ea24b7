"""Idempotency keys, per-key rate limits, request cache keys on tasks.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("rate_per_minute", sa.Integer, nullable=True))
    op.add_column("api_keys", sa.Column("max_concurrent", sa.Integer, nullable=True))
    op.add_column("tasks", sa.Column("api_key_id", sa.String(32), nullable=True))
    op.add_column("tasks", sa.Column("cache_key", sa.String(64), nullable=True))
    op.add_column("tasks", sa.Column("prompt_key", sa.String(64), nullable=True))
    op.create_index("ix_tasks_cache", "tasks", ["tenant_id", "cache_key"])
    op.create_index("ix_tasks_prompt_key", "tasks", ["tenant_id", "prompt_key"])
    op.create_index("ix_tasks_key_status", "tasks", ["api_key_id", "status"])
    op.create_table(
        "idempotency_keys",
        sa.Column("key_id", sa.String(32), sa.ForeignKey("api_keys.id"), primary_key=True),
        sa.Column("idem_key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("task_ids", sa.JSON, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rate_windows",
        sa.Column("key_id", sa.String(32), sa.ForeignKey("api_keys.id"), primary_key=True),
        sa.Column("window", sa.BigInteger, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_windows")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_tasks_key_status", "tasks")
    op.drop_index("ix_tasks_prompt_key", "tasks")
    op.drop_index("ix_tasks_cache", "tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("prompt_key")
        batch.drop_column("cache_key")
        batch.drop_column("api_key_id")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("max_concurrent")
        batch.drop_column("rate_per_minute")
