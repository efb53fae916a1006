"""23blocks webhooks: registering an endpoint for the document's events, over the native
webhook endpoints.

The document's event names are the engine's own (reward.redeemed included, once the
engine publishes it), so they pass as given. The engine signs with secrets it makes
itself (whsec_ and 32 random bytes): a `secret` the caller sends is accepted but not
used, and the answer's `secret` is the one that signs (shown this once).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from flask import Blueprint
from pydantic import Field

from api.audit import audit_change
from api.auth import current_principal
from api.blocks.jsonapi import PREFIX, Attributes, Document, Kebab, Single, native_model, one
from api.endpoint import Access, endpoint
from api.runtime import runtime
from api.webhooks.admin import url_policy
from api.webhooks.schemas import URL_DESCRIPTION, CreateWebhookRequest
from app.webhooks.endpoints import create_endpoint, endpoint_view

bp = Blueprint("blocks_webhooks", __name__, url_prefix=PREFIX)

TAG = "23blocks: webhooks"
# The document's event names, by the engine's (the same names).
EVENT_NAMES = {
    name: name
    for name in (
        "points.awarded",
        "points.deducted",
        "points.expired",
        "tier.upgraded",
        "tier.downgraded",
        "badge.awarded",
        "coupon.redeemed",
        "coupon.expired",
        "referral.tracked",
        "referral.completed",
        "reward.redeemed",
        "streak.milestone",
        "streak.broken",
        "challenge.completed",
        "leaderboard.rank_changed",
    )
}


class WebhookAttributes(Attributes):
    url: str = Field(min_length=1, max_length=2048, description=URL_DESCRIPTION)
    events: list[str] = Field(min_length=1, max_length=20)
    secret: str | None = Field(
        default=None,
        max_length=255,
        description="Accepted but not used: the engine makes the signing secret (answered)",
    )
    description: str | None = Field(default=None, max_length=500)


WebhookDocument = Document[Literal["webhook"], WebhookAttributes]


class WebhookOut(Kebab):
    url: str
    events: list[str]
    description: str | None
    active: bool
    secret: str = Field(description="The whsec_ signing secret: shown only in this answer")
    created_at: datetime


@endpoint(
    bp,
    "POST",
    "/webhooks",
    summary="Register a webhook endpoint for reward events (201 with its signing secret)",
    tag=TAG,
    access=Access.ADMIN,
    body=WebhookDocument,
    responses={201: Single[Literal["webhook"], WebhookOut]},
    errors={422: ("invalid_webhook_url", "validation_error")},
)
def blocks_register_webhook(body: WebhookDocument) -> tuple[dict[str, object], int]:
    attributes = body.attributes
    native = native_model(
        CreateWebhookRequest,
        {},
        url=attributes.url,
        events=[EVENT_NAMES.get(name, name) for name in attributes.events],
        description=attributes.description,
    )
    principal = current_principal()
    rt = runtime()
    with rt.session_factory.begin() as session:
        webhook, secret = create_endpoint(
            session,
            principal.tenant_id,
            principal.env,
            url=native.url,
            events=native.events,
            description=native.description,
            url_policy=url_policy(),
            secret_box=rt.secret_box,
        )
        audit_change(session, "webhook.created", webhook.id, {"url": webhook.url})
        view = endpoint_view(webhook)
    attributes_out = WebhookOut(
        url=view["url"],
        events=view["events"],
        description=view["description"],
        active=view["enabled"],
        secret=secret,
        created_at=view["created_at"],
    )
    return one("webhook", view["id"], attributes_out), 201
