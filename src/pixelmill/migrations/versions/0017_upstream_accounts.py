"""Remote engines take pools of upstream accounts: each upstream task records its account, and
the accounts' shared state (health, submit windows, counts) has a table (issue 21).

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("upstream_tasks") as batch:
        batch.add_column(sa.Column("account", sa.String(64), nullable=True))
        batch.add_column(sa.Column("done_at", sa.BigInteger(), nullable=True))
    op.create_index("ix_upstream_tasks_account", "upstream_tasks", ["engine", "account", "done_at"])
    op.create_table(
        "upstream_accounts",
        sa.Column("engine", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("disabled_by", sa.String(16), nullable=True),
        sa.Column("disabled_at", sa.BigInteger(), nullable=True),
        sa.Column("probed_at", sa.BigInteger(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("window_start", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("window_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("day", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("day_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_pick", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("submits", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("refused", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("succeeded", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("failed", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("latency_ms", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("upstream_accounts")
    op.drop_index("ix_upstream_tasks_account", table_name="upstream_tasks")
    with op.batch_alter_table("upstream_tasks") as batch:
        batch.drop_column("done_at")
        batch.drop_column("account")
