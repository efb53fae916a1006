"""Webhook endpoints: the payload format their requests are sent in ("standard", or
"blocks" for endpoints registered through the 23blocks dialect)

Revision ID: 0018
Revises: 0017
Create Date: 2027-01-27 12:00:00.000000

A NOT NULL column with a constant default is a catalog change (no table rewrite); every
existing endpoint keeps the standard body it has been receiving.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "webhook_endpoints",
        sa.Column(
            "payload_format", sa.String(length=16), server_default="standard", nullable=False
        ),
    )
    op.create_check_constraint(
        op.f("ck_webhook_endpoints_payload_format"),
        "webhook_endpoints",
        "payload_format IN ('standard', 'blocks')",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("ck_webhook_endpoints_payload_format"), "webhook_endpoints", type_="check"
    )
    op.drop_column("webhook_endpoints", "payload_format")
