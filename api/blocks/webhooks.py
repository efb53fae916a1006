"""23blocks webhooks: registering an endpoint for the document's events, over the native
webhook endpoints.

The document's event names are the engine's own (reward.redeemed included, once the
engine publishes it), so they pass as given. The `secret` the caller sends is the one that
signs (checked by the native rule, app.webhooks.signing: 16 to 200 printable characters;
the document's `whsec_your_secret_key` is not base64 after `whsec_`, so its key is the
string's own bytes); without one the engine makes a whsec_ secret. The answer's `secret`
is the one that signs (shown this once).

Endpoints registered here get the reference's payload ({id, type, created_at, data} with
user_id and tier ids: app.webhooks.payloads), so a receiver written against the reference
works unchanged; the native admin API shows their payload_format and can switch it.
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
from api.webhooks.schemas import SECRET_DESCRIPTION, URL_DESCRIPTION, CreateWebhookRequest
from app.webhooks.endpoints import create_endpoint, endpoint_view
from app.webhooks.payloads import BLOCKS

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
    secret: str | None = Field(default=None, description=SECRET_DESCRIPTION)
    description: str | None = Field(default=None, max_length=500)


WebhookDocument = Document[Literal["webhook"], WebhookAttributes]


class WebhookOut(Kebab):
    url: str
    events: list[str]
    description: str | None
    active: bool
    secret: str = Field(
        description="The signing secret (the one sent, or a whsec_ one the engine made): "
        "shown only in this answer"
    )
    created_at: datetime


@endpoint(
    bp,
    "POST",
    "/webhooks",
    summary="Register a webhook endpoint for reward events, signed with the secret sent "
    "(201 with it)",
    tag=TAG,
    access=Access.ADMIN,
    body=WebhookDocument,
    responses={201: Single[Literal["webhook"], WebhookOut]},
    errors={422: ("invalid_webhook_url", "invalid_webhook_secret", "validation_error")},
)
def blocks_register_webhook(body: WebhookDocument) -> tuple[dict[str, object], int]:
    attributes = body.attributes
    native = native_model(
        CreateWebhookRequest,
        {},
        url=attributes.url,
        events=[EVENT_NAMES.get(name, name) for name in attributes.events],
        description=attributes.description,
        secret=attributes.secret,
        payload_format=BLOCKS,
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
            secret=native.secret,
            payload_format=native.payload_format,
        )
        audit_change(
            session,
            "webhook.created",
            webhook.id,
            {"url": webhook.url, "secret_given": native.secret is not None},
        )
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
