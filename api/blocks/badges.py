"""23blocks Badges API: the program's badges, awards by hand, a user's badges and progress,
over the native badges (the document's conditions are the native criteria; its slug and
rarity are stored beside them)."""

from __future__ import annotations

from datetime import datetime
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
    Listed,
    Many,
    Single,
    native_model,
    one,
    resource,
)
from api.blocks.limits import Family, take_family_unit
from api.blocks.writes import (
    WRITE_ERRORS,
    WRITE_HEADERS,
    AcceptedDocument,
    dialect_write,
    translates,
)
from api.endpoint import Access, endpoint
from api.engagement.schemas import BadgeCreate
from api.points.schemas import ParticipantId
from api.runtime import runtime
from api.schemas import QueryModel
from api.validation import check_participant_id
from app.engagement.actions import BADGE_AWARD_KIND
from app.engagement.badge_reads import badge_progress, badge_unlock_counts, participant_badges
from app.engagement.definitions import create_badge, list_badges, parse_badge_id
from app.models import Badge

bp = Blueprint("blocks_badges", __name__, url_prefix=PREFIX)

TAG = "23blocks: badges"
Rarity = Literal["common", "uncommon", "rare", "epic", "legendary"]


class BadgeConditions(Attributes):
    """One of: action and count (that many actions), points (that many points earned),
    streak-type and days (a run that long); none: awarded by hand only."""

    action: str | None = None
    count: int | None = None
    points: int | None = None
    streak_type: str | None = None
    days: int | None = None


class BadgeAttributes(Attributes):
    name: str
    slug: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = None
    category: str | None = None
    image_url: str | None = None
    points_reward: int | None = None
    rarity: Rarity | None = None
    conditions: BadgeConditions | None = None


BadgeDocument = Document[Literal["badge"], BadgeAttributes]


def _criteria(conditions: BadgeConditions | None) -> dict[str, Any]:
    """The native criteria the document's conditions name (native validation checks the
    values)."""
    sent = conditions.model_dump(exclude_none=True) if conditions else {}
    if "points" in sent:
        return {"type": "points_earned", **sent}
    if "streak_type" in sent or "days" in sent:
        return {"type": "streak", **sent}
    if sent:
        return {"type": "action_count", **sent}
    return {"type": "manual"}


def _conditions(criteria: dict[str, Any]) -> dict[str, Any]:
    return {kebab: criteria[name] for name, kebab in _CONDITION_NAMES if name in criteria}


_CONDITION_NAMES = (
    ("action", "action"),
    ("count", "count"),
    ("points", "points"),
    ("streak_type", "streak-type"),
    ("days", "days"),
    ("challenge_id", "challenge-id"),
)


class BadgeOut(Kebab):
    name: str
    slug: str | None
    description: str | None
    category: str | None
    image_url: str | None
    points_reward: int
    rarity: str | None
    unlock_count: int = Field(description="Users holding the badge")
    conditions: dict[str, Any] = Field(description="{action, count}, {points}, {streak-type, days}")
    active: bool
    created_at: datetime


def _badge_out(badge: Badge, unlocks: int) -> BadgeOut:
    return BadgeOut(
        name=badge.name,
        slug=badge.slug,
        description=badge.description,
        category=badge.category,
        image_url=badge.image_url,
        points_reward=badge.points_reward or 0,
        rarity=badge.rarity,
        unlock_count=unlocks,
        conditions=_conditions(badge.criteria),
        active=badge.active,
        created_at=badge.created_at,
    )


class BadgesQuery(QueryModel):
    filter_category: str | None = Field(default=None, alias="filter[category]", max_length=100)
    filter_rarity: Rarity | None = Field(default=None, alias="filter[rarity]")


BadgeList = Listed[Literal["badge"], BadgeOut]


