"""Reading a participant's badges and its progress toward one (the web's reads)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.engagement.challenges import ACTION_COUNT, POINTS_EARNED
from app.engagement.definitions import get_badge, parse_badge_id
from app.models import Badge, BadgeProgress, ParticipantBadge
from app.points.queries import find_participant_pk


def participant_badges(
    session: Session, tenant_id: uuid.UUID, env: str, participant_id: str
) -> list[dict[str, Any]]:
    """The badges a participant holds, most recently earned first (none for a participant
    never seen)."""
    pk = find_participant_pk(session, tenant_id, env, participant_id)
    if pk is None:
        return []
    rows = session.execute(
        select(Badge, ParticipantBadge.awarded_at, ParticipantBadge.source)
        .join(ParticipantBadge, ParticipantBadge.badge_id == Badge.id)
        .where(ParticipantBadge.participant_pk == pk)
        .order_by(ParticipantBadge.awarded_at.desc(), Badge.id)
    ).all()
    return [
        {
            "badge_id": str(badge.id),
            "name": badge.name,
            "description": badge.description,
            "image_url": badge.image_url,
            "category": badge.category,
            "points_reward": badge.points_reward,
            "awarded_at": awarded_at,
            "source": source,
        }
        for badge, awarded_at, source in rows
    ]


def badge_unlock_counts(session: Session, badge_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """How many participants hold each of the badges (those held by none are absent)."""
    if not badge_ids:
        return {}
    rows = session.execute(
        select(ParticipantBadge.badge_id, func.count())
        .where(ParticipantBadge.badge_id.in_(badge_ids))
        .group_by(ParticipantBadge.badge_id)
    ).all()
    return {badge_id: count for badge_id, count in rows}


def badge_progress(
    session: Session, tenant_id: uuid.UUID, env: str, participant_id: str, badge_id: str
) -> dict[str, Any]:
    """How far a participant is toward a badge: `current` of `target` (a badge awarded by
    hand has a target of 1: held or not)."""
    badge = get_badge(session, tenant_id, env, parse_badge_id(badge_id))
    pk = find_participant_pk(session, tenant_id, env, participant_id)
    criteria = badge.criteria
    if criteria["type"] == ACTION_COUNT:
        target = int(criteria["count"])
    elif criteria["type"] == POINTS_EARNED:
        target = int(criteria["points"])
    else:
        target = 1
    awarded_at: datetime | None = None
    current = 0
    if pk is not None:
        awarded_at = session.execute(
            select(ParticipantBadge.awarded_at).where(
                ParticipantBadge.badge_id == badge.id, ParticipantBadge.participant_pk == pk
            )
        ).scalar_one_or_none()
        counted = session.execute(
            select(BadgeProgress.current).where(
                BadgeProgress.badge_id == badge.id, BadgeProgress.participant_pk == pk
            )
        ).scalar_one_or_none()
        current = counted or 0
    earned = awarded_at is not None
    if earned:
        current = max(current, target)
    current = min(current, target)
    return {
        "participant_id": participant_id,
        "badge_id": str(badge.id),
        "name": badge.name,
        "current": current,
        "target": target,
        "progress_percentage": round(100 * current / target, 2) if target else 100.0,
        "earned": earned,
        "awarded_at": awarded_at,
    }
