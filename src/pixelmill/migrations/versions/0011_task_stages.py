"""Where each task's time went: milliseconds per stage (observe/stages.py); whether anyone
watches a task (its previews are stored only then).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("stages", sa.JSON(none_as_null=True), nullable=True))
        batch.add_column(sa.Column("watched", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("watched")
        batch.drop_column("stages")
