"""operation partitions: workers drain the queued operations of one partition at once

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 17:51:47.120767
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("operations", sa.Column("partition_key", sa.String(length=400), nullable=True))
    op.create_index(
        "ix_operations_queued_partition",
        "operations",
        ["partition_key", "created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_operations_queued_partition",
        table_name="operations",
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.drop_column("operations", "partition_key")
