"""conversation turns: what llm agents' conversations outgrew, stored for recall

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "conversation_turns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(length=63), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("chain_id", sa.String(length=64), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("messages", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.id"],
            name=op.f("fk_conversation_turns_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_turns")),
        sa.UniqueConstraint("chain_id", "turn", name=op.f("uq_conversation_turns_chain_id")),
    )
    op.create_index(
        op.f("ix_conversation_turns_org_id"), "conversation_turns", ["org_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_conversation_turns_org_id"), table_name="conversation_turns")
    op.drop_table("conversation_turns")
