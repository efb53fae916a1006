"""23blocks Streaks API: a user's streak, recording an activity (the native streak record
operation) and a streak's configuration, over the native streaks."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from flask import Blueprint, Response
from pydantic import Field

from api.audit import audit_change
from api.auth import current_principal
from api.blocks.jsonapi import (
    PREFIX,
    Attributes,
    Document,
    Kebab,
    Single,
    UnnamedSingle,
    native_model,
    one,
)
from api.blocks.writes import (
    WRITE_ERRORS,
    WRITE_HEADERS,
    AcceptedDocument,
    dialect_write,
    translates,
)
from api.endpoint import Access, endpoint
from api.engagement.program_schemas import StreakCreate
from api.points.schemas import ParticipantId
from api.runtime import runtime
from api.validation import check_participant_id
from app.clock import utcnow
from app.engagement.actions import STREAK_RECORD_KIND
from app.engagement.program_definitions import create_streak
from app.engagement.reads import participant_streaks

bp = Blueprint("blocks_streaks", __name__, url_prefix=PREFIX)

TAG = "23blocks: streaks"
STREAK_NOT_ACTIVE = {404: ("streak_not_active",)}


def time_remaining(until: datetime | None, now: datetime) -> str | None:
    """HH:MM:SS until `until` (hours past 24 as they are: 39:29:32)."""
    if until is None:
        return None
    seconds = max(int((until - now) / timedelta(seconds=1)), 0)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class StreakOut(Kebab):
    user_id: str
    streak_type: str
    current_streak: int
    longest_streak: int
    last_action_at: datetime | None
    streak_expires_at: datetime | None = Field(description="Broken unless extended by then")
    milestones_reached: list[int] = Field(description="Milestones (days) paid in this run")
    next_milestone: int | None
    days_to_milestone: int | None
    time_remaining: str | None = Field(description="HH:MM:SS until streak-expires-at")
    rewards_earned: int = Field(description="Points the milestones of this run paid")


@endpoint(
    bp,
    "GET",
    "/streaks/<user_id>/<streak_type>",
    summary="A user's run of a streak",
    tag=TAG,
    access=Access.PARTICIPANT,
    responses={200: Single[Literal["user-streak"], StreakOut]},
    errors=STREAK_NOT_ACTIVE,
)
def blocks_get_streak(user_id: str, streak_type: str) -> tuple[dict[str, Any], int]:
    check_participant_id(user_id)
    principal = current_principal()
    now = utcnow()
    with runtime().session_factory() as session:
        [streak] = participant_streaks(
            session, principal.tenant_id, principal.env, user_id, now, streak_type
        )
    milestone = streak["next_milestone"]
    current = streak["current_count"]
    attributes = StreakOut(
        user_id=user_id,
        streak_type=streak_type,
        current_streak=current,
        longest_streak=streak["longest_count"],
        last_action_at=streak["last_activity_at"],
        streak_expires_at=streak["next_deadline"],
        milestones_reached=streak["milestones_reached"],
        next_milestone=milestone["days"] if milestone else None,
        days_to_milestone=milestone["days"] - current if milestone else None,
        time_remaining=time_remaining(streak["next_deadline"], now),
        rewards_earned=streak["milestone_points"],
    )
    return one("user-streak", f"streak-{user_id}-{streak_type}", attributes), 200


class StreakActionAttributes(Attributes):
    user_id: ParticipantId
    streak_type: str = Field(min_length=1, max_length=100)


StreakActionDocument = Document[Literal["streak-action"], StreakActionAttributes]


class StreakUpdateOut(Kebab):
    previous_streak: int
    current_streak: int
    milestone_reached: int | None
    bonus_points: int
    streak_expires_at: datetime | None


@translates(STREAK_RECORD_KIND)
def _record_document(result: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    attributes = StreakUpdateOut(
        previous_streak=result["previous_count"],
        current_streak=result["current_count"],
        milestone_reached=result["milestone_reached"],
        bonus_points=result["bonus_points"],
        streak_expires_at=result["next_deadline"],
    )
    return {"data": {"type": "streak-update", "attributes": attributes.model_dump(mode="json")}}


@endpoint(
    bp,
    "POST",
    "/streaks/record",
    summary="Record one activity on a user's streak (once per period counts)",
    tag=TAG,
    access=Access.PARTICIPANT,
    body=StreakActionDocument,
    responses={
        200: UnnamedSingle[Literal["streak-update"], StreakUpdateOut],
        202: AcceptedDocument,
    },
    errors={**WRITE_ERRORS, **STREAK_NOT_ACTIVE},
    headers=WRITE_HEADERS,
    write=True,
    publishable=True,
)
def blocks_record_streak(body: StreakActionDocument) -> Response:
    attributes = body.attributes
    payload = {"participant_id": attributes.user_id, "streak_type": attributes.streak_type}
    return dialect_write(STREAK_RECORD_KIND, payload, success_status=200)


class MilestoneAttributes(Attributes):
    days: int
    points: int


class StreakConfigAttributes(Attributes):
    streak_type: str
    name: str
    action: str | None = Field(
        default=None, description="The action that extends it; default: the streak type"
    )
    period: str = "daily"
    grace_period_hours: int = 0
    milestones: list[MilestoneAttributes] = Field(default_factory=list)
    active: bool = True


StreakConfigDocument = Document[Literal["streak-config"], StreakConfigAttributes]


class MilestoneOut(Kebab):
    days: int
    points: int


class StreakConfigOut(Kebab):
    streak_type: str
    name: str
    action: str
    period: str
    grace_period_hours: int
    milestones: list[MilestoneOut]
    active: bool
    created_at: datetime


@endpoint(
    bp,
    "POST",
    "/streaks/config",
    summary="Configure a streak (its type is its key)",
    tag=TAG,
    access=Access.ADMIN,
    body=StreakConfigDocument,
    responses={201: Single[Literal["streak-config"], StreakConfigOut]},
    errors={409: ("streak_already_exists",)},
)
def blocks_configure_streak(body: StreakConfigDocument) -> tuple[dict[str, Any], int]:
    attributes = body.attributes
    native = native_model(
        StreakCreate,
        {},
        streak_type=attributes.streak_type,
        name=attributes.name,
        action=attributes.action or attributes.streak_type,
        period=attributes.period,
        grace_period_hours=attributes.grace_period_hours,
        milestones=[milestone.model_dump() for milestone in attributes.milestones],
        active=attributes.active,
    )
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        streak = create_streak(
            session,
            principal.tenant_id,
            principal.env,
            native.streak_type,
            native.model_dump(exclude={"streak_type"}),
        )
        audit_change(
            session,
            "streak.created",
            streak.id,
            {"streak_type": streak.streak_type, "name": streak.name},
        )
        attributes_out = StreakConfigOut.model_validate(
            {
                "streak_type": streak.streak_type,
                "name": streak.name,
                "action": streak.action,
                "period": streak.period,
                "grace_period_hours": streak.grace_period_hours,
                "milestones": streak.milestones,
                "active": streak.active,
                "created_at": streak.created_at,
            }
        )
        return one("streak-config", streak.streak_type, attributes_out), 201
