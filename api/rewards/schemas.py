"""Request and response models of the rewards endpoints (wire contract: Bricqs Rewards API)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from api.engagement.schemas import Category, ImageUrl, PropertyValue
from api.points.schemas import IdempotencyKey
from api.schemas import PageQuery, RequestModel
from app.rewards.catalog import CatalogSort

RewardType = Literal["coupon", "voucher", "physical", "digital", "points_multiplier"]
ClaimStatus = Literal["fulfilled", "used", "cancelled"]
ParticipantId = Field(min_length=1, max_length=255, description="Your participant identifier")
FLAT_OBJECT_MAX_KEYS = 50
FLAT_OBJECT_MAX_BYTES = 8192


def _flat_object(value: object) -> object:
    """Refuse nested values with one clear message (rather than the union's four), and a
    size past the limit; the declared type then checks each value."""
    if not isinstance(value, dict):
        return value
    for name, item in value.items():
        if isinstance(item, dict | list):
            nested = "an object" if isinstance(item, dict) else "an array"
            raise ValueError(
                f"must be a flat object: {name!r} holds {nested}; "
                "values are strings, numbers, booleans or null"
            )
    if len(json.dumps(value).encode()) > FLAT_OBJECT_MAX_BYTES:
        raise ValueError(f"must be at most {FLAT_OBJECT_MAX_BYTES} bytes as JSON")
    return value


FlatObject = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=100)], PropertyValue | None],
    BeforeValidator(_flat_object),
    Field(
        max_length=FLAT_OBJECT_MAX_KEYS,
        description=f"A flat object: up to {FLAT_OBJECT_MAX_KEYS} keys of 1 to 100 characters, "
        "each value a string, number, boolean or null; returned as given",
    ),
]
Slug = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$",
        description="Lower-case letters, digits and single hyphens; unique per environment",
    ),
]


class Media(RequestModel):
    type: Literal["image", "video"]
    value: ImageUrl = Field(description="The image's or the video's http(s) URL")


class RewardDefinitionFields(RequestModel):
    description: str | None = Field(default=None, max_length=5000)
    points_cost: int | None = Field(
        default=None, ge=0, le=1_000_000_000, description="null or omitted: a free reward"
    )
    total_inventory: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000_000,
        description="Caps the number of claims; null: unlimited",
    )
    config: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Free-form. Read by the engine: code_prefix, generate_when_exhausted, "
            "multiplier and duration_days (points_multiplier rewards)"
        ),
    )
    available_from: AwareDatetime | None = Field(default=None, description="Claims open")
    expires_at: AwareDatetime | None = Field(default=None, description="Claims close")
    code_expiry_days: int | None = Field(
        default=None, ge=1, le=36_500, description="A claimed code expires this many days later"
    )
    category: Category | None = None
    image_url: ImageUrl | None = None
    slug: Slug | None = None
    custom_attributes: FlatObject | None = None
    media: Media | None = None


class CreateRewardRequest(RewardDefinitionFields):
    name: str = Field(min_length=1, max_length=200)
    type: RewardType
    max_claims_per_user: int = Field(default=1, ge=1, le=1_000_000)
    is_active: bool = True


class UpdateRewardRequest(RewardDefinitionFields):
    """All optional; only supplied fields change. `type` may be sent but never changed."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    type: RewardType | None = None
    max_claims_per_user: int | None = Field(default=None, ge=1, le=1_000_000)
    is_active: bool | None = None

    @model_validator(mode="after")
    def _required_fields_are_not_null(self) -> UpdateRewardRequest:
        for name in ("name", "type", "max_claims_per_user", "is_active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class RewardPresentation(BaseModel):
    """What the admin and the catalog both show of a reward beyond its rules."""

    category: str | None
    image_url: str | None
    slug: str | None
    custom_attributes: dict[str, Any] | None
    media: dict[str, Any] | None
    redemption_count: int = Field(description="Claims taken and not cancelled")


class AdminReward(RewardPresentation):
    id: str
    lookup_code: str
    name: str
    type: RewardType
    description: str | None
    points_cost: int | None
    max_claims_per_user: int
    total_inventory: int | None
    available_codes: int | None = Field(description="Remaining units now; null: unlimited")
    config: dict[str, Any] | None
    is_active: bool
    available_from: AwareDatetime | None
    expires_at: AwareDatetime | None
    code_expiry_days: int | None
    created_at: AwareDatetime
    updated_at: AwareDatetime | None


class AdminRewardList(BaseModel):
    items: list[AdminReward]
    total: int
    page: int
    page_size: int


class AdminRewardsQuery(PageQuery):
    is_active: bool | None = None
    reward_type: RewardType | None = None


class CatalogQuery(PageQuery):
    reward_type: RewardType | None = None
    category: str | None = Field(default=None, min_length=1, max_length=100)
    max_points: int | None = Field(
        default=None, ge=0, le=1_000_000_000, description="Costs at most this (free: 0)"
    )
    available: bool | None = Field(
        default=None, description="true: in stock only; false: out of stock only"
    )
    sort: CatalogSort | None = Field(
        default=None,
        description="points_cost, -points_cost (free rewards cost 0), or popular (most "
        "claims in the last 30 days first); default: newest first",
    )
    participant_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Also say whether this participant can claim each reward now, and why not",
    )


class CatalogReward(RewardPresentation):
    id: str
    name: str
    type: RewardType
    description: str | None
    points_cost: int | None
    available_codes: int | None
    max_claims_per_user: int
    available_from: AwareDatetime | None
    expires_at: AwareDatetime | None
    claimable: bool | None = Field(
        default=None, description="With participant_id: whether a claim would succeed now"
    )
    reason: str | None = Field(
        default=None, description="With participant_id: the error code a claim would return"
    )
    reason_detail: str | None = None


class Catalog(BaseModel):
    rewards: list[CatalogReward]
    total: int = Field(description="Rewards matching the filters, on every page")
    page: int
    page_size: int


class ClaimRequest(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"participant_id": "user_42", "points_deduction": True},
                {"participant_id": "user_42", "metadata": {"size": "L", "colour": "navy"}},
            ]
        }
    )
    participant_id: str = ParticipantId
    points_deduction: bool = False
    metadata: FlatObject | None = Field(
        default=None, description='Kept with the claim, e.g. {"size": "L"}'
    )
    idempotency_key: str | None = Field(
        default=None, description="Alternative to the Idempotency-Key header"
    )


