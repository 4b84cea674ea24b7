"""Templates belong to a tenant (NULL: shared with every tenant); the deployment's secrets.

Templates made before this revision stay shared, as they were.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("templates") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(64), nullable=True))
        batch.create_foreign_key("fk_templates_tenant", "tenants", ["tenant_id"], ["id"])
    op.create_table(
        "instance_secrets",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("instance_secrets")
    with op.batch_alter_table("templates") as batch:
        batch.drop_constraint("fk_templates_tenant", type_="foreignkey")
        batch.drop_column("tenant_id")
