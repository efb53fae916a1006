"""Webhooks in the console: endpoints (list, create, edit, rotate the secret, send a test
event) and an endpoint's deliveries, paged, with redelivery of one or of every failed one
since a time. Writes call the functions behind the API's admin views
(api/webhooks/admin.py), so validation, rules, audit entries and the dispatcher's wake-up
are the API's."""

from __future__ import annotations

import uuid
from typing import Any, get_args

from flask import Response, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from api.console import bp
from api.console.forms import FieldErrors, FormInvalid, FormReader, parse_console_query
from api.console.pages import render_page, signed_in
from api.runtime import runtime
from api.schemas import PageQuery
from api.webhooks.admin import (
    change_webhook,
    queue_test_event,
    redeliver_failed_deliveries,
    redeliver_one_delivery,
    register_webhook,
    rotate_webhook_signing_secret,
)
from api.webhooks.schemas import (
    CreateWebhookRequest,
    DeliveriesQuery,
    DeliveryStatus,
    EventType,
    PayloadFormat,
    RedeliverFailedRequest,
    RotateSecretRequest,
    UpdateWebhookRequest,
)
from app.errors import DomainError, parse_uuid
from app.webhooks.endpoints import (
    delivery_view,
    endpoint_view,
    get_endpoint,
    list_deliveries,
    list_endpoints,
    webhook_not_found,
)

EVENT_TYPES: tuple[str, ...] = get_args(EventType)
PAYLOAD_FORMATS = [(name, name) for name in get_args(PayloadFormat)]  # select options
DELIVERY_STATUSES: tuple[str, ...] = get_args(DeliveryStatus)
# The domain errors that name one form field.
DOMAIN_ERROR_FIELDS = {"invalid_webhook_url": "url", "invalid_webhook_secret": "secret"}
# How much of a receiver's answer the deliveries table shows (the API keeps 2 KB).
RESPONSE_EXCERPT_CHARS = 200
# What a redirect after a change says on the endpoint page (?done=...).
DONE_MESSAGES = {
    "created": "Endpoint created.",
    "updated": "Changes saved.",
    "unchanged": "Nothing changed.",
    "test_sent": "A webhook.test event is queued for this endpoint; it appears in the "
    "deliveries below.",
    "redelivered": "The delivery is queued again (same webhook-id, a fresh retry schedule).",
}


def _endpoint(webhook_id: str) -> dict[str, Any]:
    principal = signed_in().principal
    with runtime().session_factory() as session:
        stored = get_endpoint(
            session, principal.tenant_id, principal.env, parse_uuid(webhook_id, webhook_not_found())
        )
        return endpoint_view(stored)


def _form_fields(webhook: dict[str, Any]) -> dict[str, Any]:
    """A stored endpoint (endpoint_view) as the edit form's control values."""
    return {
        "url": webhook["url"],
        "description": webhook["description"] or "",
        "events": list(webhook["events"]),
        "payload_format": webhook["payload_format"],
        "enabled": webhook["enabled"],
    }


def _posted_fields() -> dict[str, Any]:
    """The posted form as the form's control values (shown again beside its errors); never
    the secret typed, which would otherwise sit in the page's HTML."""
    return {
        "url": request.form.get("url", ""),
        "description": request.form.get("description", ""),
        "events": request.form.getlist("events"),
        "payload_format": request.form.get("payload_format", ""),
        "enabled": "enabled" in request.form,
    }


def _endpoint_values(reader: FormReader) -> dict[str, Any]:
    return {
        "url": reader.text("url"),
        "description": reader.text("description"),
        "events": reader.form.getlist("events"),
        "payload_format": reader.text("payload_format"),
    }


@bp.get("/webhooks")
def webhooks() -> Response:
    query = parse_console_query(PageQuery)
    principal = signed_in().principal
    with runtime().session_factory() as session:
        found, total = list_endpoints(
            session, principal.tenant_id, principal.env, offset=query.offset, limit=query.page_size
        )
        items = [endpoint_view(webhook) for webhook in found]
    return render_page(
        "console/webhooks.html",
        title="Webhooks",
        webhooks=items,
        total=total,
        page=query.page,
        page_size=query.page_size,
    )


def _new_form_page(fields: dict[str, Any], errors: FieldErrors | None, status: int) -> Response:
    return render_page(
        "console/webhook_new.html",
        title="New webhook endpoint",
        status=status,
        fields=fields,
        errors=errors,
        event_types=EVENT_TYPES,
        payload_formats=PAYLOAD_FORMATS,
    )


@bp.get("/webhooks/new")
def new_webhook() -> Response:
    fields = {"url": "", "description": "", "events": [], "payload_format": "standard"}
    return _new_form_page(fields, None, 200)


def _secret_page(webhook: dict[str, Any], secret: str, *, created: bool, status: int) -> Response:
    # The secret is shown on this answer only (as the API answers it once): never
    # redirected to, so no later request can show it again.
    return render_page(
        "console/webhook_secret.html",
        title="Webhook endpoint created" if created else "Signing secret rotated",
        status=status,
        webhook=webhook,
        secret=secret,
        created=created,
    )


