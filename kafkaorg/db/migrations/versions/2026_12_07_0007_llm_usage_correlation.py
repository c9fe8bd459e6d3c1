"""llm usage: the record's correlation id, so a flow run's calls add up to its budget

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("llm_usage", sa.Column("correlation_id", sa.String(length=200), nullable=True))
    op.create_index(
        op.f("ix_llm_usage_correlation_id"), "llm_usage", ["correlation_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_llm_usage_correlation_id"), table_name="llm_usage")
    op.drop_column("llm_usage", "correlation_id")
