"""23blocks Rewards Catalog API: the catalog, adding a reward, redeeming one (the native
claim, paid in points) and a user's redemptions, over the native rewards and claims.

The document's reward types map to the engine's kinds (REWARD_KINDS: discounts are
coupons, physical_product physical, experience a voucher, any other digital); the
document's type is kept as given (rewards.blocks_type) and answered. A reward's `value`
(the discount's face value) is kept in its config.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from flask import Blueprint, Response
from pydantic import AwareDatetime, Field

from api.auth import current_principal
from api.blocks.jsonapi import (
    PREFIX,
    Attributes,
    Document,
    Kebab,
    Many,
    PageMeta,
    PageQuery,
    Single,
    native_model,
    one,
    page_count,
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
from api.engagement.schemas import Category, ImageUrl
from api.points.schemas import ParticipantId
from api.rewards.schemas import CreateRewardRequest, FlatObject, Slug
from api.runtime import runtime
from api.validation import check_participant_id
from app.models import Reward
from app.rewards.catalog import (
    CatalogFilters,
    create_reward,
    find_reward_id,
    list_claimable_rewards,
    reward_not_found,
)
from app.rewards.claims import CLAIM_KIND, claim_payload, claim_time, list_participant_claims

bp = Blueprint("blocks_catalog", __name__, url_prefix=PREFIX)

TAG = "23blocks: catalog"
COUPON_TYPES = ("fixed_discount", "percentage_discount", "free_shipping")
REWARD_KINDS = {
    **dict.fromkeys(COUPON_TYPES, "coupon"),
    "physical_product": "physical",
    "experience": "voucher",
}
OTHER_KIND = "digital"
# How a redemption is fulfilled, by the engine's kind (a code for all but physical goods).
FULFILLMENT = {
    "coupon": "coupon_code",
    "voucher": "voucher_code",
    "digital": "digital_code",
    "physical": "shipment",
    "points_multiplier": "points_multiplier",
}
SORTS = {"points-cost": "points_cost", "-points-cost": "-points_cost", "popular": "popular"}


def reward_kind(document_type: str) -> str:
    return REWARD_KINDS.get(document_type, OTHER_KIND)


class RewardOut(Kebab):
    name: str
    slug: str | None
    description: str | None
    category: str | None
    points_cost: int
    type: str = Field(description="The type as created (fixed_discount, experience, ...)")
    value: float | None
    image_url: str | None
    inventory: int | None
    redemption_limit: int
    active: bool
    redemption_count: int
    available_from: datetime | None
    available_until: datetime | None
    created_at: datetime


def reward_attributes(reward: Reward) -> RewardOut:
    value = (reward.config or {}).get("value")
    return RewardOut(
        name=reward.name,
        slug=reward.slug,
        description=reward.description,
        category=reward.category,
        points_cost=reward.points_cost or 0,
        type=reward.blocks_type or reward.type,
        value=value,
        image_url=reward.image_url,
        inventory=reward.total_inventory,
        redemption_limit=reward.max_claims_per_user,
        active=reward.is_active,
        redemption_count=reward.claims_count,
        available_from=reward.available_from,
        available_until=reward.expires_at,
        created_at=reward.created_at,
    )


RewardResource = Single[Literal["reward"], RewardOut]


class CatalogQuery(PageQuery):
    filter_category: str | None = Field(
        default=None, alias="filter[category]", min_length=1, max_length=100
    )
    filter_max_points: int | None = Field(
        default=None, alias="filter[max-points]", ge=0, le=1_000_000_000
    )
    filter_available: bool | None = Field(
        default=None, alias="filter[available]", description="true: in stock only"
    )
    sort: Literal["points-cost", "-points-cost", "popular"] | None = Field(
        default=None, description="Default: newest first"
    )


@endpoint(
    bp,
    "GET",
    "/catalog",
    summary="The rewards that can be redeemed now",
    tag=TAG,
    access=Access.PARTICIPANT,
    query=CatalogQuery,
    responses={200: Many[Literal["reward"], RewardOut, PageMeta]},
)
def blocks_list_catalog(query: CatalogQuery) -> tuple[dict[str, Any], int]:
    principal = current_principal()
    filters = CatalogFilters(
        category=query.filter_category,
        max_points=query.filter_max_points,
        available=query.filter_available,
        sort=SORTS[query.sort] if query.sort else None,  # type: ignore[arg-type]
    )
    with runtime().session_factory() as session:
        rewards, total = list_claimable_rewards(
            session,
            principal.tenant_id,
            principal.env,
            filters,
            offset=query.offset,
            limit=query.page_size,
        )
        data = [resource("reward", str(reward.id), reward_attributes(reward)) for reward in rewards]
    meta = PageMeta(**query.meta_counts(total))
    return {"data": data, "meta": meta}, 200


class CreateAttributes(Attributes):
    name: str = Field(min_length=1, max_length=200)
    slug: Slug | None = None
    description: str | None = Field(default=None, max_length=5000)
    category: Category | None = None
    points_cost: int = Field(ge=0, le=1_000_000_000)
    type: str = Field(
        min_length=1,
        max_length=64,
        description="fixed_discount, percentage_discount, free_shipping (coupons), "
        "physical_product, experience (a voucher), or any other (digital)",
    )
    value: Decimal | None = Field(default=None, ge=0, le=10**12)
    image_url: ImageUrl | None = None
    inventory: int | None = Field(default=None, ge=0, le=1_000_000_000)
    redemption_limit: int = Field(default=1, ge=1, le=1_000_000)
    available_from: AwareDatetime | None = None
    available_until: AwareDatetime | None = None
    active: bool = True


CreateDocument = Document[Literal["reward"], CreateAttributes]
CREATE_ATTRIBUTES = {
    "total_inventory": "inventory",
    "max_claims_per_user": "redemption-limit",
    "expires_at": "available-until",
    "is_active": "active",
    "config": "value",
}


@endpoint(
    bp,
    "POST",
    "/catalog",
    summary="Add a reward to the catalog",
    tag=TAG,
    access=Access.ADMIN,
    body=CreateDocument,
    responses={201: RewardResource},
    errors={409: ("slug_taken",), 422: ("validation_error",)},
)
def blocks_create_reward(body: CreateDocument) -> tuple[dict[str, Any], int]:
    attributes = body.attributes
    native = native_model(
        CreateRewardRequest,
        CREATE_ATTRIBUTES,
        name=attributes.name,
        type=reward_kind(attributes.type),
        description=attributes.description,
        points_cost=attributes.points_cost,
        total_inventory=attributes.inventory,
        config={"value": float(attributes.value)} if attributes.value is not None else None,
        available_from=attributes.available_from,
        expires_at=attributes.available_until,
        category=attributes.category,
        image_url=attributes.image_url,
        slug=attributes.slug,
        max_claims_per_user=attributes.redemption_limit,
        is_active=attributes.active,
    )
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        reward = create_reward(
            session,
            principal.tenant_id,
            principal.env,
            {**native.model_dump(), "blocks_type": attributes.type},
        )
        return one("reward", str(reward.id), reward_attributes(reward)), 201


class RedeemAttributes(Attributes):
    user_id: ParticipantId
    reward_id: str = Field(min_length=1, max_length=100, description="The reward's id or slug")
    metadata: FlatObject | None = None


RedeemDocument = Document[Literal["reward-redemption"], RedeemAttributes]


class Fulfillment(Kebab):
    type: str = Field(description="coupon_code, voucher_code, digital_code or shipment")
    code: str | None
    expires_at: datetime | None


class RedemptionOut(Kebab):
    user_id: str
    reward_id: str
    reward_name: str
    points_spent: int
    status: Literal["fulfilled", "used", "cancelled"]
    fulfillment: Fulfillment
    metadata: dict[str, Any] | None
    created_at: datetime
    used_at: datetime | None


RedemptionResource = Single[Literal["reward-redemption"], RedemptionOut]


@translates(CLAIM_KIND)
def _redemption_document(result: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    with runtime().session_factory() as session:
        claimed_at = claim_time(session, uuid.UUID(result["claim_id"]))
    attributes = RedemptionOut(
        user_id=result["participant_id"],
        reward_id=payload["reward_id"],
        reward_name=result["reward_name"],
        points_spent=result["points_deducted"] or 0,
        status=result["status"],
        fulfillment=Fulfillment(
            type=FULFILLMENT[result["reward_type"]],
            code=result["code_value"],
            expires_at=result["expires_at"],
        ),
        metadata=result["metadata"],
        created_at=claimed_at,
        used_at=None,
    )
    return one("reward-redemption", result["claim_id"], attributes)


def _reward_id(id_or_slug: str) -> uuid.UUID:
    """The reward named by its id or its slug; 404 reward_not_found for any other."""
    principal = current_principal()
    with runtime().session_factory() as session:
        found = find_reward_id(session, principal.tenant_id, principal.env, id_or_slug)
    if found is None:
        raise reward_not_found()
    return found


@endpoint(
    bp,
    "POST",
    "/catalog/redeem",
    summary="Redeem a reward for a user, paid in points (201 with the redemption)",
    tag=TAG,
    access=Access.PARTICIPANT,
    body=RedeemDocument,
    responses={201: RedemptionResource, 202: AcceptedDocument},
    errors={
        400: (
            "IDEMPOTENCY_KEY_INVALID",
            "insufficient_points",
            "reward_out_of_stock",
            "reward_limit_reached",
            "reward_expired",
        ),
        404: ("reward_not_found",),
        422: WRITE_ERRORS[422],
    },
    headers=WRITE_HEADERS,
    write=True,
)
def blocks_redeem_reward(body: RedeemDocument) -> Response:
    attributes = body.attributes
    reward_id = _reward_id(attributes.reward_id)
    payload = claim_payload(reward_id, attributes.user_id, True, attributes.metadata)
    return dialect_write(CLAIM_KIND, payload)


class ListedRedemption(Kebab):
    reward_id: str
    reward_name: str
    points_spent: int
    status: Literal["fulfilled", "used", "cancelled"]
    code: str | None
    created_at: datetime
    used_at: datetime | None
    cancelled_at: datetime | None


class RedemptionsMeta(Kebab):
    total_redemptions: int
    total_points_spent: int = Field(description="Net of refunds (cancelled redemptions)")
    page_count: int


@endpoint(
    bp,
    "GET",
    "/catalog/redemptions/<user_id>",
    summary="A user's redemptions, newest first",
    tag=TAG,
    access=Access.PARTICIPANT,
    query=PageQuery,
    responses={200: Many[Literal["reward-redemption"], ListedRedemption, RedemptionsMeta]},
)
def blocks_list_redemptions(user_id: str, query: PageQuery) -> tuple[dict[str, Any], int]:
    check_participant_id(user_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        claims, total, spent = list_participant_claims(
            session,
            principal.tenant_id,
            principal.env,
            user_id,
            offset=query.offset,
            limit=query.page_size,
        )
    data = [
        resource(
            "reward-redemption",
            claim["claim_id"],
            ListedRedemption(
                reward_id=claim["reward_id"],
                reward_name=claim["reward_name"],
                points_spent=claim["points_deducted"] or 0,
                status=claim["status"],
                code=claim["code_value"],
                created_at=claim["claimed_at"],
                used_at=claim["used_at"],
                cancelled_at=claim["cancelled_at"],
            ),
        )
        for claim in claims
    ]
    meta = RedemptionsMeta(
        total_redemptions=total,
        total_points_spent=spent,
        page_count=page_count(total, query.page_size),
    )
    return {"data": data, "meta": meta}, 200
