"""Request and response models of the webhook admin endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, model_validator

from api.schemas import PageQuery, RequestModel
from app.outbox import check_event_names
from app.webhooks.signing import CALLER_SECRET_RULE, caller_secret_problem

EventType = Literal[
    "reward.reward_claimed",
    "points.awarded",
    "points.deducted",
    "tier.upgraded",
    "points.expired",
    "points.released",
    "tier.downgraded",
    "badge.awarded",
    "streak.milestone",
    "streak.broken",
    "challenge.completed",
    "leaderboard.rank_changed",
    "referral.tracked",
    "referral.completed",
    "coupon.redeemed",
    "coupon.expired",
    "reward.redeemed",
]
DeliveryStatus = Literal["pending", "succeeded", "failed"]
PayloadFormat = Literal["standard", "blocks"]
PAYLOAD_FORMAT_DESCRIPTION = (
    "The request body sent: standard (Standard Webhooks: {type, timestamp, data}) or blocks "
    "(the 23blocks reference's {id, type, created_at, data}, data with user_id for "
    "participant_id and tiers as {id, name, level, ...}; endpoints registered through "
    "POST /v1/rewards/webhooks have it). Same signature headers either way (README, Webhooks)"
)
URL_DESCRIPTION = "http(s) URL the events are POSTed to; must resolve to public addresses"
SECRET_DESCRIPTION = (
    "Your own signing secret; omitted: the engine makes one. "
    + CALLER_SECRET_RULE
    + ". The HMAC key is the decoded base64 of a whsec_<base64> secret, else the secret's "
    "own bytes (README, Webhooks)"
)


def _acceptable_secret(secret: str) -> str:
    problem = caller_secret_problem(secret)
    if problem is not None:
        raise ValueError(problem)
    return secret


CallerSecret = Annotated[str, AfterValidator(_acceptable_secret)]


_EVENTS_DESCRIPTION = (
    "The event types sent to the endpoint. reward.redeemed is reward.reward_claimed under "
    "its 23blocks name (same data, the type as subscribed); subscribe to one of the two"
)
EventTypes = Annotated[
    list[EventType],
    Field(min_length=1, max_length=20, description=_EVENTS_DESCRIPTION),
    AfterValidator(check_event_names),
]


class CreateWebhookRequest(RequestModel):
    url: str = Field(min_length=1, max_length=2048, description=URL_DESCRIPTION)
    events: EventTypes
    description: str | None = Field(default=None, max_length=500)
    secret: CallerSecret | None = Field(default=None, description=SECRET_DESCRIPTION)
    payload_format: PayloadFormat = Field(
        default="standard", description=PAYLOAD_FORMAT_DESCRIPTION
    )


class RotateSecretRequest(RequestModel):
    """An empty body (or none): the engine makes the new secret."""

    secret: CallerSecret | None = Field(default=None, description=SECRET_DESCRIPTION)


class UpdateWebhookRequest(RequestModel):
    """All optional; only supplied fields change."""

    url: str | None = Field(
        default=None, min_length=1, max_length=2048, description=URL_DESCRIPTION
    )
    events: EventTypes | None = None
    description: str | None = Field(default=None, max_length=500)
    payload_format: PayloadFormat | None = Field(
        default=None, description=PAYLOAD_FORMAT_DESCRIPTION
    )
    enabled: bool | None = Field(
        default=None,
        description="false pauses the endpoint (its pending deliveries fail); true re-enables "
        "it, also after it was disabled for answering 410 or failing for 5 days",
    )

    @model_validator(mode="after")
    def _required_fields_are_not_null(self) -> UpdateWebhookRequest:
        for name in ("url", "events", "payload_format", "enabled"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class Webhook(BaseModel):
    id: str
    url: str
    description: str | None
    events: list[str]
    enabled: bool
    payload_format: PayloadFormat = Field(description=PAYLOAD_FORMAT_DESCRIPTION)
    disabled_reason: Literal["manual", "gone", "failing"] | None = Field(
        description="manual, gone (answered 410) or failing (failing continuously for 5 days)"
    )
    failing_since: AwareDatetime | None
    previous_secret_expires_at: AwareDatetime | None = Field(
        description="Until then the previous secret also signs every request"
    )
    created_at: AwareDatetime
    updated_at: AwareDatetime | None


class CreatedWebhook(Webhook):
    secret: str = Field(
        description="The signing secret (yours as given, or a whsec_... one the engine made): "
        "shown only in this response"
    )


class WebhookList(BaseModel):
    items: list[Webhook]
    total: int
    page: int
    page_size: int


class RotatedSecret(BaseModel):
    secret: str = Field(description="The new signing secret (yours as given): shown only here")
    previous_secret_expires_at: AwareDatetime


class Delivery(BaseModel):
    id: str
    event_id: str = Field(description="Also the webhook-id header of every attempt")
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: AwareDatetime | None
    last_attempt_at: AwareDatetime | None
    last_response_status: int | None
    last_response_body: str | None = Field(description="Truncated to 2 KB")
    last_error: str | None
    created_at: AwareDatetime
    delivered_at: AwareDatetime | None


class DeliveryList(BaseModel):
    items: list[Delivery]
    total: int
    page: int
    page_size: int


class DeliveriesQuery(PageQuery):
    status: DeliveryStatus | None = None


class RedeliverFailedRequest(RequestModel):
    since: AwareDatetime = Field(description="Redeliver failed deliveries created since then")


class RedeliveredCount(BaseModel):
    redelivered: int
