"""operations: how the request that recorded a write wanted its answer (async_requested)

Revision ID: 0020
Revises: 0019
Create Date: 2027-02-03 13:00:00.000000

A nullable column without a default is a catalog change (no table rewrite, no long lock).
The console's 202 share reads it (app/console_overview.py); writes recorded before it
was there stay null, as writes no request waited on, and so count in neither side.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("operations", sa.Column("async_requested", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("operations", "async_requested")
