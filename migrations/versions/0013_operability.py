"""operability: operations carry their request id; indexes for the retention purge;
webhook secrets may be sealed (longer than the plain ones)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 17:45:00.000000

The purge (app/retention.py) reads the oldest purgeable rows of each table in small
batches: finished deliveries, dispatched events and audit entries by created_at. The
events' index is partial (dispatched ones), so recording an event does not pay for it; the
dispatcher's update already is not HOT (dispatched_at is in the undispatched index's
predicate). Built CONCURRENTLY, outside the migration's transaction, so that upgrading a
live database does not block its writers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_outbox_events_dispatched_created", "outbox_events", "dispatched_at IS NOT NULL"),
    ("ix_webhook_deliveries_finished_created", "webhook_deliveries", "status <> 'pending'"),
    ("ix_audit_entries_created", "audit_entries", None),
)


SECRET_COLUMNS = ("secret", "previous_secret")


def upgrade() -> None:
    op.add_column("operations", sa.Column("request_id", sa.String(length=128), nullable=True))
    for column in SECRET_COLUMNS:
        # varchar to text is a catalog change: no rewrite, no long lock.
        op.alter_column("webhook_endpoints", column, type_=sa.Text(), existing_type=sa.String(100))
    with op.get_context().autocommit_block():
        for name, table, predicate in INDEXES:
            op.create_index(
                name,
                table,
                ["created_at"],
                postgresql_where=sa.text(predicate) if predicate else None,
                postgresql_concurrently=True,
                if_not_exists=True,
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _ in INDEXES:
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
    for column in SECRET_COLUMNS:
        # Sealed secrets do not fit: open them first (`rewards secrets reseal` without a key).
        op.alter_column("webhook_endpoints", column, type_=sa.String(100), existing_type=sa.Text())
    op.drop_column("operations", "request_id")
