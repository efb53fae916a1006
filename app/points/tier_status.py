"""A participant's tier status (where it stands, what the next tier takes), and a tier set
by hand.

Qualifying points are lifetime points (total_earned), or with a rolling window the points
earned in it (app.points.tier_sweeps): tiers are climbed at award and release time
(app.points.standings) and, rolling, fall at the tier sweep. An admin may place a
participant in any tier, with a reason, and lock it there until a date: while locked,
neither awards nor sweeps move it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import NotFound
from app.models import Participant
from app.outbox import TIER_DOWNGRADED, TIER_UPGRADED, record_event
from app.points.program import load_program
from app.points.tier_sweeps import NEVER_LAPSES, lapse_time
from app.points.tiers import TierRung, load_ladder, qualifying_credits, tier_not_found

TIER_REASON_MAX_CHARS = 200


def participant_not_found() -> NotFound:
    return NotFound("participant_not_found", "No participant exists with this id")


def progress_percentage(qualifying_points: int, following: TierRung | None) -> float:
    """How far towards the next tier, as the vendors show it: 8,500 of 15,000 is 56.67."""
    if following is None:
        return 100.0
    if following.points_required <= 0:
        return 100.0
    share = Decimal(qualifying_points) * 100 / Decimal(following.points_required)
    return float(min(share, Decimal(100)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class TierPosition:
    """Where a participant stands on its program's ladder."""

    current: TierRung | None
    following: TierRung | None  # the next tier up; None at the top
    qualifying_points: int
    window_days: int | None  # the rolling window; None: lifetime points
    # The window's credits, newest first (none on the lifetime basis).
    credits: list[tuple[datetime, int]]

    @property
    def points_to_next(self) -> int | None:
        following = self.following
        return max(0, following.points_required - self.qualifying_points) if following else None


def tier_position(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    participant: tuple[uuid.UUID, str | None, int] | None,
    window_days: int | None,
    now: datetime,
) -> TierPosition:
    """The tier position of `participant` (key, stored tier, lifetime points; None for
    one that does not exist), on the lifetime basis or the rolling `window_days`."""
    pk, tier_code, qualifying = participant or (None, None, 0)
    credits: list[tuple[datetime, int]] = []
    if window_days is not None and pk is not None:
        credits = qualifying_credits(session, [str(pk)], window_days, now).get(str(pk), [])
        qualifying = sum(amount for _, amount in credits)
    ladder = load_ladder(session, tenant_id, env)
    current = ladder.current(tier_code, qualifying)
    return TierPosition(current, ladder.next_above(current), qualifying, window_days, credits)


def tier_status(
    session: Session, tenant_id: uuid.UUID, env: str, participant_id: str
) -> dict[str, Any]:
    """Where the participant stands on the tenant's ladder; below every tier (and nothing
    earned) for an unknown id."""
    row = session.execute(
        select(
            Participant.id,
            Participant.tier_code,
            Participant.total_earned,
            Participant.tier_since,
            Participant.tier_locked_until,
        ).where(
            Participant.tenant_id == tenant_id,
            Participant.env == env,
            Participant.external_id == participant_id,
        )
    ).first()
    now = utcnow()
    window_days = load_program(session, tenant_id, env).tier_window_days
    position = tier_position(
        session, tenant_id, env, (row[0], row[1], row[2]) if row else None, window_days, now
    )
    tier_since, locked_until = (row[3], row[4]) if row else (None, None)
    current, following, qualifying = (
        position.current,
        position.following,
        position.qualifying_points,
    )
    # A lifetime tier, once reached, is kept; a rolling one lapses as points age out.
    rolling_tier = current if window_days is not None else None
    return {
        "participant_id": participant_id,
        "current_tier": current.reference() if current is not None else None,
        "next_tier": (
            {**following.reference(), "points_required": following.points_required}
            if following is not None
            else None
        ),
        "qualifying_points": qualifying,
        "points_to_next_tier": position.points_to_next,
        "progress_percentage": progress_percentage(qualifying, following),
        "tier_since": tier_since,
        "tier_expires_at": (
            _shown_lapse(lapse_time(rolling_tier, position.credits, window_days, now))
            if rolling_tier is not None and window_days is not None
            else None
        ),
        "points_to_maintain": (
            max(0, rolling_tier.points_required - qualifying) if rolling_tier is not None else None
        ),
        "tier_locked_until": locked_until if locked_until and locked_until > now else None,
    }


def _shown_lapse(moment: datetime | None) -> datetime | None:
    """A lapse time as the API shows it: a tier that never lapses shows none."""
    return None if moment == NEVER_LAPSES else moment


@dataclass(frozen=True, slots=True)
class TierChange:
    participant_pk: uuid.UUID
    previous: TierRung | None
    current: TierRung
    event_type: str | None  # tier.upgraded, tier.downgraded, or None (the same tier)


def set_tier(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    participant_id: str,
    tier_code: str,
    *,
    reason: str,
    locked_until: datetime | None,
) -> TierChange:
    """Place the participant in `tier_code` by hand (its row locked, like every balance
    change), optionally locked there until `locked_until`; records the event of a change
    of level. Never commits."""
    row = session.execute(
        select(Participant.id, Participant.total_earned, Participant.tier_code)
        .where(
            Participant.tenant_id == tenant_id,
            Participant.env == env,
            Participant.external_id == participant_id,
        )
        .with_for_update()
    ).first()
    if row is None:
        raise participant_not_found()
    pk, total_earned, stored_code = row
    ladder = load_ladder(session, tenant_id, env)
    wanted = ladder.find(tier_code)
    if wanted is None:
        raise tier_not_found()
    previous = ladder.current(stored_code, total_earned)
    now = utcnow()
    # A rolling program evaluates the tier anew at its next sweep (after the lock).
    values: dict[str, Any] = {
        "tier_code": wanted.code,
        "tier_locked_until": locked_until,
        "tier_expires_at": None,
    }
    if stored_code != wanted.code:
        values["tier_since"] = now
    session.execute(update(Participant).where(Participant.id == pk).values(values))
    event_type = _event_type(previous, wanted)
    if event_type is not None:
        record_event(
            session,
            tenant_id,
            env,
            event_type,
            {
                "participant_id": participant_id,
                "transaction_id": None,
                "previous_tier": previous.reference() if previous else None,
                "new_tier": wanted.reference(),
                "qualifying_points": total_earned,
                "reason": reason,
                "manual": True,
            },
        )
    return TierChange(pk, previous, wanted, event_type)


def _event_type(previous: TierRung | None, wanted: TierRung) -> str | None:
    if previous is None or wanted.level > previous.level:
        return TIER_UPGRADED
    if wanted.level < previous.level:
        return TIER_DOWNGRADED
    return None
