"""23blocks commerce: a reward keeps the document's own type; a coupon has a name and a
description (the document's coupon shows them)

Revision ID: 0016
Revises: 0015
Create Date: 2027-01-10 12:00:00.000000

Nullable columns without defaults: adding them is a catalog change, no table rewrite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rewards", sa.Column("blocks_type", sa.String(length=64), nullable=True))
    op.add_column("coupons", sa.Column("name", sa.String(length=200), nullable=True))
    op.add_column("coupons", sa.Column("description", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("coupons", "description")
    op.drop_column("coupons", "name")
    op.drop_column("rewards", "blocks_type")
