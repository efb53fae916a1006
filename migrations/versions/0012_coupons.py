"""coupons, coupon codes, coupon redemptions

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 17:30:34.573728

coupons are the admin's discount definitions with their live usage_count; coupon_codes
holds every code of a tenant environment (a coupon's own and its generated single-use
ones), keyed by (tenant_id, env, code) so one probe finds a code's coupon;
coupon_redemptions records each use, voided ones kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coupon_codes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("env", sa.String(length=8), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("coupon_id", sa.Uuid(), nullable=False),
        sa.Column("single_use", sa.Boolean(), nullable=False),
        sa.Column("redemption_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "env", "code", name=op.f("pk_coupon_codes")),
    )
    op.create_index("ix_coupon_codes_coupon", "coupon_codes", ["coupon_id", "code"], unique=False)
    op.create_table(
        "coupons",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("env", sa.String(length=8), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("campaign", sa.String(length=100), nullable=True),
        sa.Column("discount_type", sa.String(length=16), nullable=False),
        sa.Column("discount_value", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("buy_quantity", sa.Integer(), nullable=True),
        sa.Column("get_quantity", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("min_order_amount", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("max_discount_amount", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("conditions", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("usage_limit", sa.Integer(), nullable=True),
        sa.Column("usage_limit_per_user", sa.Integer(), nullable=True),
        sa.Column("usage_count", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("applicable_to", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("expired_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "discount_type IN ('percentage', 'fixed', 'free_shipping', 'buy_x_get_y')",
            name=op.f("ck_coupons_discount_type"),
        ),
        sa.CheckConstraint("usage_count >= 0", name=op.f("ck_coupons_usage_count")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_coupons_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
    )
    op.create_index(
        "ix_coupons_expiry_due",
        "coupons",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("expired_event_at IS NULL AND expires_at IS NOT NULL"),
    )
    op.create_index(
        "ix_coupons_tenant_env_created", "coupons", ["tenant_id", "env", "created_at"], unique=False
    )
    op.create_table(
        "coupon_redemptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("env", sa.String(length=8), nullable=False),
        sa.Column("coupon_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("participant_id", sa.String(length=255), nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=False),
        sa.Column("order_amount", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("discount_amount", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("operation_id", sa.Uuid(), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('redeemed', 'voided')", name=op.f("ck_coupon_redemptions_status")
        ),
        sa.ForeignKeyConstraint(
            ["coupon_id"], ["coupons.id"], name=op.f("fk_coupon_redemptions_coupon_id_coupons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_redemptions")),
    )
    op.create_index(
        "ix_coupon_redemptions_customer",
        "coupon_redemptions",
        ["tenant_id", "env", "participant_id"],
        unique=False,
        postgresql_where=sa.text("status = 'redeemed'"),
    )
    op.create_index(
        "ix_coupon_redemptions_participant_live",
        "coupon_redemptions",
        ["coupon_id", "participant_id"],
        unique=False,
        postgresql_where=sa.text("status = 'redeemed'"),
    )
    op.create_index(
        "uq_coupon_redemptions_order",
        "coupon_redemptions",
        ["coupon_id", "order_id"],
        unique=True,
        postgresql_where=sa.text("status = 'redeemed'"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_coupon_redemptions_order",
        table_name="coupon_redemptions",
        postgresql_where=sa.text("status = 'redeemed'"),
    )
    op.drop_index(
        "ix_coupon_redemptions_participant_live",
        table_name="coupon_redemptions",
        postgresql_where=sa.text("status = 'redeemed'"),
    )
    op.drop_index(
        "ix_coupon_redemptions_customer",
        table_name="coupon_redemptions",
        postgresql_where=sa.text("status = 'redeemed'"),
    )
    op.drop_table("coupon_redemptions")
    op.drop_index("ix_coupons_tenant_env_created", table_name="coupons")
    op.drop_index(
        "ix_coupons_expiry_due",
        table_name="coupons",
        postgresql_where=sa.text("expired_event_at IS NULL AND expires_at IS NOT NULL"),
    )
    op.drop_table("coupons")
    op.drop_index("ix_coupon_codes_coupon", table_name="coupon_codes")
    op.drop_table("coupon_codes")
