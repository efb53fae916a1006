from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Numeric,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column, uuid_pk


class Participant(Base):
    """A participant's balance; its row lock serializes that participant's balance changes."""

    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("tenant_id", "env", "external_id"),
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        CheckConstraint(
            "balance = total_earned - total_spent - total_expired", name="balance_matches_totals"
        ),
        CheckConstraint("pending >= 0", name="pending_not_negative"),
        # The tier sweep's queue, per program: tiered participants due for evaluation.
        Index(
            "ix_participants_tier_due",
            "tenant_id",
            "env",
            "tier_expires_at",
            postgresql_where=text("tier_code IS NOT NULL"),
        ),
        # Every award updates the row: free room on its page keeps the update HOT (no new
        # index entries). Set by migration 0006; autogenerate does not compare it.
        {"postgresql_with": {"fillfactor": 70}},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    env: Mapped[str] = mapped_column(String(8))
    external_id: Mapped[str] = mapped_column(String(255))
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    total_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    total_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    total_expired: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Points awarded but not yet available (their lots are pending): counted in the ledger,
    # not in `balance` nor `total_earned` until released.
    pending: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    tier_code: Mapped[str | None] = mapped_column(String(64))
    # When it was placed in its tier (set whenever tier_code changes).
    tier_since: Mapped[datetime | None]
    # A tier set by hand stays, neither climbed from nor swept, until then.
    tier_locked_until: Mapped[datetime | None]
    # Rolling qualification (app.points.tier_sweeps): when the tier lapses unless new
    # points come ('infinity': never); None: not evaluated since it changed.
    tier_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime | None]


