"""record types: each registered type's compatibility mode, and the row its versions lock

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "record_types",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("record_type", sa.String(length=100), nullable=False),
        sa.Column("compatibility", sa.String(length=10), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "compatibility IN ('BACKWARD', 'FORWARD', 'FULL', 'NONE')",
            name=op.f("ck_record_types_compatibility"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_record_types_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_record_types")),
        sa.UniqueConstraint("org_id", "record_type", name=op.f("uq_record_types_org_id")),
    )
    op.create_index(op.f("ix_record_types_org_id"), "record_types", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_record_types_org_id"), table_name="record_types")
    op.drop_table("record_types")
