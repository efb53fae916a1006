"""Actions and what they drive: earning rules, badges, streaks, challenges, leaderboards
(app.engagement).

Definitions are admin-written rows read by every batch of actions; the per-participant
rows (rule usage, badge progress, streak runs, challenge progress, leaderboard scores)
are written only by a transaction holding the participant's row lock, like its balance,
so they need no lock of their own. Nor do they have foreign keys, to participants or to
their definitions: a key check is a lookup and a share lock of the definition's row per
row written, four in ten of a batch's engagement writing, every batch locking the same
few definition rows. Definitions are only deactivated, never deleted, but for earning
rules, whose deletion removes their usage rows in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column, uuid_pk


class Action(Base):
    """One thing a participant did, as it was applied (what it caused is in the ledger,
    badges and, as they come, streaks and challenges, each naming the operation)."""

    # No index but the key: every index costs each of millions of inserts, and nothing
    # reads actions by participant yet.
    __tablename__ = "actions"

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    env: Mapped[str] = mapped_column(String(8))
    participant_pk: Mapped[uuid.UUID]
    action: Mapped[str] = mapped_column(String(100))
    properties: Mapped[dict[str, Any] | None]
    occurred_at: Mapped[datetime]
    operation_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = created_at_column()


class EarningRule(Base):
    """Points an action earns: `formula` over its properties (app.engagement.formula)."""

    __tablename__ = "earning_rules"
    __table_args__ = (
        Index(
            "ix_earning_rules_action",
            "tenant_id",
            "env",
            "action",
            postgresql_where=text("active"),
        ),
        CheckConstraint("max_points IS NULL OR max_points >= 0", name="max_points"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    env: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    formula: Mapped[str] = mapped_column(Text)
    # The 23blocks dialect's description; the native API neither takes nor shows it.
    description: Mapped[str | None] = mapped_column(Text)
    conditions: Mapped[dict[str, Any] | None]
    max_points: Mapped[int | None] = mapped_column(BigInteger)
    multipliers: Mapped[dict[str, Any] | None]
    caps: Mapped[dict[str, Any] | None]
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    active: Mapped[bool] = mapped_column(default=True)
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime | None]


class EarningRuleUsage(Base):
    """Points a rule has credited a participant on one day (in the rule's time zone): what
    its caps are checked against. A rule's total is the sum of its days."""

    __tablename__ = "earning_rule_usage"

    rule_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    participant_pk: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger)


class Badge(Base):
    """An achievement: earned once, by its criteria or by hand; unlike a reward it is not
    claimed and costs nothing (points_reward is paid when it is earned)."""

    __tablename__ = "badges"
    __table_args__ = (
        Index("ix_badges_tenant_env", "tenant_id", "env"),
        CheckConstraint("points_reward IS NULL OR points_reward >= 0", name="points_reward"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    env: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    image_url: Mapped[str | None] = mapped_column(String(2048))
    category: Mapped[str | None] = mapped_column(String(100))
    criteria: Mapped[dict[str, Any]]
    points_reward: Mapped[int | None] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(default=True)
    # The 23blocks dialect's slug and rarity: shown and filtered on there, nowhere else.
    slug: Mapped[str | None] = mapped_column(String(100))
    rarity: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime | None]


class BadgeProgress(Base):
    """How far a participant is toward a badge's criteria, counted from the badge's
    creation (a badge that counts actions or points)."""

    __tablename__ = "badge_progress"

    badge_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    participant_pk: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    current: Mapped[int] = mapped_column(BigInteger)


class ParticipantBadge(Base):
    """A badge a participant holds: at most once (the key)."""

    __tablename__ = "participant_badges"
    __table_args__ = (Index("ix_participant_badges_participant", "participant_pk", "awarded_at"),)

    badge_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("badges.id", ondelete="CASCADE"), primary_key=True
    )
    participant_pk: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    awarded_at: Mapped[datetime]
    # "criteria" or "manual"
    source: Mapped[str] = mapped_column(String(16))
    operation_id: Mapped[uuid.UUID | None]


