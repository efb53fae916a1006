"""outbox: drop the tenant_id index no query uses

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 22:58:00.000000

Every award, deduction and claim writes an outbox event, and the dispatcher rewrites the
row when it marks it dispatched (not a HOT update: dispatched_at is in the predicate of
ix_outbox_events_undispatched), so each index on outbox_events costs two insertions per
event. ix_outbox_events_tenant_id answered no query: the dispatcher reads undispatched
events by created_at and deliveries join events by id.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_outbox_events_tenant_id", table_name="outbox_events")


def downgrade() -> None:
    op.create_index("ix_outbox_events_tenant_id", "outbox_events", ["tenant_id"])