class LedgerEntry(Base):
    """Append-only; a participant's balance is the sum of its entries' amounts.

    Written once per award: each index costs a million insertions per million awards, so
    there are only those a query needs (the history pages and `ledger verify` read a
    participant's entries in seq order).
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_participant_seq", "participant_pk", "seq"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    env: Mapped[str] = mapped_column(String(8))
    participant_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"))
    type: Mapped[str] = mapped_column(String(32))
    # Signed: credits positive, debits negative.
    amount: Mapped[int] = mapped_column(BigInteger)
    base_amount: Mapped[int] = mapped_column(BigInteger)
    multipliers: Mapped[list[dict[str, Any]] | None]
    reason: Mapped[str | None] = mapped_column(String(500))
    # What the participant did to earn an award (the award's optional `action`), and the
    # terms of its points: when they became available (None: at once) and expire (None:
    # never). The ledger keeps them; the lot (PointLot) is only what is left to spend.
    action: Mapped[str | None] = mapped_column(String(100))
    available_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    balance_after: Mapped[int] = mapped_column(BigInteger)
    operation_id: Mapped[uuid.UUID | None]
    claim_id: Mapped[uuid.UUID | None]
    # The earning rule that credited it (app.engagement); no key: a rule may be deleted.
    rule_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = created_at_column()
    # Insert order. Entries are written under the participant's row lock, so per participant
    # this is the order they were applied in; created_at (transaction start) is not.
    seq: Mapped[int] = mapped_column(BigInteger, Identity())


class PointLot(Base):
    """The unspent rest of one credit that expires or is pending (app.points.lots).

    Credits available at once that never expire are not kept here: they are the
    participant's open points, `balance` minus the remaining amounts of its available lots,
    spent after every dated lot. A lot with nothing left, spent or expired, is deleted (its
    award's ledger line keeps its terms), so the table holds only live lots. Rows are
    written under the participant's row lock, like its balance. `seq` (insert order, the
    oldest-first tie-break) is its key: appended in order, cheap to index.

    No foreign key to participants, unlike the ledger: a lot is working state derived from
    its award's ledger line, written only by a transaction holding its participant's row
    lock, and `rewards ledger verify` proves lots against balances. The key check (a lookup
    and a row lock per lot) was a third of an expiring award's extra cost.
    """

    __tablename__ = "point_lots"
    __table_args__ = (
        CheckConstraint("remaining > 0 AND remaining <= amount", name="remaining"),
        CheckConstraint("NOT pending OR available_at IS NOT NULL", name="pending_until"),
        CheckConstraint(
            "expires_at IS NULL OR available_at IS NULL OR expires_at > available_at",
            name="expires_after_available",
        ),
        # Spending order: soonest-expiring first, never-expiring last, oldest first.
        Index(
            "ix_point_lots_spending",
            "participant_pk",
            "expires_at",
            "seq",
            postgresql_where=text("NOT pending"),
        ),
        # The expiry sweep's queue.
        Index(
            "ix_point_lots_expiring",
            "expires_at",
            postgresql_where=text("NOT pending AND expires_at IS NOT NULL"),
        ),
        # The release sweep's queue, and a participant's pending lots.
        Index(
            "ix_point_lots_pending",
            "available_at",
            postgresql_where=text("pending"),
        ),
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    participant_pk: Mapped[uuid.UUID]
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    pending: Mapped[bool] = mapped_column(default=False)
    available_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()


class ProgramSettings(Base):
    """A tenant environment's points program settings; no row means the defaults."""

    __tablename__ = "program_settings"
    __table_args__ = (
        CheckConstraint(
            "points_expiry_days IS NULL OR points_expiry_days BETWEEN 1 AND 36500",
            name="points_expiry_days",
        ),
        CheckConstraint("expiring_soon_days BETWEEN 1 AND 365", name="expiring_soon_days"),
        CheckConstraint(
            "tier_window_days IS NULL OR tier_window_days BETWEEN 1 AND 3650",
            name="tier_window_days",
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    env: Mapped[str] = mapped_column(String(8), primary_key=True)
    points_expiry_days: Mapped[int | None]
    expiring_soon_days: Mapped[int] = mapped_column(default=30, server_default="30")
    # Tier qualification: None for lifetime points, else points earned in this many days.
    tier_window_days: Mapped[int | None]
    # The program's holidays, "YYYY-MM-DD" sorted and distinct: the days earning rules'
    # `holiday` multipliers apply (app.engagement.rules), judged in each rule's zone.
    holidays: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    updated_at: Mapped[datetime | None]


class Tier(Base):
    __tablename__ = "tiers"
    __table_args__ = (
        UniqueConstraint("tenant_id", "env", "code"),
        # A participant's tier is the highest level it qualifies for: levels must not tie.
        UniqueConstraint("tenant_id", "env", "level"),
        CheckConstraint("points_required >= 0", name="points_required"),
        CheckConstraint("points_multiplier > 0", name="points_multiplier"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    env: Mapped[str] = mapped_column(String(8))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[int]
    points_required: Mapped[int] = mapped_column(BigInteger)
    points_multiplier: Mapped[Decimal] = mapped_column(Numeric(8, 3), default=Decimal(1))
    benefits: Mapped[list[str] | None]
    color: Mapped[str | None] = mapped_column(String(32))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime | None]


class ParticipantMultiplier(Base):
    """A points multiplier won by claiming a points_multiplier reward, active until expiry."""

    __tablename__ = "participant_multipliers"
    __table_args__ = (CheckConstraint("multiplier > 0", name="multiplier"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    env: Mapped[str] = mapped_column(String(8))
    participant_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), index=True)
    multiplier: Mapped[Decimal] = mapped_column(Numeric(8, 3))
    starts_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    claim_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = created_at_column()


class BulkAwardRow(Base):
    """One row of a bulk award upload, staged before its operation is committed.

    The worker awards staged rows in row-number order, a chunk per transaction, advancing the
    operation's progress cursor in that same transaction; a row is awarded exactly once
    whatever crashes. Rows that failed validation carry their `error` for the report.
    Deleting the operation (idempotency retention) deletes its rows: a statement trigger on
    operations does (migration 0006), not a foreign key, whose check cost a lookup and a
    row lock per staged row (half of an upload's database time). The rows are staged in
    the transaction that inserts their operation, so they cannot reference a missing one.
    """

    __tablename__ = "bulk_award_rows"
    __table_args__ = (
        # The error report reads only failed rows: usually a handful among a million.
        Index(
            "ix_bulk_award_rows_failed",
            "operation_id",
            "row_number",
            postgresql_where=text("error IS NOT NULL"),
        ),
    )

    operation_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    row_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    participant_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(String(500))
    # The row's action and lot terms, resolved to instants when staged (app.points.lots).
    action: Mapped[str | None] = mapped_column(String(100))
    available_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(500))