@endpoint(
    bp,
    "GET",
    "/badges",
    summary="The program's badges, oldest first",
    tag=TAG,
    access=Access.PARTICIPANT,
    query=BadgesQuery,
    responses={200: BadgeList},
)
def blocks_list_badges(query: BadgesQuery) -> tuple[dict[str, Any], int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        badges = [
            badge
            for badge in list_badges(
                session, principal.tenant_id, principal.env, category=query.filter_category
            )
            if query.filter_rarity is None or badge.rarity == query.filter_rarity
        ]
        unlocks = badge_unlock_counts(session, [badge.id for badge in badges])
        data = [
            resource("badge", str(badge.id), _badge_out(badge, unlocks.get(badge.id, 0)))
            for badge in badges
        ]
    return {"data": data}, 200


@endpoint(
    bp,
    "POST",
    "/badges",
    summary="Create a badge",
    tag=TAG,
    access=Access.ADMIN,
    body=BadgeDocument,
    responses={201: Single[Literal["badge"], BadgeOut]},
)
def blocks_create_badge(body: BadgeDocument) -> tuple[dict[str, Any], int]:
    attributes = body.attributes
    native = native_model(
        BadgeCreate,
        {"criteria": "conditions"},
        name=attributes.name,
        description=attributes.description,
        image_url=attributes.image_url,
        category=attributes.category,
        criteria=_criteria(attributes.conditions),
        points_reward=attributes.points_reward,
    )
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        badge = create_badge(session, principal.tenant_id, principal.env, native.fields())
        badge.slug, badge.rarity = attributes.slug, attributes.rarity
        audit_change(
            session, "badge.created", badge.id, {"name": badge.name, "criteria": badge.criteria}
        )
        return one("badge", str(badge.id), _badge_out(badge, 0)), 201


class BadgeAwardAttributes(Attributes):
    user_id: ParticipantId
    badge_id: str = Field(min_length=1, max_length=64, description="The badge's id")
    reason: str | None = Field(
        default=None, max_length=500, description="Taken for the record; not stored"
    )


BadgeAwardDocument = Document[Literal["badge-award"], BadgeAwardAttributes]


class UserBadgeOut(Kebab):
    user_id: str
    badge_id: str
    badge_name: str
    points_awarded: int
    awarded_at: datetime


def _user_badge_id(badge_id: str, user_id: str) -> str:
    return f"{badge_id}:{user_id}"


@translates(BADGE_AWARD_KIND)
def _award_document(result: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    attributes = UserBadgeOut(
        user_id=result["participant_id"],
        badge_id=result["badge_id"],
        badge_name=result["name"],
        points_awarded=result["points_awarded"] or 0,
        awarded_at=result["awarded_at"],
    )
    return one(
        "user-badge", _user_badge_id(result["badge_id"], result["participant_id"]), attributes
    )


@endpoint(
    bp,
    "POST",
    "/badges/award",
    summary="Award a badge by hand (201 with the user's badge; its points reward is credited)",
    tag=TAG,
    access=Access.PARTICIPANT,
    body=BadgeAwardDocument,
    responses={201: Single[Literal["user-badge"], UserBadgeOut], 202: AcceptedDocument},
    errors={
        **WRITE_ERRORS,
        404: ("badge_not_found",),
        409: ("badge_already_awarded",),
        429: ("rate_limit_exceeded",),
    },
    headers=WRITE_HEADERS,
    write=True,
)
def blocks_award_badge(body: BadgeAwardDocument) -> Response:
    attributes = body.attributes
    take_family_unit(Family.BADGE_AWARDS, attributes.user_id)
    payload = {
        "participant_id": attributes.user_id,
        "badge_id": str(parse_badge_id(attributes.badge_id)),
    }
    return dialect_write(BADGE_AWARD_KIND, payload)


class EarnedBadgeOut(Kebab):
    badge_id: str
    badge_name: str
    badge_image: str | None
    points_awarded: int = Field(description="The badge's points reward")
    awarded_at: datetime


class UserBadgesMeta(Kebab):
    total_badges: int
    total_points_from_badges: int


@endpoint(
    bp,
    "GET",
    "/badges/user/<user_id>",
    summary="The badges a user holds, most recently earned first",
    tag=TAG,
    access=Access.PARTICIPANT,
    responses={200: Many[Literal["user-badge"], EarnedBadgeOut, UserBadgesMeta]},
)
def blocks_user_badges(user_id: str) -> tuple[dict[str, Any], int]:
    check_participant_id(user_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        held = participant_badges(session, principal.tenant_id, principal.env, user_id)
    data = [
        resource(
            "user-badge",
            _user_badge_id(badge["badge_id"], user_id),
            EarnedBadgeOut(
                badge_id=badge["badge_id"],
                badge_name=badge["name"],
                badge_image=badge["image_url"],
                points_awarded=badge["points_reward"] or 0,
                awarded_at=badge["awarded_at"],
            ),
        )
        for badge in held
    ]
    meta = UserBadgesMeta(
        total_badges=len(held),
        total_points_from_badges=sum(badge["points_reward"] or 0 for badge in held),
    )
    return {"data": data, "meta": meta}, 200


class BadgeProgressOut(Kebab):
    badge_id: str
    badge_name: str
    user_id: str
    target_count: int
    current_count: int
    progress_percentage: float
    earned: bool
    estimated_completion: datetime | None = Field(description="Always null: not estimated")


@endpoint(
    bp,
    "GET",
    "/badges/<badge_id>/progress/<user_id>",
    summary="How far a user is toward a badge",
    tag=TAG,
    access=Access.PARTICIPANT,
    responses={200: Single[Literal["badge-progress"], BadgeProgressOut]},
    errors={404: ("badge_not_found",)},
)
def blocks_badge_progress(badge_id: str, user_id: str) -> tuple[dict[str, Any], int]:
    check_participant_id(user_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        progress = badge_progress(session, principal.tenant_id, principal.env, user_id, badge_id)
    attributes = BadgeProgressOut(
        badge_id=progress["badge_id"],
        badge_name=progress["name"],
        user_id=user_id,
        target_count=progress["target"],
        current_count=progress["current"],
        progress_percentage=progress["progress_percentage"],
        earned=progress["earned"],
        estimated_completion=None,
    )
    return one("badge-progress", f"progress-{progress['badge_id']}-{user_id}", attributes), 200
