"""23blocks Challenges API: the program's challenges, creating one, joining and a user's
progress, over the native challenges (no enrollment needed unless requires-enrollment)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import Blueprint, Response
from pydantic import AwareDatetime, Field

from api.audit import audit_change
from api.auth import current_principal
from api.blocks.jsonapi import (
    PREFIX,
    Attributes,
    Document,
    Kebab,
    Listed,
    Single,
    UnnamedSingle,
    native_model,
    one,
    resource,
)
from api.blocks.writes import (
    WRITE_ERRORS,
    WRITE_HEADERS,
    AcceptedDocument,
    dialect_write,
    translates,
)
from api.endpoint import Access, endpoint
from api.engagement.program_schemas import ChallengeCreate
from api.points.schemas import ParticipantId
from api.runtime import runtime
from api.schemas import QueryModel
from api.validation import check_participant_id
from app.clock import utcnow
from app.engagement.actions import CHALLENGE_JOIN_KIND
from app.engagement.challenges import challenge_not_found
from app.engagement.program_definitions import create_challenge
from app.engagement.reads import list_challenges, participant_challenge
from app.errors import parse_uuid

bp = Blueprint("blocks_challenges", __name__, url_prefix=PREFIX)

TAG = "23blocks: challenges"


def time_remaining(seconds: int | None) -> str | None:
    """As the document shows it: "23 days 14:30:00"."""
    if seconds is None:
        return None
    days, rest = divmod(seconds, 86_400)
    return f"{days} days {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


class RewardAttributes(Attributes):
    type: str = Field(description="points or reward")
    amount: int | None = None
    reward_id: str | None = None


class ChallengeAttributes(Attributes):
    name: str
    description: str | None = None
    type: str = Field(description="action_count or points_earned")
    action: str | None = None
    target: int
    reward: RewardAttributes | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    requires_enrollment: bool = False
    active: bool = True


ChallengeDocument = Document[Literal["challenge"], ChallengeAttributes]


class ProgressOut(Kebab):
    current: int
    target: int
    progress_percentage: float
    completed: bool
    enrolled: bool


class ChallengeOut(Kebab):
    name: str
    description: str | None
    type: str
    action: str | None
    target: int
    reward: dict[str, Any] | None
    starts_at: datetime | None
    ends_at: datetime | None
    participants_count: int
    completions_count: int
    requires_enrollment: bool
    active: bool = Field(description="Running now: active, started and not ended")
    progress: ProgressOut | None = Field(
        default=None, description="The user's, when filter[user-id] is given"
    )


def _reward(reward: dict[str, Any] | None) -> dict[str, Any] | None:
    return {name.replace("_", "-"): value for name, value in reward.items()} if reward else None


def _challenge_out(view: dict[str, Any]) -> ChallengeOut:
    return ChallengeOut.model_validate(
        {**view, "reward": _reward(view["reward"]), "active": view["running"]}
    )


class ChallengesQuery(QueryModel):
    filter_active: bool | None = Field(
        default=None, alias="filter[active]", description="true: only challenges running now"
    )
    filter_user_id: str | None = Field(
        default=None, alias="filter[user-id]", min_length=1, max_length=255
    )


ChallengeList = Listed[Literal["challenge"], ChallengeOut]


@endpoint(
    bp,
    "GET",
    "/challenges",
    summary="The program's challenges with their counts (and a user's progress)",
    tag=TAG,
    access=Access.PARTICIPANT,
    query=ChallengesQuery,
    responses={200: ChallengeList},
)
def blocks_list_challenges(query: ChallengesQuery) -> tuple[dict[str, Any], int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        views = list_challenges(
            session,
            principal.tenant_id,
            principal.env,
            utcnow(),
            participant_id=query.filter_user_id,
            active=query.filter_active,
        )
    data = [resource("challenge", view["challenge_id"], _challenge_out(view)) for view in views]
    return {"data": data}, 200


@endpoint(
    bp,
    "POST",
    "/challenges",
    summary="Create a challenge",
    tag=TAG,
    access=Access.ADMIN,
    body=ChallengeDocument,
    responses={201: Single[Literal["challenge"], ChallengeOut]},
)
def blocks_create_challenge(body: ChallengeDocument) -> tuple[dict[str, Any], int]:
    attributes = body.attributes
    native = native_model(
        ChallengeCreate,
        {},
        **{
            **attributes.model_dump(exclude={"reward"}),
            "reward": attributes.reward.model_dump(exclude_none=True)
            if attributes.reward
            else None,
        },
    )
    principal = current_principal()
    now = utcnow()
    with runtime().session_factory.begin() as session:
        stored = create_challenge(session, principal.tenant_id, principal.env, native.model_dump())
        challenge = stored.challenge
        audit_change(
            session,
            "challenge.created",
            challenge.id,
            {"name": challenge.name, "type": challenge.type},
        )
        [view] = [
            view
            for view in list_challenges(session, principal.tenant_id, principal.env, now)
            if view["challenge_id"] == str(challenge.id)
        ]
        return one("challenge", str(challenge.id), _challenge_out(view)), 201


class JoinAttributes(Attributes):
    user_id: ParticipantId


JoinDocument = Document[Literal["challenge-enrollment"], JoinAttributes]


class EnrollmentOut(Kebab):
    challenge_id: str
    user_id: str
    current: int
    target: int
    completed: bool
    enrolled_at: datetime


@translates(CHALLENGE_JOIN_KIND)
def _join_document(result: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    attributes = EnrollmentOut(
        challenge_id=result["challenge_id"],
        user_id=result["participant_id"],
        current=result["current"],
        target=result["target"],
        completed=result["completed"],
        enrolled_at=result["enrolled_at"],
    )
    return {
        "data": {"type": "challenge-enrollment", "attributes": attributes.model_dump(mode="json")}
    }


@endpoint(
    bp,
    "POST",
    "/challenges/<challenge_id>/join",
    summary="Enroll a user in a challenge (needed where it requires enrollment)",
    tag=TAG,
    access=Access.PARTICIPANT,
    body=JoinDocument,
    responses={
        200: UnnamedSingle[Literal["challenge-enrollment"], EnrollmentOut],
        202: AcceptedDocument,
    },
    errors={
        **WRITE_ERRORS,
        400: (*WRITE_ERRORS[400], "challenge_ended"),
        404: ("challenge_not_found",),
    },
    headers=WRITE_HEADERS,
    write=True,
)
def blocks_join_challenge(challenge_id: str, body: JoinDocument) -> Response:
    key = parse_uuid(challenge_id, challenge_not_found())
    payload = {"participant_id": body.attributes.user_id, "challenge_id": str(key)}
    return dialect_write(CHALLENGE_JOIN_KIND, payload, success_status=200)


class ChallengeProgressOut(Kebab):
    challenge_id: str
    user_id: str
    target: int
    current: int
    progress_percentage: float
    completed: bool
    time_remaining: str | None = Field(description='Until the end: "23 days 14:30:00"')
    enrolled_at: datetime | None = Field(description="null: counted without enrolling")


@endpoint(
    bp,
    "GET",
    "/challenges/<challenge_id>/progress/<user_id>",
    summary="A user's progress in a challenge",
    tag=TAG,
    access=Access.PARTICIPANT,
    responses={200: UnnamedSingle[Literal["challenge-progress"], ChallengeProgressOut]},
    errors={404: ("challenge_not_found", "challenge_not_enrolled")},
)
def blocks_challenge_progress(challenge_id: str, user_id: str) -> tuple[dict[str, Any], int]:
    check_participant_id(user_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        progress = participant_challenge(
            session, principal.tenant_id, principal.env, user_id, challenge_id, utcnow()
        )
    attributes = ChallengeProgressOut(
        challenge_id=progress["challenge_id"],
        user_id=user_id,
        target=progress["target"],
        current=progress["current"],
        progress_percentage=progress["progress_percentage"],
        completed=progress["completed"],
        time_remaining=time_remaining(progress["time_remaining_seconds"]),
        enrolled_at=progress["enrolled_at"],
    )
    return {"data": {"type": "challenge-progress", "attributes": attributes}}, 200
