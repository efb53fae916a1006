"""Loyalty tiers: the tenant's ladder, where a participant stands on it, and its upkeep.
With a rolling window (app.points.program), the points a tier goes by are the credits of
the window (`qualifying_credits`).

A participant's tier is the highest level whose points_required its lifetime points
(total_earned) reach. The participant row stores the tier it was last placed in, so an
upgrade is reported once, by the award that crosses the threshold, and a tier is kept
when an admin later raises a threshold (no silent downgrade).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import flush_or_conflict
from app.errors import NotFound
from app.infra.pgcopy import fetch_tuples, plain_array_literal
from app.models import Participant, Tier
from app.text import holds_nul

TIER_FIELDS = frozenset(
    {"name", "level", "points_required", "points_multiplier", "benefits", "color", "is_active"}
)
_CONSTRAINT_CONFLICTS = {
    "uq_tiers_tenant_id_env_code": ("tier_already_exists", "A tier with this code already exists"),
    "uq_tiers_tenant_id_env_level": ("tier_level_taken", "Another tier already has this level"),
}


@dataclass(frozen=True, slots=True)
class TierRung:
    code: str
    name: str
    level: int
    points_required: int
    multiplier: Decimal

    def reference(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "level": self.level}


class TierLadder:
    """The active tiers of one tenant environment, lowest level first."""

    def __init__(self, rungs: list[TierRung]) -> None:
        self.rungs = sorted(rungs, key=lambda rung: rung.level)
        self._by_code = {rung.code: rung for rung in self.rungs}

    def __bool__(self) -> bool:
        return bool(self.rungs)

    def qualifying(self, total_earned: int) -> TierRung | None:
        """The highest-level tier whose threshold `total_earned` reaches."""
        for rung in reversed(self.rungs):
            if rung.points_required <= total_earned:
                return rung
        return None

    def find(self, code: str) -> TierRung | None:
        """The active tier with this code, if any."""
        return self._by_code.get(code)

    def current(self, tier_code: str | None, total_earned: int) -> TierRung | None:
        """The stored tier while it exists; otherwise where the lifetime points place one."""
        stored = self.find(tier_code) if tier_code is not None else None
        return stored if stored is not None else self.qualifying(total_earned)

    def next_above(self, rung: TierRung | None) -> TierRung | None:
        for candidate in self.rungs:
            if rung is None or candidate.level > rung.level:
                return candidate
        return None

    def upgrade_threshold(self, rung: TierRung | None) -> int | None:
        """The fewest lifetime points that reach a tier above `rung` (None: nothing above)."""
        above = [c.points_required for c in self.rungs if rung is None or c.level > rung.level]
        return min(above) if above else None


def load_ladder(session: Session, tenant_id: uuid.UUID, env: str) -> TierLadder:
    rows = session.execute(
        select(
            Tier.code, Tier.name, Tier.level, Tier.points_required, Tier.points_multiplier
        ).where(Tier.tenant_id == tenant_id, Tier.env == env, Tier.is_active.is_(True))
    )
    return TierLadder([TierRung(*row) for row in rows])


def tier_not_found() -> NotFound:
    return NotFound("tier_not_found", "No tier exists with this code")


def list_tiers(session: Session, tenant_id: uuid.UUID, env: str) -> list[Tier]:
    return list(
        session.execute(
            select(Tier).where(Tier.tenant_id == tenant_id, Tier.env == env).order_by(Tier.level)
        ).scalars()
    )


def tier_member_counts(session: Session, tenant_id: uuid.UUID, env: str) -> dict[str, int]:
    """How many participants each tier holds, by code (tiers holding none are absent)."""
    rows = session.execute(
        select(Participant.tier_code, func.count())
        .where(
            Participant.tenant_id == tenant_id,
            Participant.env == env,
            Participant.tier_code.is_not(None),
        )
        .group_by(Participant.tier_code)
    ).all()
    return {str(code): count for code, count in rows}


def get_tier(
    session: Session, tenant_id: uuid.UUID, env: str, code: str, *, lock: bool = False
) -> Tier:
    if holds_nul(code):  # names no tier (and PostgreSQL text cannot be compared with it)
        raise tier_not_found()
    query = select(Tier).where(Tier.tenant_id == tenant_id, Tier.env == env, Tier.code == code)
    if lock:
        # A concurrent delete then either waits for this change or makes this a 404.
        query = query.with_for_update()
    tier = session.execute(query).scalar_one_or_none()
    if tier is None:
        raise tier_not_found()
    return tier


def create_tier(
    session: Session, tenant_id: uuid.UUID, env: str, code: str, fields: dict[str, Any]
) -> Tier:
    """Create a tier; `fields` holds TIER_FIELDS values (name, level, points_required required)."""
    tier = Tier(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        env=env,
        code=code,
        name=fields["name"],
        level=fields["level"],
        points_required=fields["points_required"],
        points_multiplier=fields.get("points_multiplier", Decimal(1)),
        benefits=fields.get("benefits") or [],
        color=fields.get("color"),
        is_active=fields.get("is_active", True),
        created_at=utcnow(),
    )
    session.add(tier)
    flush_or_conflict(session, _CONSTRAINT_CONFLICTS)
    return tier


def update_tier(
    session: Session, tenant_id: uuid.UUID, env: str, code: str, changes: dict[str, Any]
) -> Tier:
    """Apply the given TIER_FIELDS changes; fields not given keep their values."""
    unknown = set(changes) - TIER_FIELDS
    if unknown:
        raise ValueError(f"not tier fields: {sorted(unknown)}")
    tier = get_tier(session, tenant_id, env, code, lock=True)
    for name, value in changes.items():
        setattr(tier, name, [] if name == "benefits" and value is None else value)
    if changes:
        tier.updated_at = utcnow()
        flush_or_conflict(session, _CONSTRAINT_CONFLICTS)
    return tier


def delete_tier(session: Session, tenant_id: uuid.UUID, env: str, code: str) -> uuid.UUID:
    """Delete a tier (its id returned). Its members keep their lifetime points and fall to
    the tier those reach."""
    if holds_nul(code):
        raise tier_not_found()
    deleted = session.execute(
        delete(Tier)
        .where(Tier.tenant_id == tenant_id, Tier.env == env, Tier.code == code)
        .returning(Tier.id)
    ).first()
    if deleted is None:
        raise tier_not_found()
    return uuid.UUID(str(deleted[0]))


# The credits that count for a rolling tier, by participant, newest first.
_QUALIFYING_CREDITS = """
    SELECT CAST(participant_pk AS text), created_at, amount FROM ledger_entries
    WHERE participant_pk = ANY(CAST(%(pks)s AS uuid[])) AND created_at > %(since)s
      AND ((type = 'award' AND available_at IS NULL) OR type = 'release')
    ORDER BY participant_pk, seq DESC
"""


def qualifying_credits(
    session: Session, pks: Iterable[str], window_days: int, now: datetime
) -> dict[str, list[tuple[datetime, int]]]:
    """Each participant's (by key) credits in the window ending `now`, newest first."""
    credits: dict[str, list[tuple[datetime, int]]] = {}
    rows = fetch_tuples(
        session,
        _QUALIFYING_CREDITS,
        {"pks": plain_array_literal(pks), "since": now - timedelta(days=window_days)},
    )
    for pk, created_at, amount in rows:
        credits.setdefault(pk, []).append((created_at, int(amount)))
    return credits


def qualifying_points(
    session: Session, pks: Iterable[str], window_days: int, now: datetime
) -> dict[str, int]:
    """Each participant's (by key) qualifying points in the window ending `now`."""
    return {
        pk: sum(amount for _, amount in credits)
        for pk, credits in qualifying_credits(session, pks, window_days, now).items()
    }
