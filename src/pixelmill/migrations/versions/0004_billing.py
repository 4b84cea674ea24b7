"""Billing: per-key balances, the append-only ledger, the price table; refused submits (code 24).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("balance", sa.BigInteger, nullable=True))
    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key_id", sa.String(32), sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(32), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("price_key", sa.String(64), nullable=True),
        sa.Column("engine", sa.String(64), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.CheckConstraint("kind IN ('charge', 'refund', 'credit')", name="ck_ledger_kind"),
    )
    op.create_index("ux_ledger_task_kind", "ledger", ["task_id", "kind"], unique=True)
    op.create_index("ix_ledger_key_time", "ledger", ["key_id", "created_at"])
    op.create_index("ix_ledger_time", "ledger", ["created_at"])
    op.create_table(
        "prices",
        sa.Column("price_key", sa.String(64), primary_key=True),
        sa.Column("units", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.CheckConstraint("units >= 0", name="ck_prices_units"),
    )
    op.create_table(
        "refusals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("code", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_refusals_time", "refusals", ["created_at"])


def downgrade() -> None:
    op.drop_table("refusals")
    op.drop_table("prices")
    op.drop_table("ledger")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("balance")