class ClaimResponse(BaseModel):
    claim_id: str
    participant_id: str
    reward_name: str
    reward_type: RewardType
    code_value: str | None
    expires_at: AwareDatetime | None
    points_deducted: int | None
    new_balance: int | None
    status: ClaimStatus
    metadata: dict[str, Any] | None


class ClaimChangeRequest(RequestModel):
    idempotency_key: IdempotencyKey


class ClaimChanged(BaseModel):
    claim_id: str
    reward_id: str
    participant_id: str
    status: ClaimStatus
    used_at: AwareDatetime | None
    cancelled_at: AwareDatetime | None
    points_refunded: int | None = Field(description="Cancel: the points given back")
    new_balance: int | None = Field(description="Cancel: the balance after the refund")
    code_returned: bool = Field(description="Cancel: its pre-loaded code went back to stock")


class ClaimedReward(BaseModel):
    claim_id: str
    reward_id: str
    reward_name: str
    reward_type: RewardType
    code_value: str | None
    claimed_at: AwareDatetime
    expires_at: AwareDatetime | None
    points_deducted: int | None
    status: ClaimStatus
    used_at: AwareDatetime | None
    cancelled_at: AwareDatetime | None
    metadata: dict[str, Any] | None


class ParticipantClaims(BaseModel):
    participant_id: str
    rewards: list[ClaimedReward]
    total: int
    total_points_spent: int = Field(description="Points paid for claims, net of refunds")
    total_claimed: int = Field(description="Same as total (the concepts page's name)")
    page: int
    page_size: int


class CodesUpload(RequestModel):
    codes: list[str] = Field(min_length=1, max_length=100_000)


class CodesUploadResult(BaseModel):
    added: int
    duplicates: int = Field(description="Codes skipped: already stocked or repeated")
    available_codes: int | None
