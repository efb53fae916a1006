from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column, uuid_pk

REWARD_TYPES = ("coupon", "voucher", "physical", "digital", "points_multiplier")


class Reward(Base):
    """A catalog entry. Its row lock serializes claims of the reward."""

    __tablename__ = "rewards"
    __table_args__ = (
        UniqueConstraint("tenant_id", "env", "lookup_code"),
        CheckConstraint(
            "type IN ('coupon', 'voucher', 'physical', 'digital', 'points_multiplier')",
            name="type",
        ),
        CheckConstraint("points_cost IS NULL OR points_cost >= 0", name="points_cost"),
        CheckConstraint("max_claims_per_user >= 1", name="max_claims_per_user"),
        CheckConstraint("total_inventory IS NULL OR total_inventory >= 0", name="total_inventory"),
        CheckConstraint("codes_allocated <= codes_loaded", name="codes_allocated"),
        Index("ix_rewards_tenant_env_active", "tenant_id", "env", "is_active"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    env: Mapped[str] = mapped_column(String(8))
    lookup_code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)
    points_cost: Mapped[int | None]
    max_claims_per_user: Mapped[int] = mapped_column(default=1)
    total_inventory: Mapped[int | None]
    config: Mapped[dict[str, Any] | None]
    is_active: Mapped[bool] = mapped_column(default=True)
    available_from: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    code_expiry_days: Mapped[int | None]
    # Counters kept in the claim transaction under the reward row lock, so the catalog's
    # available_codes is live without counting the code table on every read.
    codes_loaded: Mapped[int] = mapped_column(default=0)
    codes_allocated: Mapped[int] = mapped_column(default=0)
    claims_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime | None]


class RewardCode(Base):
    """A pre-loaded code; `id` order is upload order, which is allocation order."""

    __tablename__ = "reward_codes"
    __table_args__ = (
        UniqueConstraint("reward_id", "code"),
        Index(
            "ix_reward_codes_unallocated",
            "reward_id",
            "id",
            postgresql_where=text("claim_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    reward_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rewards.id"))
    code: Mapped[str] = mapped_column(String(255))
    claim_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)
    allocated_at: Mapped[datetime | None]


class Claim(Base):
    """Append-only record of one claim: who got which code, when, for how many points."""

    __tablename__ = "claims"
    __table_args__ = (
        Index("ix_claims_participant", "tenant_id", "env", "participant_id", "claimed_at"),
        Index("ix_claims_reward_participant", "reward_id", "participant_id"),
        UniqueConstraint("reward_id", "code_value"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    env: Mapped[str] = mapped_column(String(8))
    reward_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rewards.id"))
    participant_id: Mapped[str] = mapped_column(String(255))
    code_value: Mapped[str | None] = mapped_column(String(255))
    claimed_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    points_deducted: Mapped[int | None]
    new_balance: Mapped[int | None] = mapped_column(BigInteger)
    operation_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
