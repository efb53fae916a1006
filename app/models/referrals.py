"""Referrals (app.referrals): the program's settings, participants' codes, and who
referred whom.

Participants are named by their external ids, like claims: a referee is usually someone
who has not earned anything yet, and tracking one must not create or lock their
participant row. The referral row is the unit of completion: it flips from pending to
completed once, under its row lock, and the payments follow from that flip.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Numeric, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column, uuid_pk

REFERRAL_PENDING, REFERRAL_COMPLETED, REFERRAL_EXPIRED = "pending", "completed", "expired"


class ReferralProgram(Base):
    """A tenant environment's referral program; no row: not configured (inactive)."""

    __tablename__ = "referral_programs"
    __table_args__ = (
        CheckConstraint("referrer_points >= 0 AND referee_points >= 0", name="points"),
        CheckConstraint("code_length BETWEEN 6 AND 32", name="code_length"),
        CheckConstraint(
            "max_referrals_per_referrer IS NULL OR max_referrals_per_referrer >= 1",
            name="max_referrals_per_referrer",
        ),
        CheckConstraint(
            "min_qualifying_amount IS NULL OR min_qualifying_amount >= 0",
            name="min_qualifying_amount",
        ),
        CheckConstraint(
            "expiration_days IS NULL OR expiration_days BETWEEN 1 AND 3650", name="expiration_days"
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    env: Mapped[str] = mapped_column(String(8), primary_key=True)
    referrer_points: Mapped[int] = mapped_column(BigInteger)
    referee_points: Mapped[int] = mapped_column(BigInteger)
    completion_action: Mapped[str | None] = mapped_column(String(100))
    max_referrals_per_referrer: Mapped[int | None]
    code_length: Mapped[int]
    active: Mapped[bool]
    # A completion qualifies only with an amount at least this (None: any, or none).
    min_qualifying_amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    # Referrals tracked from now on expire this many days after (None: never).
    expiration_days: Mapped[int | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime]


class ReferralCode(Base):
    """A participant's referral code, made on first ask and never changed. Tracking locks
    it: the row serializes the referrals of one referrer (its limit)."""

    __tablename__ = "referral_codes"
    __table_args__ = (Index("uq_referral_codes_code", "tenant_id", "env", "code", unique=True),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    env: Mapped[str] = mapped_column(String(8), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_at_column()


class Referral(Base):
    """One referee brought by one referrer; a referee is referred at most once."""

    __tablename__ = "referrals"
    __table_args__ = (
        Index("uq_referrals_referee", "tenant_id", "env", "referee_id", unique=True),
        Index("ix_referrals_referrer", "tenant_id", "env", "referrer_id", "created_at"),
        # What the expiry sweep reads: pending referrals by the time they expire.
        Index(
            "ix_referrals_due",
            "expires_at",
            postgresql_where=text("status = 'pending' AND expires_at IS NOT NULL"),
        ),
        CheckConstraint("status IN ('pending', 'completed', 'expired')", name="status"),
        CheckConstraint("referrer_id <> referee_id", name="not_self"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    env: Mapped[str] = mapped_column(String(8))
    referrer_id: Mapped[str] = mapped_column(String(255))
    referee_id: Mapped[str] = mapped_column(String(255))
    code: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=REFERRAL_PENDING)
    # The points each side was paid, fixed when it completed (0 while pending).
    referrer_points: Mapped[int] = mapped_column(BigInteger, default=0)
    referee_points: Mapped[int] = mapped_column(BigInteger, default=0)
    qualifying_action: Mapped[str | None] = mapped_column(String(100))
    qualifying_amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    order_id: Mapped[str | None] = mapped_column(String(255))
    referee_email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = created_at_column()
    completed_at: Mapped[datetime | None]
    # Fixed when tracked (the program's expiration_days then); past it a pending referral
    # is expired (judged at read and completion, flipped by the sweep: app.referrals.expiry).
    expires_at: Mapped[datetime | None]
