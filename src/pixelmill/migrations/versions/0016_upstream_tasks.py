"""A task's upstream task is recorded when the upstream accepts it, so that a restart continues it
instead of submitting it again; a task waiting upstream is parked for the upstream poller, which
holds no thread for it (issue 21).

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upstream_tasks",
        sa.Column("task_id", sa.String(32), primary_key=True),
        sa.Column("engine", sa.String(64), nullable=False),
        sa.Column("submit_key", sa.String(160), nullable=False),
        sa.Column("upstream_id", sa.String(128), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("accepted_at", sa.BigInteger(), nullable=True),
        sa.Column("poll_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_upstream_tasks_poll", "upstream_tasks", ["poll_at"])


def downgrade() -> None:
    op.drop_index("ix_upstream_tasks_poll", table_name="upstream_tasks")
    op.drop_table("upstream_tasks")
