from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column, uuid_pk

REWARD_TYPES = ("coupon", "voucher", "physical", "digital", "points_multiplier")
CLAIM_STATUSES = ("fulfilled", "used", "cancelled")


class Reward(Base):
    """A catalog entry. Its row lock serializes claims of the reward."""

    __tablename__ = "rewards"
    __table_args__ = (
        UniqueConstraint("tenant_id", "env", "lookup_code"),
        # Several rewards may have no slug (NULLs are distinct).
        UniqueConstraint("tenant_id", "env", "slug"),
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
    category: Mapped[str | None] = mapped_column(String(100))
    image_url: Mapped[str | None] = mapped_column(String(2048))
    slug: Mapped[str | None] = mapped_column(String(100))
    # The 23blocks document's reward type as it was given (fixed_discount, experience, ...):
    # `type` holds the native kind it maps to (api/blocks/catalog.py).
    blocks_type: Mapped[str | None] = mapped_column(String(64))
    # json, not jsonb: returned exactly as given (key order included); never queried into.
    custom_attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    media: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Counters kept in the claim transaction under the reward row lock, so the catalog's
    # available_codes is live without counting the code table on every read.
    codes_loaded: Mapped[int] = mapped_column(default=0)
    codes_allocated: Mapped[int] = mapped_column(default=0)
    # Claims taken and not cancelled: what total_inventory caps, and the catalog's
    # redemption_count.
    claims_count: Mapped[int] = mapped_column(default=0)
    # The catalog's `popular` sort: claims per UTC day over the last 30 days, net of
    # cancellations, as a ring of 30 slots (a day's slot is its ordinal modulo 30) that
    # holds the days up to recent_claims_through; the claim transaction's writer moves it
    # on with the SQL function reward_recent_claims (migration 0010) in the statement that
    # writes the reward's counters (app.rewards.claim_writes).
    # On the reward row, which every claim transaction already locks and updates: it costs
    # a claim little (one more SET in that UPDATE), where an index on claims(reward_id,
    # claimed_at) costs an insertion per claim and a per-day counter table an upsert per
    # batch (measured: 5 % of a one-claim transaction), and the sort reads 30 numbers per
    # reward instead of counting its claims.
    recent_claims: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    recent_claims_through: Mapped[date | None]
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
    """One claim: who got which code, when, for how many points, and where it stands.

    Written once by the claim transaction, then only its status moves on: fulfilled ->
    used, or fulfilled -> cancelled. The status is a column updated in place rather than
    rows of a status-change table: a claim changes at most once, every change runs in the
    claim lane of its reward (app.rewards.claim_batches) under the reward's row lock and
    the claim row's own, and the update is conditional on `status = 'fulfilled'`, so a
    second cancel finds nothing to change and refunds nothing. Readers (the per-user cap,
    a participant's claims, points spent) then see the state in the row itself, with no
    join; the ledger keeps the history of the points, the audit of when is used_at and
    cancelled_at.
    """

    __tablename__ = "claims"
    __table_args__ = (
        Index("ix_claims_participant", "tenant_id", "env", "participant_id", "claimed_at"),
        # The per-user cap's count, of live claims only: index-only, as it was before
        # claims could be cancelled.
        Index(
            "ix_claims_reward_participant",
            "reward_id",
            "participant_id",
            postgresql_where=text("status <> 'cancelled'"),
        ),
        # A cancelled claim's pre-loaded code goes back to stock and may be handed out
        # again: only live claims hold a code exclusively.
        Index(
            "uq_claims_reward_code_live",
            "reward_id",
            "code_value",
            unique=True,
            postgresql_where=text("status <> 'cancelled'"),
        ),
        CheckConstraint("status IN ('fulfilled', 'used', 'cancelled')", name="status"),
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
    status: Mapped[str] = mapped_column(String(16), server_default="fulfilled")
    used_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    # What the claimant sent with the claim (size, colour): a flat object, as given.
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
