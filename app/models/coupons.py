"""Coupons: discount definitions, their codes, and their redemptions (app.coupons).

Every code of a tenant environment, a coupon's own code and the single-use codes
generated for it alike, is one row of coupon_codes keyed by (tenant, env, code): a code
is unique across all coupons by that key, and validate and redeem find a code and its
coupon with one primary-key probe. The table carries no foreign key and no surrogate id:
a million generated codes are a million rows of one index each beside the coupon's
listing index, and a key check per row would be a lookup of the same coupon row a
million times. Coupons are only deactivated, never deleted, so a code never dangles.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column, uuid_pk

DISCOUNT_TYPES = ("percentage", "fixed", "free_shipping", "buy_x_get_y")
# Money and discount values: two decimal places, up to a trillion.
Money = Numeric(14, 2)


class Coupon(Base):
    """A discount and its rules. Its row lock serializes the coupon's redemptions and
    voids, which keep `usage_count` live."""

    __tablename__ = "coupons"
    __table_args__ = (
        CheckConstraint(
            "discount_type IN ('percentage', 'fixed', 'free_shipping', 'buy_x_get_y')",
            name="discount_type",
        ),
        CheckConstraint("usage_count >= 0", name="usage_count"),
        Index("ix_coupons_tenant_env_created", "tenant_id", "env", "created_at"),
        # What the expiry sweep reads: coupons past expires_at not yet announced.
        Index(
            "ix_coupons_expiry_due",
            "expires_at",
            postgresql_where=text("expired_event_at IS NULL AND expires_at IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    env: Mapped[str] = mapped_column(String(8))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    campaign: Mapped[str | None] = mapped_column(String(100))
    discount_type: Mapped[str] = mapped_column(String(16))
    discount_value: Mapped[Decimal | None] = mapped_column(Money)
    buy_quantity: Mapped[int | None]
    get_quantity: Mapped[int | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    min_order_amount: Mapped[Decimal | None] = mapped_column(Money)
    max_discount_amount: Mapped[Decimal | None] = mapped_column(Money)
    conditions: Mapped[dict[str, Any] | None]
    usage_limit: Mapped[int | None]
    usage_limit_per_user: Mapped[int | None]
    usage_count: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)
    starts_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    applicable_to: Mapped[list[str] | None]
    # `metadata` is the declarative base's own attribute: the column keeps the name.
    coupon_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    # When the expiry sweep announced coupon.expired (cleared when expires_at changes).
    expired_event_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime | None]


class CouponCode(Base):
    """A code of a coupon: its own (reusable within the coupon's limits) or a generated
    single-use one, which names the redemption that used it."""

    __tablename__ = "coupon_codes"
    __table_args__ = (Index("ix_coupon_codes_coupon", "coupon_id", "code"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    env: Mapped[str] = mapped_column(String(8), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    coupon_id: Mapped[uuid.UUID]
    single_use: Mapped[bool]
    redemption_id: Mapped[uuid.UUID | None]


class CouponRedemption(Base):
    """One use of a coupon for an order; voiding it gives the use back."""

    __tablename__ = "coupon_redemptions"
    __table_args__ = (
        CheckConstraint("status IN ('redeemed', 'voided')", name="status"),
        # An order redeems a coupon once (a replay finds the first redemption).
        Index(
            "uq_coupon_redemptions_order",
            "coupon_id",
            "order_id",
            unique=True,
            postgresql_where=text("status = 'redeemed'"),
        ),
        # usage_limit_per_user counts these.
        Index(
            "ix_coupon_redemptions_participant_live",
            "coupon_id",
            "participant_id",
            postgresql_where=text("status = 'redeemed'"),
        ),
        # new_customers_only asks whether a participant redeemed any coupon before.
        Index(
            "ix_coupon_redemptions_customer",
            "tenant_id",
            "env",
            "participant_id",
            postgresql_where=text("status = 'redeemed'"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    env: Mapped[str] = mapped_column(String(8))
    coupon_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("coupons.id"))
    code: Mapped[str] = mapped_column(String(64))
    participant_id: Mapped[str] = mapped_column(String(255))
    order_id: Mapped[str] = mapped_column(String(255))
    order_amount: Mapped[Decimal | None] = mapped_column(Money)
    discount_amount: Mapped[Decimal | None] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16))
    # The redeem request's fingerprint: a replay of the order with another body is refused.
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    operation_id: Mapped[uuid.UUID | None]
    redeemed_at: Mapped[datetime]
    voided_at: Mapped[datetime | None]
