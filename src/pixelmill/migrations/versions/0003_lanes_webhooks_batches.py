"""Fair queueing between tenants, webhooks (per-key defaults and the outbox), batches, previews.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("webhook_url", sa.Text, nullable=True))
    op.add_column("api_keys", sa.Column("webhook_events", sa.JSON, nullable=True))
    op.add_column("api_keys", sa.Column("webhook_secret", sa.String(64), nullable=True))
    op.add_column("tasks", sa.Column("fair_seq", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("tasks", sa.Column("batch_id", sa.String(32), nullable=True))
    op.add_column("tasks", sa.Column("batch_index", sa.Integer, nullable=True))
    op.add_column("tasks", sa.Column("webhook", sa.JSON, nullable=True))
    op.add_column("tasks", sa.Column("preview_key", sa.String(128), nullable=True))
    op.drop_index("ix_tasks_claim", "tasks")
    op.create_index("ix_tasks_claim", "tasks", ["lane", "status", "priority", "fair_seq"])
    op.create_index("ix_tasks_tenant_fair", "tasks", ["tenant_id", "lane", "fair_seq"])
    op.create_index("ix_tasks_lane_fair", "tasks", ["lane", "fair_seq"])
    op.create_index("ix_tasks_batch", "tasks", ["batch_id", "batch_index"])
    op.create_table(
        "batches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("api_key_id", sa.String(32), nullable=True),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("cancelled_at", sa.BigInteger, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=False),
    )
    op.create_index("ix_batches_tenant", "batches", ["tenant_id", "created_at"])
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("task_id", sa.String(32), sa.ForeignKey("tasks.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("api_key_id", sa.String(32), nullable=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("locked_by", sa.String(128), nullable=True),
        sa.Column("locked_until", sa.BigInteger, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("delivered_at", sa.BigInteger, nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed', 'superseded')", name="ck_webhook_events_state"
        ),
    )
    op.create_index("ix_webhook_events_due", "webhook_events", ["state", "next_attempt_at"])
    op.create_index("ix_webhook_events_task", "webhook_events", ["task_id", "seq"], unique=True)


def downgrade() -> None:
    op.drop_table("webhook_events")
    op.drop_table("batches")
    op.drop_index("ix_tasks_batch", "tasks")
    op.drop_index("ix_tasks_lane_fair", "tasks")
    op.drop_index("ix_tasks_tenant_fair", "tasks")
    op.drop_index("ix_tasks_claim", "tasks")
    op.create_index("ix_tasks_claim", "tasks", ["lane", "status", "priority", "scheduled_at"])
    with op.batch_alter_table("tasks") as batch:
        for name in ("preview_key", "webhook", "batch_index", "batch_id", "fair_seq"):
            batch.drop_column(name)
    with op.batch_alter_table("api_keys") as batch:
        for name in ("webhook_secret", "webhook_events", "webhook_url"):
            batch.drop_column(name)
