"""Request and response models of the rewards endpoints (wire contract: Bricqs Rewards API)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from api.schemas import PageQuery, QueryModel, RequestModel

RewardType = Literal["coupon", "voucher", "physical", "digital", "points_multiplier"]
ParticipantId = Field(min_length=1, max_length=255, description="Your participant identifier")


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


class AdminReward(BaseModel):
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


class CatalogQuery(QueryModel):
    reward_type: RewardType | None = None
    participant_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Also say whether this participant can claim each reward now, and why not",
    )


class CatalogReward(BaseModel):
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
    total: int


class ClaimRequest(RequestModel):
    participant_id: str = ParticipantId
    points_deduction: bool = False
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


class ClaimedReward(BaseModel):
    claim_id: str
    reward_id: str
    reward_name: str
    reward_type: RewardType
    code_value: str | None
    claimed_at: AwareDatetime
    expires_at: AwareDatetime | None
    points_deducted: int | None


class ParticipantClaims(BaseModel):
    participant_id: str
    rewards: list[ClaimedReward]
    total: int
    total_claimed: int = Field(description="Same as total (the concepts page's name)")
    page: int
    page_size: int


class CodesUpload(RequestModel):
    codes: list[str] = Field(min_length=1, max_length=100_000)


class CodesUploadResult(BaseModel):
    added: int
    duplicates: int = Field(description="Codes skipped: already stocked or repeated")
    available_codes: int | None
