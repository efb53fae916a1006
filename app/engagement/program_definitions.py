"""The admin's streak, challenge and leaderboard definitions: create, read, change,
deactivate.

The rows are stored in the shapes the action pipeline reads (StreakDef.of,
ChallengeDef.of; leaderboard scoring), so what a check here lets through is what a batch
of actions will run with. Definitions are never deleted: participants' runs, progress and
scores point at them, so an admin's delete deactivates.

Checks that span fields run on the row as it will be stored (its fields merged with a
change), so a partial change cannot pair, say, a new type with the old action.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import flush_or_conflict
from app.engagement.challenges import ACTION_COUNT, challenge_not_found
from app.engagement.leaderboards import leaderboard_not_found
from app.engagement.reads import CHALLENGE_COMPLETIONS, CHALLENGE_PARTICIPANTS
from app.engagement.rules import zone
from app.errors import DomainError, NotFound, parse_uuid
from app.models import Challenge, Leaderboard, Reward, Streak

STREAK_TYPE_CHARS = "[A-Za-z0-9_.:-]{1,100}"
STREAK_FIELDS = frozenset(
    {"name", "action", "period", "timezone", "grace_period_hours", "milestones", "active"}
)
CHALLENGE_FIELDS = frozenset(
    {
        "name",
        "description",
        "type",
        "action",
        "target",
        "reward",
        "starts_at",
        "ends_at",
        "requires_enrollment",
        "active",
    }
)
LEADERBOARD_FIELDS = frozenset({"name", "size", "notify_top", "active"})
# Scores are kept per period in the board's zone for the one metric: changing any of these
# would leave the scores already kept counting something else.
LEADERBOARD_FIXED_FIELDS = ("metric", "action", "period", "timezone")
_STREAK_TYPE_TAKEN = "uq_streaks_tenant_id_env_streak_type"


def streak_not_found() -> NotFound:
    return NotFound("streak_not_found", "No streak exists with this streak_type")


def _invalid(detail: str) -> DomainError:
    return DomainError("validation_error", detail, 422)


def is_time_zone(name: str) -> bool:
    """Whether `name` is a zone the workers can run periods in (an IANA name)."""
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: a path-like key ("../x", "/etc/x"); OSError: a tz directory's name
        # where tzdata comes from a package.
        return False
    return True


def _unknown_fields(changes: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"not definition fields: {sorted(unknown)}")


# --- streaks ------------------------------------------------------------------------------


def _stored_milestones(milestones: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        ({"days": int(m["days"]), "points": int(m["points"])} for m in milestones),
        key=lambda milestone: milestone["days"],
    )


def list_streaks(
    session: Session, tenant_id: uuid.UUID, env: str, *, active: bool | None = None
) -> list[Streak]:
    query = select(Streak).where(Streak.tenant_id == tenant_id, Streak.env == env)
    if active is not None:
        query = query.where(Streak.active.is_(active))
    return list(session.execute(query.order_by(Streak.streak_type)).scalars())


def get_streak(session: Session, tenant_id: uuid.UUID, env: str, streak_type: str) -> Streak:
    # A path that cannot be a streak type names none (and a NUL never reaches PostgreSQL).
    if not re.fullmatch(STREAK_TYPE_CHARS, streak_type):
        raise streak_not_found()
    query = select(Streak).where(
        Streak.tenant_id == tenant_id, Streak.env == env, Streak.streak_type == streak_type
    )
    streak = session.execute(query).scalar_one_or_none()
    if streak is None:
        raise streak_not_found()
    return streak


def create_streak(
    session: Session, tenant_id: uuid.UUID, env: str, streak_type: str, fields: dict[str, Any]
) -> Streak:
    """Create a streak; `fields` holds STREAK_FIELDS values (name and action required)."""
    streak = Streak(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        env=env,
        streak_type=streak_type,
        name=fields["name"],
        action=fields["action"],
        period=fields.get("period", "daily"),
        timezone=fields.get("timezone", "UTC"),
        grace_period_hours=fields.get("grace_period_hours", 0),
        milestones=_stored_milestones(fields.get("milestones") or []),
        active=fields.get("active", True),
        created_at=utcnow(),
    )
    session.add(streak)
    flush_or_conflict(
        session,
        {
            _STREAK_TYPE_TAKEN: (
                "streak_already_exists",
                "A streak with this streak_type already exists",
            )
        },
    )
    return streak


def update_streak(
    session: Session, tenant_id: uuid.UUID, env: str, streak_type: str, changes: dict[str, Any]
) -> Streak:
    """Apply the given STREAK_FIELDS changes; fields not given keep their values."""
    _unknown_fields(changes, STREAK_FIELDS)
    streak = get_streak(session, tenant_id, env, streak_type)
    for name, value in changes.items():
        setattr(streak, name, _stored_milestones(value) if name == "milestones" else value)
    if changes:
        streak.updated_at = utcnow()
        session.flush()
    return streak


def deactivate_streak(session: Session, tenant_id: uuid.UUID, env: str, streak_type: str) -> Streak:
    """Actions stop extending it; participants' runs are kept (reactivate: active true)."""
    return update_streak(session, tenant_id, env, streak_type, {"active": False})


