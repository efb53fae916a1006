"""points lifecycle: lots that expire or wait, program settings, award actions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 14:00:00.000000

point_lots holds the unspent rest of every credit that expires or is pending, until
nothing is left of it; a participant's other credits (available at once, never expiring)
are its open points, `balance` minus its available lots (app.points.lots). Ledger lines
keep each award's action and terms. participants also records since when it holds its
tier, until when a tier set by hand is locked, and (rolling qualification) when its tier
lapses; program_settings the qualification window. participants gains `pending` (awarded,
not yet available) and `total_expired`, and its balance rule becomes earned - spent -
expired. Adding NOT NULL columns with a constant default rewrites no row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "participants",
        sa.Column("total_expired", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "participants", sa.Column("pending", sa.BigInteger(), server_default="0", nullable=False)
    )
    for name in ("tier_since", "tier_locked_until", "tier_expires_at"):
        op.add_column("participants", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_participants_tier_due",
        "participants",
        ["tenant_id", "env", "tier_expires_at"],
        postgresql_where=sa.text("tier_code IS NOT NULL"),
    )
    op.drop_constraint("balance_matches_totals", "participants", type_="check")
    op.create_check_constraint(
        "balance_matches_totals",
        "participants",
        "balance = total_earned - total_spent - total_expired",
    )
    op.create_check_constraint("pending_not_negative", "participants", "pending >= 0")
    for name, column_type in (
        ("action", sa.String(length=100)),
        ("available_at", sa.DateTime(timezone=True)),
        ("expires_at", sa.DateTime(timezone=True)),
    ):
        op.add_column("ledger_entries", sa.Column(name, column_type, nullable=True))
    for name, column_type in (
        ("action", sa.String(length=100)),
        ("available_at", sa.DateTime(timezone=True)),
        ("expires_at", sa.DateTime(timezone=True)),
    ):
        op.add_column("bulk_award_rows", sa.Column(name, column_type, nullable=True))
    op.create_table(
        "point_lots",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("participant_pk", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "remaining > 0 AND remaining <= amount", name=op.f("ck_point_lots_remaining")
        ),
        sa.CheckConstraint(
            "NOT pending OR available_at IS NOT NULL", name=op.f("ck_point_lots_pending_until")
        ),
        sa.CheckConstraint(
            "expires_at IS NULL OR available_at IS NULL OR expires_at > available_at",
            name=op.f("ck_point_lots_expires_after_available"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_point_lots")),
    )
    op.create_index(
        "ix_point_lots_spending",
        "point_lots",
        ["participant_pk", "expires_at", "seq"],
        postgresql_where=sa.text("NOT pending"),
    )
    op.create_index(
        "ix_point_lots_expiring",
        "point_lots",
        ["expires_at"],
        postgresql_where=sa.text("NOT pending AND expires_at IS NOT NULL"),
    )
    op.create_index(
        "ix_point_lots_pending", "point_lots", ["available_at"], postgresql_where=sa.text("pending")
    )
    op.create_table(
        "program_settings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("env", sa.String(length=8), nullable=False),
        sa.Column("points_expiry_days", sa.Integer(), nullable=True),
        sa.Column("expiring_soon_days", sa.Integer(), server_default="30", nullable=False),
        sa.Column("tier_window_days", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "points_expiry_days IS NULL OR points_expiry_days BETWEEN 1 AND 36500",
            name=op.f("ck_program_settings_points_expiry_days"),
        ),
        sa.CheckConstraint(
            "expiring_soon_days BETWEEN 1 AND 365",
            name=op.f("ck_program_settings_expiring_soon_days"),
        ),
        sa.CheckConstraint(
            "tier_window_days IS NULL OR tier_window_days BETWEEN 1 AND 3650",
            name=op.f("ck_program_settings_tier_window_days"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_program_settings_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "env", name=op.f("pk_program_settings")),
    )


def downgrade() -> None:
    op.drop_table("program_settings")
    op.drop_index("ix_point_lots_pending", table_name="point_lots")
    op.drop_index("ix_point_lots_expiring", table_name="point_lots")
    op.drop_index("ix_point_lots_spending", table_name="point_lots")
    op.drop_table("point_lots")
    for name in ("expires_at", "available_at", "action"):
        op.drop_column("bulk_award_rows", name)
    for name in ("expires_at", "available_at", "action"):
        op.drop_column("ledger_entries", name)
    op.drop_constraint("pending_not_negative", "participants", type_="check")
    op.drop_constraint("balance_matches_totals", "participants", type_="check")
    op.create_check_constraint(
        "balance_matches_totals", "participants", "balance = total_earned - total_spent"
    )
    op.drop_index("ix_participants_tier_due", table_name="participants")
    for name in ("pending", "total_expired", "tier_since", "tier_locked_until", "tier_expires_at"):
        op.drop_column("participants", name)
