"""The files of a finished task that nobody waits for (renditions, provenance records) are made
after SUCCESS: the tasks still owed them.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "finishing",
        sa.Column("task_id", sa.String(32), primary_key=True),
        sa.Column("due_at", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("locked_by", sa.String(128), nullable=True),
        sa.Column("locked_until", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_finishing_due", "finishing", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_finishing_due", table_name="finishing")
    op.drop_table("finishing")
