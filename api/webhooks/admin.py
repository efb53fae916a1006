"""Admin-scope endpoints: webhook endpoints, secret rotation, the delivery log."""

from __future__ import annotations

import uuid

from flask import Blueprint

from api.audit import audit_change
from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.runtime import runtime
from api.schemas import MessageBody, PageQuery
from api.webhooks.schemas import (
    CreatedWebhook,
    CreateWebhookRequest,
    DeliveriesQuery,
    Delivery,
    DeliveryList,
    RedeliveredCount,
    RedeliverFailedRequest,
    RotatedSecret,
    RotateSecretRequest,
    UpdateWebhookRequest,
    Webhook,
    WebhookList,
)
from app.errors import parse_uuid
from app.webhooks.endpoints import (
    UrlPolicy,
    create_endpoint,
    delete_endpoint,
    delivery_not_found,
    delivery_view,
    endpoint_view,
    get_endpoint,
    list_deliveries,
    list_endpoints,
    redeliver,
    redeliver_failed_since,
    rotate_secret,
    send_test_event,
    update_endpoint,
    webhook_not_found,
)
from workers.webhook_publish import wake_webhook_dispatcher

bp = Blueprint("webhooks_admin", __name__, url_prefix="/api/v1/gamify/admin")

TAG = "webhooks"
NOT_FOUND = {404: ("webhook_not_found",)}
DELIVERY_NOT_FOUND = {404: ("webhook_not_found", "delivery_not_found")}
DISABLED = {409: ("webhook_disabled",)}
INVALID_URL = {422: ("invalid_webhook_url", "validation_error")}
INVALID_SECRET = {422: ("invalid_webhook_secret", "validation_error")}


def _webhook_id(value: str) -> uuid.UUID:
    return parse_uuid(value, webhook_not_found())


def url_policy() -> UrlPolicy:
    return UrlPolicy(allow_private=runtime().settings.webhook_allow_private)


def _wake_dispatcher() -> None:
    rt = runtime()
    wake_webhook_dispatcher(rt.celery, rt.redis, rt.settings.redis_key_prefix)


@endpoint(
    bp,
    "POST",
    "/webhooks",
    summary="Register a webhook endpoint",
    tag=TAG,
    access=Access.ADMIN,
    body=CreateWebhookRequest,
    responses={201: CreatedWebhook},
    errors={422: (*INVALID_URL[422], "invalid_webhook_secret")},
)
def create_webhook(body: CreateWebhookRequest) -> tuple[CreatedWebhook, int]:
    return register_webhook(body), 201


def register_webhook(body: CreateWebhookRequest) -> CreatedWebhook:
    """Register an endpoint for the calling key, audited; its secret is in the answer only."""
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        webhook, secret = create_endpoint(
            session,
            principal.tenant_id,
            principal.env,
            url=body.url,
            events=body.events,
            description=body.description,
            url_policy=url_policy(),
            secret_box=runtime().secret_box,
            secret=body.secret,
            payload_format=body.payload_format,
        )
        audit_change(
            session,
            "webhook.created",
            webhook.id,
            {"url": webhook.url, "secret_given": body.secret is not None},
        )
        view = endpoint_view(webhook)
    return CreatedWebhook.model_validate({**view, "secret": secret})


