"""Referrals: the program's minimum qualifying amount and expiration days; a referral's
referee e-mail and expiry time, the status `expired`, and the index the expiry sweep reads

Revision ID: 0017
Revises: 0016
Create Date: 2027-01-20 12:00:00.000000

Nullable columns without defaults (a catalog change, no table rewrite); the partial index
holds only pending referrals that can expire.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "referral_programs",
        sa.Column("min_qualifying_amount", sa.Numeric(precision=18, scale=2), nullable=True),
    )
    op.add_column("referral_programs", sa.Column("expiration_days", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_referral_programs_min_qualifying_amount"),
        "referral_programs",
        "min_qualifying_amount IS NULL OR min_qualifying_amount >= 0",
    )
    op.create_check_constraint(
        op.f("ck_referral_programs_expiration_days"),
        "referral_programs",
        "expiration_days IS NULL OR expiration_days BETWEEN 1 AND 3650",
    )
    op.add_column("referrals", sa.Column("referee_email", sa.String(length=320), nullable=True))
    op.add_column("referrals", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint(op.f("ck_referrals_status"), "referrals", type_="check")
    op.create_check_constraint(
        op.f("ck_referrals_status"), "referrals", "status IN ('pending', 'completed', 'expired')"
    )
    op.create_index(
        "ix_referrals_due",
        "referrals",
        ["expires_at"],
        postgresql_where=sa.text("status = 'pending' AND expires_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_referrals_due", table_name="referrals")
    # Expired referrals go back to pending: the old schema has no other place for them.
    op.execute("UPDATE referrals SET status = 'pending' WHERE status = 'expired'")
    op.drop_constraint(op.f("ck_referrals_status"), "referrals", type_="check")
    op.create_check_constraint(
        op.f("ck_referrals_status"), "referrals", "status IN ('pending', 'completed')"
    )
    op.drop_column("referrals", "expires_at")
    op.drop_column("referrals", "referee_email")
    op.drop_constraint(
        op.f("ck_referral_programs_expiration_days"), "referral_programs", type_="check"
    )
    op.drop_constraint(
        op.f("ck_referral_programs_min_qualifying_amount"), "referral_programs", type_="check"
    )
    op.drop_column("referral_programs", "expiration_days")
    op.drop_column("referral_programs", "min_qualifying_amount")