class Streak(Base):
    """A streak definition, keyed by `streak_type` within a program: actions of `action`
    extend a participant's streak once per period."""

    __tablename__ = "streaks"
    __table_args__ = (
        UniqueConstraint("tenant_id", "env", "streak_type"),
        CheckConstraint("period IN ('daily', 'weekly')", name="period"),
        CheckConstraint("grace_period_hours >= 0", name="grace_period_hours"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    env: Mapped[str] = mapped_column(String(8))
    streak_type: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    period: Mapped[str] = mapped_column(String(8))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    grace_period_hours: Mapped[int] = mapped_column(default=0)
    # [{"days": N, "points": P}], by days
    milestones: Mapped[list[dict[str, Any]]]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime | None]


class ParticipantStreak(Base):
    """A participant's run of a streak. `deadline` is when it breaks unless extended (the
    sweep's due time); a broken run keeps its longest count and starts `run` anew."""

    __tablename__ = "participant_streaks"
    __table_args__ = (
        Index("ix_participant_streaks_due", "deadline", postgresql_where=text("current_count > 0")),
    )

    streak_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    participant_pk: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    current_count: Mapped[int]
    longest_count: Mapped[int]
    # The local start (day, or Monday of the week) of the last period that counted.
    last_period: Mapped[date | None]
    last_activity_at: Mapped[datetime | None]
    deadline: Mapped[datetime | None]
    run: Mapped[int] = mapped_column(default=1)
    # The milestones (days) paid in this run.
    milestones_paid: Mapped[list[int]] = mapped_column(JSONB)


class Challenge(Base):
    """A goal in a window: `target` actions of `action`, or points earned."""

    __tablename__ = "challenges"
    __table_args__ = (
        Index("ix_challenges_tenant_env", "tenant_id", "env"),
        CheckConstraint("type IN ('action_count', 'points_earned')", name="type"),
        CheckConstraint("target >= 1", name="target"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    env: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    action: Mapped[str | None] = mapped_column(String(100))
    target: Mapped[int] = mapped_column(BigInteger)
    # {"type": "points", "amount": N} or {"type": "reward", "reward_id": "..."}
    reward: Mapped[dict[str, Any] | None]
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    requires_enrollment: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime | None]


class ChallengeProgress(Base):
    """A participant's progress in a challenge (a row once enrolled or counted)."""

    __tablename__ = "challenge_progress"

    challenge_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    participant_pk: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    current: Mapped[int] = mapped_column(BigInteger)
    enrolled_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]


class Leaderboard(Base):
    """A ranking of participants by points earned, actions of one name or referrals
    completed as referrer, per period."""

    __tablename__ = "leaderboards"
    __table_args__ = (
        Index("ix_leaderboards_tenant_env", "tenant_id", "env"),
        CheckConstraint(
            "metric IN ('points_earned', 'action_count', 'referral_count')", name="metric"
        ),
        CheckConstraint("period IN ('all_time', 'daily', 'weekly', 'monthly')", name="period"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    env: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(16))
    action: Mapped[str | None] = mapped_column(String(100))
    period: Mapped[str] = mapped_column(String(8))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    size: Mapped[int] = mapped_column(default=100)
    notify_top: Mapped[int] = mapped_column(default=10)
    active: Mapped[bool] = mapped_column(default=True)
    # The 23blocks dialect's slug and prizes ([{"rank", "prize"}], shown on its entries).
    slug: Mapped[str | None] = mapped_column(String(100))
    prizes: Mapped[list[dict[str, Any]] | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime | None]


class LeaderboardScore(Base):
    """A participant's score on a leaderboard in one period (all_time: one period, its
    start the epoch). `reached_at` orders ties: who reached the score first ranks first."""

    __tablename__ = "leaderboard_scores"
    __table_args__ = (
        Index(
            "ix_leaderboard_scores_rank",
            "leaderboard_id",
            "period_start",
            text("score DESC"),
            "reached_at",
        ),
    )

    leaderboard_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    period_start: Mapped[date] = mapped_column(primary_key=True)
    participant_pk: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    score: Mapped[int] = mapped_column(BigInteger)
    reached_at: Mapped[datetime]


class BulkActionRow(Base):
    """One row of a bulk action upload, staged for the worker (like BulkAwardRow: applied
    in row order, a chunk per transaction with the operation's progress cursor; deleted
    with its operation by a statement trigger, not a foreign key)."""

    __tablename__ = "bulk_action_rows"
    __table_args__ = (
        Index(
            "ix_bulk_action_rows_failed",
            "operation_id",
            "row_number",
            postgresql_where=text("error IS NOT NULL"),
        ),
    )

    operation_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    row_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    participant_id: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str | None] = mapped_column(String(100))
    properties: Mapped[dict[str, Any] | None]
    occurred_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(500))
