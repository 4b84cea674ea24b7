"""Safety: the review queue of held output images, and the audit log of decisions.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.String(48), primary_key=True),
        sa.Column("task_id", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("image", sa.LargeBinary, nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("decided_at", sa.BigInteger, nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.CheckConstraint("state IN ('pending', 'approved', 'rejected')", name="ck_reviews_state"),
    )
    op.create_index("ix_reviews_state", "reviews", ["state", "created_at"])
    op.create_index("ix_reviews_task", "reviews", ["task_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_subject", "audit_log", ["subject_kind", "subject_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_subject", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_reviews_task", table_name="reviews")
    op.drop_index("ix_reviews_state", table_name="reviews")
    op.drop_table("reviews")
