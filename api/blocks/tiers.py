"""23blocks Tiers API: the program's loyalty tiers and a user's tier status, over the
native tiers (a tier's id and slug are its native code)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import Blueprint
from pydantic import AwareDatetime, Field

from api.auth import current_principal
from api.blocks.jsonapi import (
    PREFIX,
    Attributes,
    Document,
    Kebab,
    Listed,
    Single,
    native_model,
    one,
    resource,
)
from api.endpoint import Access, endpoint
from api.points.participant_tiers import set_tier_by_hand
from api.points.schemas import ParticipantTierUpdate, TierCreate
from api.runtime import runtime
from api.validation import check_participant_id
from app.models import Tier
from app.points.tier_status import tier_status
from app.points.tiers import create_tier, list_tiers, tier_member_counts

bp = Blueprint("blocks_tiers", __name__, url_prefix=PREFIX)

TAG = "23blocks: tiers"
Number = int | float


class TierAttributes(Attributes):
    name: str
    slug: str = Field(description="The tier's id in answers (its native code)")
    level: int
    points_required: int
    points_multiplier: Number = 1
    benefits: list[str] | None = None
    color: str | None = None


TierDocument = Document[Literal["loyalty-tier"], TierAttributes]


class TierOut(Kebab):
    name: str
    slug: str
    level: int
    points_required: int
    points_multiplier: float
    benefits: list[str]
    badge_image_url: str | None = Field(description="Always null: tiers carry no image here")
    color: str | None
    member_count: int
    created_at: datetime


TierList = Listed[Literal["loyalty-tier"], TierOut]


def _tier_out(tier: Tier, members: int) -> TierOut:
    return TierOut(
        name=tier.name,
        slug=tier.code,
        level=tier.level,
        points_required=tier.points_required,
        points_multiplier=float(tier.points_multiplier),
        benefits=tier.benefits or [],
        badge_image_url=None,
        color=tier.color,
        member_count=members,
        created_at=tier.created_at,
    )


TierResource = Single[Literal["loyalty-tier"], TierOut]


@endpoint(
    bp,
    "GET",
    "/tiers",
    summary="The program's tiers, lowest level first",
    tag=TAG,
    access=Access.PARTICIPANT,
    responses={200: TierList},
)
def blocks_list_tiers() -> tuple[dict[str, Any], int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        counts = tier_member_counts(session, principal.tenant_id, principal.env)
        data = [
            resource("loyalty-tier", tier.code, _tier_out(tier, counts.get(tier.code, 0)))
            for tier in list_tiers(session, principal.tenant_id, principal.env)
        ]
    return {"data": data}, 200


@endpoint(
    bp,
    "POST",
    "/tiers",
    summary="Create a tier",
    tag=TAG,
    access=Access.ADMIN,
    body=TierDocument,
    responses={201: TierResource},
    errors={409: ("tier_already_exists", "tier_level_taken")},
)
def blocks_create_tier(body: TierDocument) -> tuple[dict[str, Any], int]:
    attributes = body.attributes
    native = native_model(
        TierCreate,
        {"code": "slug"},
        code=attributes.slug,
        name=attributes.name,
        level=attributes.level,
        points_required=attributes.points_required,
        points_multiplier=attributes.points_multiplier,
        benefits=attributes.benefits or [],
        color=attributes.color,
    )
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        tier = create_tier(
            session,
            principal.tenant_id,
            principal.env,
            native.code,
            native.model_dump(exclude={"code"}),
        )
        return one("loyalty-tier", tier.code, _tier_out(tier, 0)), 201


class TierReference(Kebab):
    id: str
    name: str
    level: int


class NextTierReference(TierReference):
    points_required: int


class UserTierOut(Kebab):
    user_id: str
    current_tier: TierReference | None
    next_tier: NextTierReference | None
    qualifying_points: int
    points_to_next_tier: int | None
    progress_percentage: float
    tier_expires_at: datetime | None
    points_to_maintain: int | None
    tier_since: datetime | None


UserTierResource = Single[Literal["user-tier-status"], UserTierOut]


def _reference(tier: dict[str, Any] | None) -> dict[str, Any] | None:
    if tier is None:
        return None
    return {"id": tier["code"], **{name: tier[name] for name in tier if name != "code"}}


def _user_tier(status: dict[str, Any]) -> dict[str, Any]:
    attributes = UserTierOut.model_validate(
        {
            **status,
            "user_id": status["participant_id"],
            "current_tier": _reference(status["current_tier"]),
            "next_tier": _reference(status["next_tier"]),
        }
    )
    return one("user-tier-status", f"user-tier-{status['participant_id']}", attributes)


@endpoint(
    bp,
    "GET",
    "/tiers/user/<user_id>",
    summary="A user's tier, the next one and the progress towards it",
    tag=TAG,
    access=Access.PARTICIPANT,
    responses={200: UserTierResource},
)
def blocks_get_user_tier(user_id: str) -> tuple[dict[str, Any], int]:
    check_participant_id(user_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        status = tier_status(session, principal.tenant_id, principal.env, user_id)
    return _user_tier(status), 200


class UserTierUpdateAttributes(Attributes):
    tier_id: str = Field(description="The tier's id as GET /tiers answers it")
    reason: str
    expires_at: AwareDatetime | None = Field(
        default=None, description="The tier is kept until then, whatever the user earns"
    )


UserTierUpdateDocument = Document[Literal["user-tier-update"], UserTierUpdateAttributes]


@endpoint(
    bp,
    "PATCH",
    "/tiers/user/<user_id>",
    summary="Set a user's tier by hand, optionally kept until expires-at",
    tag=TAG,
    access=Access.ADMIN,
    body=UserTierUpdateDocument,
    responses={200: UserTierResource},
    errors={404: ("participant_not_found", "tier_not_found")},
)
def blocks_set_user_tier(user_id: str, body: UserTierUpdateDocument) -> tuple[dict[str, Any], int]:
    check_participant_id(user_id)
    attributes = body.attributes
    update = native_model(
        ParticipantTierUpdate,
        {"tier_code": "tier-id", "locked_until": "expires-at"},
        tier_code=attributes.tier_id,
        reason=attributes.reason,
        locked_until=attributes.expires_at,
    )
    return _user_tier(set_tier_by_hand(user_id, update)), 200