# --- challenges ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredChallenge:
    challenge: Challenge
    participants: int  # progress rows: enrolled or counted
    completions: int


def _with_counts(tenant_id: uuid.UUID, env: str) -> Select[Challenge, int, int]:
    return select(Challenge, CHALLENGE_PARTICIPANTS, CHALLENGE_COMPLETIONS).where(
        Challenge.tenant_id == tenant_id, Challenge.env == env
    )


def list_challenge_definitions(
    session: Session, tenant_id: uuid.UUID, env: str, *, active: bool | None = None
) -> list[StoredChallenge]:
    """The program's challenges, oldest first, each counted in the one query."""
    query = _with_counts(tenant_id, env)
    if active is not None:
        query = query.where(Challenge.active.is_(active))
    rows = session.execute(query.order_by(Challenge.created_at, Challenge.id)).all()
    return [
        StoredChallenge(challenge, participants, completions)
        for challenge, participants, completions in rows
    ]


def get_challenge_definition(
    session: Session, tenant_id: uuid.UUID, env: str, challenge_id: str
) -> StoredChallenge:
    key = parse_uuid(challenge_id, challenge_not_found())
    query = _with_counts(tenant_id, env).where(Challenge.id == key)
    row = session.execute(query).one_or_none()
    if row is None:
        raise challenge_not_found()
    challenge, participants, completions = row
    return StoredChallenge(challenge, participants, completions)


