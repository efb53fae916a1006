"""referral program, referral codes, referrals

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 17:30:12.240910

referral_programs holds a tenant environment's settings (no row: not configured);
referral_codes a participant's code, unique per tenant and environment; referrals who
referred whom (a referee at most once), pending until completed, with the points each side
was paid.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "referral_codes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("env", sa.String(length=8), nullable=False),
        sa.Column("participant_id", sa.String(length=255), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_referral_codes_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "env", "participant_id", name=op.f("pk_referral_codes")
        ),
    )
    op.create_index(
        "uq_referral_codes_code", "referral_codes", ["tenant_id", "env", "code"], unique=True
    )
    op.create_table(
        "referral_programs",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("env", sa.String(length=8), nullable=False),
        sa.Column("referrer_points", sa.BigInteger(), nullable=False),
        sa.Column("referee_points", sa.BigInteger(), nullable=False),
        sa.Column("completion_action", sa.String(length=100), nullable=True),
        sa.Column("max_referrals_per_referrer", sa.Integer(), nullable=True),
        sa.Column("code_length", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "code_length BETWEEN 6 AND 32", name=op.f("ck_referral_programs_code_length")
        ),
        sa.CheckConstraint(
            "max_referrals_per_referrer IS NULL OR max_referrals_per_referrer >= 1",
            name=op.f("ck_referral_programs_max_referrals_per_referrer"),
        ),
        sa.CheckConstraint(
            "referrer_points >= 0 AND referee_points >= 0", name=op.f("ck_referral_programs_points")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_referral_programs_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "env", name=op.f("pk_referral_programs")),
    )
    op.create_table(
        "referrals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("env", sa.String(length=8), nullable=False),
        sa.Column("referrer_id", sa.String(length=255), nullable=False),
        sa.Column("referee_id", sa.String(length=255), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("referrer_points", sa.BigInteger(), nullable=False),
        sa.Column("referee_points", sa.BigInteger(), nullable=False),
        sa.Column("qualifying_action", sa.String(length=100), nullable=True),
        sa.Column("qualifying_amount", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("order_id", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'completed')", name=op.f("ck_referrals_status")),
        sa.CheckConstraint("referrer_id <> referee_id", name=op.f("ck_referrals_not_self")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_referrals_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referrals")),
    )
    op.create_index(
        "ix_referrals_referrer",
        "referrals",
        ["tenant_id", "env", "referrer_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "uq_referrals_referee", "referrals", ["tenant_id", "env", "referee_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_referrals_referee", table_name="referrals")
    op.drop_index("ix_referrals_referrer", table_name="referrals")
    op.drop_table("referrals")
    op.drop_table("referral_programs")
    op.drop_index("uq_referral_codes_code", table_name="referral_codes")
    op.drop_table("referral_codes")
