"""archive: the manifest of archived Parquet segments, and topics marked for the archive

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "topics", sa.Column("archive", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.create_table(
        "archive_segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("kafka_topic", sa.String(length=200), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("start_offset", sa.BigInteger(), nullable=False),
        sa.Column("end_offset", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("first_timestamp", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_timestamp", sa.DateTime(timezone=True), nullable=True),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("announced", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("end_offset > start_offset", name=op.f("ck_archive_segments_offsets")),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.id"],
            name=op.f("fk_archive_segments_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_segments")),
        sa.UniqueConstraint(
            "kafka_topic",
            "partition",
            "start_offset",
            name=op.f("uq_archive_segments_kafka_topic"),
        ),
    )
    op.create_index(
        op.f("ix_archive_segments_org_id"), "archive_segments", ["org_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_archive_segments_org_id"), table_name="archive_segments")
    op.drop_table("archive_segments")
    op.drop_column("topics", "archive")
