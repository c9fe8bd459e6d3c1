"""tool runs: each call of a tool agent's tool in the sandbox, for its run history

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tool_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("tool", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(length=63), nullable=False),
        sa.Column("run_key", sa.String(length=400), nullable=False),
        sa.Column("record_id", sa.String(length=100), nullable=False),
        sa.Column("input", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("cpu_s", sa.Float(), nullable=True),
        sa.Column("limit_hit", sa.String(length=40), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_tool_runs_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_runs")),
        sa.UniqueConstraint("run_key", name=op.f("uq_tool_runs_run_key")),
    )
    op.create_index(op.f("ix_tool_runs_org_id"), "tool_runs", ["org_id"], unique=False)
    op.create_index("ix_tool_runs_org_tool", "tool_runs", ["org_id", "tool", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_tool_runs_org_tool", table_name="tool_runs")
    op.drop_index(op.f("ix_tool_runs_org_id"), table_name="tool_runs")
    op.drop_table("tool_runs")
