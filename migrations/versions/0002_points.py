"""points: bulk award staging, ledger insert order, one tier per level

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 17:29:23.216289
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bulk_award_rows",
        sa.Column("operation_id", sa.Uuid(), nullable=False),
        sa.Column("row_number", sa.BigInteger(), nullable=False),
        sa.Column("participant_id", sa.String(length=255), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operations.id"],
            name=op.f("fk_bulk_award_rows_operation_id_operations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operation_id", "row_number", name=op.f("pk_bulk_award_rows")),
    )
    op.create_index(
        "ix_bulk_award_rows_failed",
        "bulk_award_rows",
        ["operation_id", "row_number"],
        unique=False,
        postgresql_where=sa.text("error IS NOT NULL"),
    )
    op.add_column(
        "ledger_entries",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
    )
    op.create_index(
        "ix_ledger_entries_participant_seq",
        "ledger_entries",
        ["participant_pk", "seq"],
        unique=False,
    )
    op.create_unique_constraint(
        op.f("uq_tiers_tenant_id_env_level"), "tiers", ["tenant_id", "env", "level"]
    )


def downgrade() -> None:
    op.drop_constraint(op.f("uq_tiers_tenant_id_env_level"), "tiers", type_="unique")
    op.drop_index("ix_ledger_entries_participant_seq", table_name="ledger_entries")
    op.drop_column("ledger_entries", "seq")
    op.drop_index(
        "ix_bulk_award_rows_failed",
        table_name="bulk_award_rows",
        postgresql_where=sa.text("error IS NOT NULL"),
    )
    op.drop_table("bulk_award_rows")
