"""Every stored file, with when it was last written: retention owns every file, not only results.

Files written before this revision are registered as written now (those tasks point at, and each
task's last preview), so nothing older is deleted before its time.

Revision ID: 0009
Revises: 0008
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_files",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("last_put_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_stored_files_age", "stored_files", ["last_put_at"])
    now = int(time.time() * 1000)
    op.execute(sa.text(
        "INSERT INTO stored_files (key, last_put_at) SELECT DISTINCT key, :now FROM ("
        " SELECT key FROM task_files UNION SELECT preview_key AS key FROM tasks WHERE preview_key IS NOT NULL"
        " UNION SELECT sheet_key AS key FROM evaluations WHERE sheet_key IS NOT NULL) AS known"
    ).bindparams(now=now))


def downgrade() -> None:
    op.drop_index("ix_stored_files_age", table_name="stored_files")
    op.drop_table("stored_files")
