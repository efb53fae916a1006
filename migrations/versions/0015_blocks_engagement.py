"""blocks engagement: the 23blocks dialect's attributes that native definitions lack (an
earning rule's description, a badge's slug and rarity, a leaderboard's slug and prizes)

Revision ID: 0015
Revises: 0014
Create Date: 2027-01-10 10:00:00.000000

Nullable columns with no default: adding them is a catalog change, no table rewrite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COLUMNS = (
    ("earning_rules", "description", sa.Text()),
    ("badges", "slug", sa.String(length=100)),
    ("badges", "rarity", sa.String(length=32)),
    ("leaderboards", "slug", sa.String(length=100)),
    ("leaderboards", "prizes", postgresql.JSONB(astext_type=sa.Text())),
)


def upgrade() -> None:
    for table, column, type_ in COLUMNS:
        op.add_column(table, sa.Column(column, type_, nullable=True))


def downgrade() -> None:
    for table, column, _ in reversed(COLUMNS):
        op.drop_column(table, column)
