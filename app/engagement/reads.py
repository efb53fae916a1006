"""Reading participants' streaks and challenges (the web's reads, straight from
PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from app.engagement.challenges import (
    ChallengeDef,
    challenge_not_enrolled,
    challenge_not_found,
)
from app.engagement.pipeline import streak_not_active
from app.engagement.streaks import StreakDef
from app.errors import parse_uuid
from app.models import Challenge, ChallengeProgress, ParticipantStreak, Streak
from app.points.queries import find_participant_pk


def _streak_def(streak: Streak) -> StreakDef:
    return StreakDef.of(
        {column.name: getattr(streak, column.key) for column in Streak.__mapper__.columns}
    )


def _streak_view(streak: Streak, run: ParticipantStreak | None, now: datetime) -> dict[str, Any]:
    definition = _streak_def(streak)
    current = run.current_count if run is not None else 0
    deadline = run.deadline if run is not None and current > 0 else None
    if deadline is not None and deadline < now:
        current, deadline = 0, None  # broken, not yet swept
    milestone = definition.next_milestone(current)
    return {
        "streak_type": streak.streak_type,
        "name": streak.name,
        "period": streak.period,
        "current_count": current,
        "longest_count": run.longest_count if run is not None else 0,
        "last_activity_at": run.last_activity_at if run is not None else None,
        "next_deadline": deadline,
        "next_milestone": (
            {"days": milestone.days, "points": milestone.points} if milestone else None
        ),
        "milestones_reached": sorted(run.milestones_paid) if run is not None and current else [],
        "milestone_points": sum(
            milestone.points
            for milestone in definition.milestones
            if run is not None and current and milestone.days in run.milestones_paid
        ),
    }


def participant_streaks(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    participant_id: str,
    now: datetime,
    streak_type: str | None = None,
) -> list[dict[str, Any]]:
    """The participant's runs of the program's active streaks (one of them, by type)."""
    pk = find_participant_pk(session, tenant_id, env, participant_id)
    query = (
        select(Streak, ParticipantStreak)
        .outerjoin(
            ParticipantStreak,
            and_(ParticipantStreak.streak_id == Streak.id, ParticipantStreak.participant_pk == pk),
        )
        .where(Streak.tenant_id == tenant_id, Streak.env == env, Streak.active)
        .order_by(Streak.streak_type)
    )
    if streak_type is not None:
        query = query.where(Streak.streak_type == streak_type)
    views = [_streak_view(streak, run, now) for streak, run in session.execute(query).all()]
    if streak_type is not None and not views:
        raise streak_not_active()
    return views


def _challenge_def(challenge: Challenge) -> ChallengeDef:
    return ChallengeDef.of(
        {column.name: getattr(challenge, column.key) for column in Challenge.__mapper__.columns}
    )


def _progress_view(
    challenge: Challenge, progress: ChallengeProgress | None, now: datetime
) -> dict[str, Any]:
    current = progress.current if progress is not None else 0
    remaining = (
        max(int((challenge.ends_at - now).total_seconds()), 0)
        if challenge.ends_at is not None
        else None
    )
    return {
        "challenge_id": str(challenge.id),
        "current": current,
        "target": challenge.target,
        "progress_percentage": round(100 * min(current, challenge.target) / challenge.target, 2),
        "completed": progress is not None and progress.completed_at is not None,
        "completed_at": progress.completed_at if progress is not None else None,
        "enrolled": progress is not None and progress.enrolled_at is not None,
        "enrolled_at": progress.enrolled_at if progress is not None else None,
        "time_remaining_seconds": remaining,
    }


# A challenge's participants and completions as columns of a query over challenges: counted
# in that one query, however many challenges it lists (shared with the admin's view).
CHALLENGE_PARTICIPANTS = (
    select(func.count())
    .where(ChallengeProgress.challenge_id == Challenge.id)
    .correlate(Challenge)
    .scalar_subquery()
)
CHALLENGE_COMPLETIONS = (
    select(func.count())
    .where(
        ChallengeProgress.challenge_id == Challenge.id,
        ChallengeProgress.completed_at.is_not(None),
    )
    .correlate(Challenge)
    .scalar_subquery()
)


def challenge_view(
    challenge: Challenge, participants: int, completions: int, now: datetime
) -> dict[str, Any]:
    definition = _challenge_def(challenge)
    return {
        "challenge_id": str(challenge.id),
        "name": challenge.name,
        "description": challenge.description,
        "type": challenge.type,
        "action": challenge.action,
        "target": challenge.target,
        "reward": challenge.reward,
        "starts_at": challenge.starts_at,
        "ends_at": challenge.ends_at,
        "requires_enrollment": challenge.requires_enrollment,
        "active": challenge.active,
        "running": challenge.active and definition.in_window(now),
        "participants_count": participants,
        "completions_count": completions,
    }


def list_challenges(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    now: datetime,
    *,
    participant_id: str | None = None,
    active: bool | None = None,
) -> list[dict[str, Any]]:
    """The program's challenges, oldest first, with their counts and (for a participant)
    its progress; `active` true: only those running now (active, started, not ended)."""
    pk = find_participant_pk(session, tenant_id, env, participant_id) if participant_id else None
    query = (
        select(Challenge, CHALLENGE_PARTICIPANTS, CHALLENGE_COMPLETIONS, ChallengeProgress)
        .outerjoin(
            ChallengeProgress,
            and_(
                ChallengeProgress.challenge_id == Challenge.id,
                ChallengeProgress.participant_pk == pk,
            ),
        )
        .where(Challenge.tenant_id == tenant_id, Challenge.env == env)
        .order_by(Challenge.created_at, Challenge.id)
    )
    views = []
    for challenge, participants, completions, progress in session.execute(query).all():
        view = challenge_view(challenge, participants, completions, now)
        if active is not None and view["running"] != active:
            continue
        if participant_id is not None:
            view["progress"] = _progress_view(challenge, progress, now)
        views.append(view)
    return views


def find_challenge(
    session: Session, tenant_id: uuid.UUID, env: str, challenge_id: str
) -> Challenge:
    challenge = session.get(Challenge, parse_uuid(challenge_id, challenge_not_found()))
    if challenge is None or challenge.tenant_id != tenant_id or challenge.env != env:
        raise challenge_not_found()
    return challenge


def participant_challenge(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    participant_id: str,
    challenge_id: str,
    now: datetime,
) -> dict[str, Any]:
    challenge = find_challenge(session, tenant_id, env, challenge_id)
    pk = find_participant_pk(session, tenant_id, env, participant_id)
    progress = session.get(ChallengeProgress, (challenge.id, pk)) if pk is not None else None
    if challenge.requires_enrollment and (progress is None or progress.enrolled_at is None):
        raise challenge_not_enrolled()
    return {"participant_id": participant_id, **_progress_view(challenge, progress, now)}
