"""A tenant's waiting tasks in fair order, for queue positions: a poll of a waiting task counted
its tenant's tasks over the whole history of the lane (issue 20).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

QUEUED_ONLY = sa.text("status IN ('NOT_START', 'SUBMITTED')")


def upgrade() -> None:
    op.create_index("ix_tasks_queued_tenant_fair", "tasks", ["lane", "tenant_id", "fair_seq"],
                    postgresql_where=QUEUED_ONLY, sqlite_where=QUEUED_ONLY)


def downgrade() -> None:
    op.drop_index("ix_tasks_queued_tenant_fair", table_name="tasks")
