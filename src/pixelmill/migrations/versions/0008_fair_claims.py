"""Claims by fair place, priority within a tenant: partial indexes over waiting tasks replace
the claim index that put priority first.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

QUEUED_ONLY = sa.text("status IN ('NOT_START', 'SUBMITTED')")


def upgrade() -> None:
    op.drop_index("ix_tasks_claim", table_name="tasks")
    op.create_index("ix_tasks_queued_fair", "tasks", ["lane", "fair_seq", "tenant_id"],
                    postgresql_where=QUEUED_ONLY, sqlite_where=QUEUED_ONLY)
    op.create_index("ix_tasks_queued_tenant", "tasks", ["lane", "tenant_id", "priority", "submit_time", "id"],
                    postgresql_where=QUEUED_ONLY, sqlite_where=QUEUED_ONLY)


def downgrade() -> None:
    op.drop_index("ix_tasks_queued_tenant", table_name="tasks")
    op.drop_index("ix_tasks_queued_fair", table_name="tasks")
    op.create_index("ix_tasks_claim", "tasks", ["lane", "status", "priority", "fair_seq"])
