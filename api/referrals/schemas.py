"""Request and response models of referrals."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, model_validator

from api.points.schemas import IdempotencyKey, ParticipantId
from api.schemas import PageQuery, RequestModel
from app.points.items import ACTION_MAX_CHARS
from app.referrals.decisions import QUALIFYING_AMOUNT_MAX, money
from app.referrals.program import (
    CODE_LENGTH_MAX,
    CODE_LENGTH_MIN,
    DEFAULT_CODE_LENGTH,
    EXPIRATION_DAYS_MAX,
    REFERRAL_POINTS_MAX,
    ReferralTerms,
)

ReferralPoints = Annotated[StrictInt, Field(ge=0, le=REFERRAL_POINTS_MAX)]
ActionName = Annotated[str, Field(min_length=1, max_length=ACTION_MAX_CHARS)]
ReferralStatus = Literal["pending", "completed", "expired"]
Amount = Annotated[
    StrictInt | StrictFloat, Field(ge=0, le=float(QUALIFYING_AMOUNT_MAX), description="Money")
]
ExpirationDays = Annotated[StrictInt, Field(ge=1, le=EXPIRATION_DAYS_MAX)]
# Kept as given, for the listings; only its shape is checked.
RefereeEmail = Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
MIN_QUALIFYING_AMOUNT_DOC = (
    "A completion (by hand, or by the completion action with its `amount`) qualifies only "
    "with a qualifying amount at least this; one without an amount does not (400 "
    "referral_not_qualified by hand; by the action the referral stays pending). null: any"
)
EXPIRATION_DAYS_DOC = (
    "A referral tracked from now on expires this many days after, if still pending "
    "(status expired; completion refused 400 referral_expired); referrals tracked before "
    "keep their expiry. null: they never expire"
)


class ReferralProgramPut(RequestModel):
    """The whole program: fields not sent take their defaults."""

    referrer_points: ReferralPoints = Field(description="Paid to the referrer on completion")
    referee_points: ReferralPoints = Field(description="Paid to the referee on completion")
    completion_action: ActionName | None = Field(
        default=None,
        description="The action (POST /actions, or an award's `action`) that completes a "
        "referee's pending referral; null: completed only by POST /referrals/complete",
    )
    max_referrals_per_referrer: StrictInt | None = Field(
        default=None, ge=1, le=1_000_000, description="Tracked referrals per referrer; null: any"
    )
    code_length: StrictInt = Field(
        default=DEFAULT_CODE_LENGTH,
        ge=CODE_LENGTH_MIN,
        le=CODE_LENGTH_MAX,
        description="Length of the codes made from now on (codes made before keep theirs)",
    )
    active: StrictBool = True
    min_qualifying_amount: Amount | None = Field(
        default=None, description=MIN_QUALIFYING_AMOUNT_DOC
    )
    expiration_days: ExpirationDays | None = Field(default=None, description=EXPIRATION_DAYS_DOC)

    def terms(self) -> ReferralTerms:
        return ReferralTerms(
            self.referrer_points,
            self.referee_points,
            self.completion_action,
            self.max_referrals_per_referrer,
            self.code_length,
            self.active,
            money(self.min_qualifying_amount),
            self.expiration_days,
        )


class ReferralProgramView(BaseModel):
    configured: bool = Field(description="false until the first PUT: the program is inactive")
    referrer_points: int
    referee_points: int
    completion_action: str | None
    max_referrals_per_referrer: int | None
    code_length: int
    active: bool
    min_qualifying_amount: float | None
    expiration_days: int | None
    updated_at: datetime | None


class ReferralCodeView(BaseModel):
    participant_id: str
    referral_code: str


class TrackRequest(RequestModel):
    referral_code: str = Field(min_length=1, max_length=64)
    referee_id: ParticipantId
    referee_email: RefereeEmail | None = Field(
        default=None, description="Kept and shown in the referrer's listing"
    )
    idempotency_key: IdempotencyKey

    def payload(self) -> dict[str, Any]:
        """The operation's payload (the e-mail only when given: older payloads lack it)."""
        fields: dict[str, Any] = {
            "referral_code": self.referral_code,
            "referee_id": self.referee_id,
        }
        if self.referee_email is not None:
            fields["referee_email"] = self.referee_email
        return fields


class CompleteRequest(RequestModel):
    referral_id: str | None = Field(default=None, max_length=64)
    referee_id: ParticipantId | None = None
    qualifying_action: ActionName | None = None
    qualifying_amount: Amount | None = Field(
        default=None,
        description="e.g. the order total; required to qualify when the program has a "
        "min_qualifying_amount",
    )
    order_id: str | None = Field(default=None, min_length=1, max_length=255)
    idempotency_key: IdempotencyKey

    @model_validator(mode="after")
    def _one_referral(self) -> CompleteRequest:
        if (self.referral_id is None) == (self.referee_id is None):
            raise ValueError("give exactly one of referral_id and referee_id")
        return self

    def qualifying(self) -> dict[str, Any]:
        """The optional qualifying fields as the operation's payload carries them."""
        fields: dict[str, Any] = {}
        if self.qualifying_action is not None:
            fields["qualifying_action"] = self.qualifying_action
        amount: Decimal | None = money(self.qualifying_amount)
        if amount is not None:
            fields["qualifying_amount"] = str(amount)
        if self.order_id is not None:
            fields["order_id"] = self.order_id
        return fields


class ReferralView(BaseModel):
    referral_id: str
    referrer_id: str
    referee_id: str
    referee_email: str | None
    referral_code: str
    status: ReferralStatus = Field(
        description="expired: still pending at expires_at (never completed after)"
    )
    referrer_points: int = Field(description="Points paid to the referrer (0 while pending)")
    referee_points: int = Field(description="Points paid to the referee (0 while pending)")
    qualifying_action: str | None
    qualifying_amount: float | None
    order_id: str | None
    created_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None = Field(description="null: it never expires")


class ReferralTotals(BaseModel):
    total: int
    pending: int
    completed: int
    expired: int
    points_earned: int = Field(description="Points the referrer was paid, over all referrals")


class ParticipantReferrals(BaseModel):
    participant_id: str
    referrals: list[ReferralView]
    totals: ReferralTotals
    page: int
    page_size: int


class ReferralsQuery(PageQuery):
    status: ReferralStatus | None = None