@endpoint(
    bp,
    "GET",
    "/webhooks",
    summary="List webhook endpoints",
    tag=TAG,
    access=Access.ADMIN,
    query=PageQuery,
    responses={200: WebhookList},
)
def list_webhooks(query: PageQuery) -> tuple[WebhookList, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        webhooks, total = list_endpoints(
            session,
            principal.tenant_id,
            principal.env,
            offset=query.offset,
            limit=query.page_size,
        )
        items = [Webhook.model_validate(endpoint_view(webhook)) for webhook in webhooks]
    return WebhookList(items=items, total=total, page=query.page, page_size=query.page_size), 200


@endpoint(
    bp,
    "GET",
    "/webhooks/<webhook_id>",
    summary="Get a webhook endpoint",
    tag=TAG,
    access=Access.ADMIN,
    responses={200: Webhook},
    errors=NOT_FOUND,
)
def get_webhook(webhook_id: str) -> tuple[Webhook, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        webhook = get_endpoint(session, principal.tenant_id, principal.env, _webhook_id(webhook_id))
        return Webhook.model_validate(endpoint_view(webhook)), 200


@endpoint(
    bp,
    "PATCH",
    "/webhooks/<webhook_id>",
    summary="Update or re-enable a webhook endpoint",
    tag=TAG,
    access=Access.ADMIN,
    body=UpdateWebhookRequest,
    responses={200: Webhook},
    errors={**NOT_FOUND, **INVALID_URL},
)
def update_webhook(webhook_id: str, body: UpdateWebhookRequest) -> tuple[Webhook, int]:
    return change_webhook(webhook_id, body), 200


def change_webhook(webhook_id: str, body: UpdateWebhookRequest) -> Webhook:
    """Apply the fields set in `body` to the endpoint, audited."""
    principal = current_principal()
    parsed_id = _webhook_id(webhook_id)
    with runtime().session_factory.begin() as session:
        webhook = update_endpoint(
            session,
            principal.tenant_id,
            principal.env,
            parsed_id,
            body.model_dump(exclude_unset=True),
            url_policy(),
        )
        audit_change(
            session, "webhook.updated", webhook.id, {"changed": sorted(body.model_fields_set)}
        )
        return Webhook.model_validate(endpoint_view(webhook))


@endpoint(
    bp,
    "DELETE",
    "/webhooks/<webhook_id>",
    summary="Delete a webhook endpoint and its log",
    tag=TAG,
    access=Access.ADMIN,
    responses={200: MessageBody},
    errors=NOT_FOUND,
)
def delete_webhook(webhook_id: str) -> tuple[MessageBody, int]:
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        parsed_id = _webhook_id(webhook_id)
        delete_endpoint(session, principal.tenant_id, principal.env, parsed_id)
        audit_change(session, "webhook.deleted", parsed_id)
    return MessageBody(message="Webhook endpoint deleted"), 200


@endpoint(
    bp,
    "POST",
    "/webhooks/<webhook_id>/rotate-secret",
    summary="Rotate the signing secret (to yours if given; the old one signs too for 24 hours)",
    tag=TAG,
    access=Access.ADMIN,
    body=RotateSecretRequest,
    responses={200: RotatedSecret},
    errors={**NOT_FOUND, **INVALID_SECRET},
)
def rotate_webhook_secret(webhook_id: str, body: RotateSecretRequest) -> tuple[RotatedSecret, int]:
    return rotate_webhook_signing_secret(webhook_id, body), 200


def rotate_webhook_signing_secret(webhook_id: str, body: RotateSecretRequest) -> RotatedSecret:
    """A new signing secret for the endpoint (the caller's, if given), audited; the answer
    is the only place it is shown."""
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        parsed_id = _webhook_id(webhook_id)
        rotated = rotate_secret(
            session,
            principal.tenant_id,
            principal.env,
            parsed_id,
            runtime().secret_box,
            secret=body.secret,
        )
        audit_change(
            session, "webhook.secret_rotated", parsed_id, {"secret_given": body.secret is not None}
        )
    return RotatedSecret(
        secret=rotated.secret, previous_secret_expires_at=rotated.previous_secret_expires_at
    )


@endpoint(
    bp,
    "GET",
    "/webhooks/<webhook_id>/deliveries",
    summary="List deliveries of a webhook endpoint (newest first)",
    tag=TAG,
    access=Access.ADMIN,
    query=DeliveriesQuery,
    responses={200: DeliveryList},
    errors=NOT_FOUND,
)
def list_webhook_deliveries(webhook_id: str, query: DeliveriesQuery) -> tuple[DeliveryList, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        deliveries, total = list_deliveries(
            session,
            principal.tenant_id,
            principal.env,
            _webhook_id(webhook_id),
            status=query.status,
            offset=query.offset,
            limit=query.page_size,
        )
        items = [Delivery.model_validate(delivery_view(delivery)) for delivery in deliveries]
    return DeliveryList(items=items, total=total, page=query.page, page_size=query.page_size), 200


@endpoint(
    bp,
    "POST",
    "/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver",
    summary="Redeliver one delivery (same webhook-id, a fresh retry schedule)",
    tag=TAG,
    access=Access.ADMIN,
    responses={202: Delivery},
    errors={**DELIVERY_NOT_FOUND, **DISABLED},
)
def redeliver_webhook_delivery(webhook_id: str, delivery_id: str) -> tuple[Delivery, int]:
    return redeliver_one_delivery(webhook_id, delivery_id), 202


def redeliver_one_delivery(webhook_id: str, delivery_id: str) -> Delivery:
    """Queue the delivery again (a fresh retry schedule), audited, and wake the dispatcher."""
    principal = current_principal()
    parsed_webhook_id = _webhook_id(webhook_id)
    parsed_delivery_id = parse_uuid(delivery_id, delivery_not_found())
    with runtime().session_factory.begin() as session:
        delivery = redeliver(
            session, principal.tenant_id, principal.env, parsed_webhook_id, parsed_delivery_id
        )
        audit_change(
            session, "webhook.redelivered", parsed_webhook_id, {"delivery_id": str(delivery.id)}
        )
        view = Delivery.model_validate(delivery_view(delivery))
    _wake_dispatcher()
    return view


@endpoint(
    bp,
    "POST",
    "/webhooks/<webhook_id>/redeliver",
    summary="Redeliver every failed delivery created since a time",
    tag=TAG,
    access=Access.ADMIN,
    body=RedeliverFailedRequest,
    responses={202: RedeliveredCount},
    errors={**NOT_FOUND, **DISABLED},
)
def redeliver_failed_webhook_deliveries(
    webhook_id: str, body: RedeliverFailedRequest
) -> tuple[RedeliveredCount, int]:
    return redeliver_failed_deliveries(webhook_id, body), 202


def redeliver_failed_deliveries(webhook_id: str, body: RedeliverFailedRequest) -> RedeliveredCount:
    """Queue again every failed delivery created since `body.since`, audited."""
    principal = current_principal()
    parsed_id = _webhook_id(webhook_id)
    with runtime().session_factory.begin() as session:
        count = redeliver_failed_since(
            session, principal.tenant_id, principal.env, parsed_id, body.since
        )
        audit_change(
            session,
            "webhook.failed_redelivered",
            parsed_id,
            {"since": body.since.isoformat(), "redelivered": count},
        )
    if count:
        _wake_dispatcher()
    return RedeliveredCount(redelivered=count)


@endpoint(
    bp,
    "POST",
    "/webhooks/<webhook_id>/test",
    summary="Send a webhook.test event to this endpoint",
    tag=TAG,
    access=Access.ADMIN,
    responses={202: Delivery},
    errors={**NOT_FOUND, **DISABLED},
)
def send_webhook_test_event(webhook_id: str) -> tuple[Delivery, int]:
    return queue_test_event(webhook_id), 202


def queue_test_event(webhook_id: str) -> Delivery:
    """A webhook.test event for this endpoint only, audited; the dispatcher is woken."""
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        delivery = send_test_event(
            session, principal.tenant_id, principal.env, _webhook_id(webhook_id)
        )
        audit_change(
            session, "webhook.test_sent", delivery.endpoint_id, {"delivery_id": str(delivery.id)}
        )
        view = Delivery.model_validate(delivery_view(delivery))
    _wake_dispatcher()
    return view
