"""Indexes for the console (issue 22): a task's children (its detail page's lineage), and the
tasks that finished lately by status (the operations page's failures and charts).

Revision ID: 0020
Revises: 0019
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_parent", "tasks", ["parent_task_id"])
    op.create_index("ix_tasks_status_finish", "tasks", ["status", "finish_time"])


def downgrade() -> None:
    op.drop_index("ix_tasks_status_finish", table_name="tasks")
    op.drop_index("ix_tasks_parent", table_name="tasks")
