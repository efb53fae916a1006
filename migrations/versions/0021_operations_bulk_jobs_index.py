"""operations: a partial index for the console's list of bulk jobs

Revision ID: 0021
Revises: 0020
Create Date: 2027-02-03 14:00:00.000000

The console lists a tenant's bulk jobs (award and action uploads) newest first. Without
an index that read scans every operation kept for idempotency (millions under load);
with it, it reads the few bulk jobs only. Partial on the bulk kinds, so recording a
single write does not touch it. Built CONCURRENTLY, outside the migration's transaction,
so that upgrading a live database does not block its writers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

INDEX = "ix_operations_bulk_jobs"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            INDEX,
            "operations",
            ["tenant_id", "env", "kind", "created_at"],
            postgresql_where=sa.text("kind IN ('points.award_bulk', 'actions.bulk')"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name="operations", postgresql_concurrently=True, if_exists=True)