def _stored_reward(
    session: Session, tenant_id: uuid.UUID, env: str, reward: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The reward as ChallengeDef reads it; a catalog reward must be the program's own."""
    if reward is None:
        return None
    if reward["type"] == "points":
        return {"type": "points", "amount": int(reward["amount"])}
    reward_id = uuid.UUID(str(reward["reward_id"]))
    found = session.execute(
        select(Reward.id).where(
            Reward.id == reward_id, Reward.tenant_id == tenant_id, Reward.env == env
        )
    ).scalar_one_or_none()
    if found is None:
        raise _invalid("reward.reward_id names no reward of this program")
    return {"type": "reward", "reward_id": str(reward_id)}


def _instant(value: datetime | None) -> datetime | None:
    # In UTC, as PostgreSQL answers it: the answer to a change reads as any later read does.
    return value.astimezone(UTC) if value is not None else None


def _check_challenge(challenge: Challenge) -> None:
    if challenge.type == ACTION_COUNT and challenge.action is None:
        raise _invalid("an action_count challenge needs an action")
    if challenge.type != ACTION_COUNT and challenge.action is not None:
        raise _invalid("a points_earned challenge takes no action (send action: null)")
    starts_at, ends_at = challenge.starts_at, challenge.ends_at
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise _invalid("ends_at must be later than starts_at")


def create_challenge(
    session: Session, tenant_id: uuid.UUID, env: str, fields: dict[str, Any]
) -> StoredChallenge:
    """Create a challenge; `fields` holds CHALLENGE_FIELDS values (name, type, target
    required)."""
    challenge = Challenge(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        env=env,
        name=fields["name"],
        description=fields.get("description"),
        type=fields["type"],
        action=fields.get("action"),
        target=fields["target"],
        reward=_stored_reward(session, tenant_id, env, fields.get("reward")),
        starts_at=_instant(fields.get("starts_at")),
        ends_at=_instant(fields.get("ends_at")),
        requires_enrollment=fields.get("requires_enrollment", False),
        active=fields.get("active", True),
        created_at=utcnow(),
    )
    _check_challenge(challenge)
    session.add(challenge)
    session.flush()
    return StoredChallenge(challenge, 0, 0)


def update_challenge(
    session: Session, tenant_id: uuid.UUID, env: str, challenge_id: str, changes: dict[str, Any]
) -> StoredChallenge:
    """Apply the given CHALLENGE_FIELDS changes; fields not given keep their values.
    Progress is not recounted: completions stand, and a participant already past a lowered
    target completes with its next counted activity."""
    _unknown_fields(changes, CHALLENGE_FIELDS)
    key = parse_uuid(challenge_id, challenge_not_found())
    # Locked: two changes checked each against the stored row could otherwise together
    # store a pair neither was checked with (a type from one, an action from the other).
    challenge = session.execute(
        select(Challenge)
        .where(Challenge.id == key, Challenge.tenant_id == tenant_id, Challenge.env == env)
        .with_for_update()
    ).scalar_one_or_none()
    if challenge is None:
        raise challenge_not_found()
    values = dict(changes)
    if "reward" in values:
        values["reward"] = _stored_reward(session, tenant_id, env, values["reward"])
    for name in ("starts_at", "ends_at"):
        if name in values:
            values[name] = _instant(values[name])
    for name, value in values.items():
        setattr(challenge, name, value)
    _check_challenge(challenge)
    if changes:
        challenge.updated_at = utcnow()
        session.flush()
    return get_challenge_definition(session, tenant_id, env, challenge_id)


def deactivate_challenge(
    session: Session, tenant_id: uuid.UUID, env: str, challenge_id: str
) -> Challenge:
    """Nothing counts toward it any more; participants' progress is kept."""
    return update_challenge(session, tenant_id, env, challenge_id, {"active": False}).challenge


# --- leaderboards -------------------------------------------------------------------------


def list_leaderboards(
    session: Session, tenant_id: uuid.UUID, env: str, *, active: bool | None = None
) -> list[Leaderboard]:
    query = select(Leaderboard).where(Leaderboard.tenant_id == tenant_id, Leaderboard.env == env)
    if active is not None:
        query = query.where(Leaderboard.active.is_(active))
    return list(session.execute(query.order_by(Leaderboard.created_at, Leaderboard.id)).scalars())


def get_leaderboard(
    session: Session, tenant_id: uuid.UUID, env: str, leaderboard_id: str, *, lock: bool = False
) -> Leaderboard:
    key = parse_uuid(leaderboard_id, leaderboard_not_found())
    query = select(Leaderboard).where(
        Leaderboard.id == key, Leaderboard.tenant_id == tenant_id, Leaderboard.env == env
    )
    if lock:
        # As for challenges: a size and a notify_top changed at once are checked together.
        query = query.with_for_update()
    leaderboard = session.execute(query).scalar_one_or_none()
    if leaderboard is None:
        raise leaderboard_not_found()
    return leaderboard


def _check_leaderboard(leaderboard: Leaderboard) -> None:
    if leaderboard.metric == ACTION_COUNT and leaderboard.action is None:
        raise _invalid("an action_count leaderboard needs an action")
    if leaderboard.metric != ACTION_COUNT and leaderboard.action is not None:
        raise _invalid(f"a {leaderboard.metric} leaderboard takes no action")
    if leaderboard.notify_top > leaderboard.size:
        raise _invalid("notify_top must not exceed size (the entries the board shows)")


def create_leaderboard(
    session: Session, tenant_id: uuid.UUID, env: str, fields: dict[str, Any]
) -> Leaderboard:
    """Create a leaderboard; `fields` holds LEADERBOARD_FIELDS values and the fixed ones
    (name and metric required)."""
    leaderboard = Leaderboard(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        env=env,
        name=fields["name"],
        metric=fields["metric"],
        action=fields.get("action"),
        period=fields.get("period", "all_time"),
        timezone=fields.get("timezone", "UTC"),
        size=fields.get("size", 100),
        notify_top=fields.get("notify_top", 10),
        active=fields.get("active", True),
        created_at=utcnow(),
    )
    _check_leaderboard(leaderboard)
    session.add(leaderboard)
    session.flush()
    return leaderboard


def update_leaderboard(
    session: Session, tenant_id: uuid.UUID, env: str, leaderboard_id: str, changes: dict[str, Any]
) -> Leaderboard:
    """Apply the given LEADERBOARD_FIELDS changes; fields not given keep their values."""
    _unknown_fields(changes, LEADERBOARD_FIELDS)
    leaderboard = get_leaderboard(session, tenant_id, env, leaderboard_id, lock=True)
    for name, value in changes.items():
        setattr(leaderboard, name, value)
    _check_leaderboard(leaderboard)
    if changes:
        leaderboard.updated_at = utcnow()
        session.flush()
    return leaderboard


def deactivate_leaderboard(
    session: Session, tenant_id: uuid.UUID, env: str, leaderboard_id: str
) -> Leaderboard:
    """Deactivate; the row stays, with the scores kept for it (reactivate: active true)."""
    return update_leaderboard(session, tenant_id, env, leaderboard_id, {"active": False})
