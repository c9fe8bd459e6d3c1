"""llm usage: tokens per model call, for per-agent accounting and org budgets

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 00:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "llm_usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(length=63), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("call_id", sa.String(length=300), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("total_tokens", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_llm_usage_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_usage")),
        sa.UniqueConstraint("call_id", name=op.f("uq_llm_usage_call_id")),
    )
    op.create_index(op.f("ix_llm_usage_org_id"), "llm_usage", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_llm_usage_org_id"), table_name="llm_usage")
    op.drop_table("llm_usage")
