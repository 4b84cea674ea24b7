"""Tenants, API keys and tasks (the task row is the queue job).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = ("NOT_START", "SUBMITTED", "MODAL", "IN_PROGRESS", "SUCCESS", "FAILURE", "CANCEL")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Integer, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("final_prompt", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("engine", sa.String(64), nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=True),
        sa.Column("quota", sa.Integer, nullable=False),
        sa.Column("parent_task_id", sa.String(32), sa.ForeignKey("tasks.id"), nullable=True),
        sa.Column("image_index", sa.Integer, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("fail_reason", sa.Text, nullable=True),
        sa.Column("submit_time", sa.BigInteger, nullable=False),
        sa.Column("start_time", sa.BigInteger, nullable=True),
        sa.Column("finish_time", sa.BigInteger, nullable=True),
        sa.Column("lane", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("scheduled_at", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", sa.BigInteger, nullable=True),
        sa.Column("errors", sa.JSON, nullable=False),
        sa.Column("finalized_at", sa.BigInteger, nullable=True),
        sa.CheckConstraint(f"status IN {STATUSES!r}", name="ck_tasks_status"),
        sa.CheckConstraint("progress BETWEEN 0 AND 100", name="ck_tasks_progress"),
        sa.CheckConstraint("lane IN ('interactive', 'batch')", name="ck_tasks_lane"),
        sa.CheckConstraint("attempt >= 0 AND attempt <= max_attempts", name="ck_tasks_attempt"),
        sa.CheckConstraint(
            "(status = 'IN_PROGRESS') = (lease_owner IS NOT NULL)",
            name="ck_tasks_lease_iff_running",
        ),
    )
    op.create_index("ix_tasks_claim", "tasks", ["lane", "status", "priority", "scheduled_at"])
    op.create_index("ix_tasks_lease", "tasks", ["status", "lease_expires_at"])
    op.create_index("ix_tasks_tenant", "tasks", ["tenant_id", "submit_time"])


def downgrade() -> None:
    op.drop_table("tasks")
    op.drop_table("api_keys")
    op.drop_table("tenants")
