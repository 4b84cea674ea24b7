"""Templates: versions, release tags with rollouts, evaluation sets and evaluations; a key's
require-template policy.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("require_template", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "templates",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
    )
    op.create_table(
        "template_versions",
        sa.Column("template", sa.String(64), sa.ForeignKey("templates.name"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("published_at", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("template", "version"),
        sa.CheckConstraint("state IN ('draft', 'published')", name="ck_template_versions_state"),
    )
    op.create_table(
        "template_releases",
        sa.Column("template", sa.String(64), sa.ForeignKey("templates.name"), nullable=False),
        sa.Column("tag", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("candidate", sa.Integer, nullable=True),
        sa.Column("percent", sa.Integer, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("previous_version", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("template", "tag"),
        sa.CheckConstraint("percent >= 0 AND percent <= 100", name="ck_template_releases_percent"),
    )
    op.create_table(
        "evaluation_sets",
        sa.Column("template", sa.String(64), sa.ForeignKey("templates.name"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("items", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("template", "name"),
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("template", sa.String(64), sa.ForeignKey("templates.name"), nullable=False),
        sa.Column("set_name", sa.String(64), nullable=False),
        sa.Column("baseline", sa.Integer, nullable=False),
        sa.Column("candidate", sa.Integer, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pairs", sa.JSON, nullable=False),
        sa.Column("summary", sa.JSON, nullable=True),
        sa.Column("sheet_key", sa.String(128), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.CheckConstraint("state IN ('running', 'done')", name="ck_evaluations_state"),
    )
    op.create_index("ix_evaluations_template", "evaluations", ["template", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_evaluations_template", table_name="evaluations")
    for table in ("evaluations", "evaluation_sets", "template_releases", "template_versions", "templates"):
        op.drop_table(table)
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("require_template")