@bp.post("/webhooks/new")
def create_webhook_endpoint() -> BaseResponse:
    reader = FormReader(request.form)
    values = {key: value for key, value in _endpoint_values(reader).items() if value is not None}
    secret = reader.text("secret")
    if secret is not None:
        values["secret"] = secret
    try:
        body = reader.validate(CreateWebhookRequest, values)
        created = register_webhook(body)
    except FormInvalid as invalid:
        errors = invalid.errors
    except DomainError as error:
        errors = FieldErrors.from_error(error, DOMAIN_ERROR_FIELDS)
    else:
        view = created.model_dump(exclude={"secret"})
        return _secret_page(view, created.secret, created=True, status=201)
    return _new_form_page(_posted_fields(), errors, 422)


def _endpoint_page(
    webhook: dict[str, Any],
    *,
    fields: dict[str, Any] | None = None,
    errors: FieldErrors | None = None,
    rotate_errors: FieldErrors | None = None,
    redeliver_errors: FieldErrors | None = None,
    status: int = 200,
) -> Response:
    query = parse_console_query(DeliveriesQuery)
    principal = signed_in().principal
    with runtime().session_factory() as session:
        found, total = list_deliveries(
            session,
            principal.tenant_id,
            principal.env,
            uuid.UUID(webhook["id"]),
            status=query.status,
            offset=query.offset,
            limit=query.page_size,
        )
        deliveries = [delivery_view(delivery) for delivery in found]
    done = request.args.get("done", "")
    return render_page(
        "console/webhook.html",
        title=f"Webhook: {webhook['url']}",
        status=status,
        webhook=webhook,
        fields=fields if fields is not None else _form_fields(webhook),
        errors=errors,
        rotate_errors=rotate_errors,
        redeliver_errors=redeliver_errors,
        event_types=EVENT_TYPES,
        payload_formats=PAYLOAD_FORMATS,
        delivery_statuses=DELIVERY_STATUSES,
        deliveries=deliveries,
        total=total,
        page=query.page,
        page_size=query.page_size,
        status_filter=query.status or "",
        excerpt_chars=RESPONSE_EXCERPT_CHARS,
        done_message=DONE_MESSAGES.get(done),
        redelivered=request.args.get("redelivered", type=int),
    )


@bp.get("/webhooks/<webhook_id>")
def webhook(webhook_id: str) -> Response:
    return _endpoint_page(_endpoint(webhook_id))


def _to_endpoint(webhook_id: str, **args: Any) -> BaseResponse:
    return redirect(url_for("console.webhook", webhook_id=webhook_id, **args), 303)


def _same(name: str, stored: Any, given: Any) -> bool:
    # The form lists the events in its own order: the same set is no change.
    if name == "events" and isinstance(given, list):
        return set(stored) == set(given)
    return bool(stored == given)


@bp.post("/webhooks/<webhook_id>")
def update_webhook_endpoint(webhook_id: str) -> BaseResponse:
    stored = _endpoint(webhook_id)
    reader = FormReader(request.form)
    values = {**_endpoint_values(reader), "enabled": reader.checkbox("enabled")}
    changes = {
        name: value
        for name, value in values.items()
        if name in reader.errors.by_field or not _same(name, stored.get(name), value)
    }
    try:
        body = reader.validate(UpdateWebhookRequest, changes)
        if changes:
            change_webhook(webhook_id, body)
    except FormInvalid as invalid:
        errors = invalid.errors
    except DomainError as error:
        errors = FieldErrors.from_error(error, DOMAIN_ERROR_FIELDS)
    else:
        return _to_endpoint(webhook_id, done="updated" if changes else "unchanged")
    return _endpoint_page(stored, fields=_posted_fields(), errors=errors, status=422)


@bp.post("/webhooks/<webhook_id>/rotate-secret")
def rotate_webhook_endpoint_secret(webhook_id: str) -> BaseResponse:
    stored = _endpoint(webhook_id)
    reader = FormReader(request.form)
    secret = reader.text("secret")
    try:
        body = reader.validate(RotateSecretRequest, {} if secret is None else {"secret": secret})
        rotated = rotate_webhook_signing_secret(webhook_id, body)
    except FormInvalid as invalid:
        errors = invalid.errors
    except DomainError as error:
        errors = FieldErrors.from_error(error, DOMAIN_ERROR_FIELDS)
    else:
        webhook = {**stored, "previous_secret_expires_at": rotated.previous_secret_expires_at}
        return _secret_page(webhook, rotated.secret, created=False, status=200)
    return _endpoint_page(stored, rotate_errors=errors, status=422)


@bp.post("/webhooks/<webhook_id>/test")
def send_webhook_endpoint_test(webhook_id: str) -> BaseResponse:
    queue_test_event(webhook_id)
    return _to_endpoint(webhook_id, done="test_sent")


@bp.post("/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver")
def redeliver_webhook_endpoint_delivery(webhook_id: str, delivery_id: str) -> BaseResponse:
    redeliver_one_delivery(webhook_id, delivery_id)
    return _to_endpoint(webhook_id, done="redelivered")


@bp.post("/webhooks/<webhook_id>/redeliver")
def redeliver_webhook_endpoint_failed(webhook_id: str) -> BaseResponse:
    stored = _endpoint(webhook_id)
    reader = FormReader(request.form)
    try:
        body = reader.validate(RedeliverFailedRequest, {"since": reader.datetime_utc("since")})
        counted = redeliver_failed_deliveries(webhook_id, body)
    except FormInvalid as invalid:
        errors, status = invalid.errors, 422
    except DomainError as error:  # webhook_disabled: said above the form
        errors, status = FieldErrors.from_error(error), error.status
    else:
        return _to_endpoint(webhook_id, redelivered=counted.redelivered)
    return _endpoint_page(stored, redeliver_errors=errors, status=status)
