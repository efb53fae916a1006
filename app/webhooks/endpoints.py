"""Webhook endpoints and their deliveries, as the admin API manages them.

Every lookup is scoped by tenant and environment: another tenant's id is simply not found.
Secrets leave this module only in the create and rotate results, never in a view.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import Conflict, DomainError, NotFound
from app.models import OutboxEvent, WebhookDelivery, WebhookEndpoint
from app.outbox import (
    BADGE_AWARDED,
    CHALLENGE_COMPLETED,
    COUPON_EXPIRED,
    COUPON_REDEEMED,
    LEADERBOARD_RANK_CHANGED,
    POINTS_AWARDED,
    POINTS_DEDUCTED,
    POINTS_EXPIRED,
    POINTS_RELEASED,
    REFERRAL_COMPLETED,
    REFERRAL_TRACKED,
    REWARD_CLAIMED,
    REWARD_REDEEMED,
    STREAK_BROKEN,
    STREAK_MILESTONE,
    TIER_DOWNGRADED,
    TIER_UPGRADED,
    check_event_names,
)
from app.webhooks.dispatch import disable_endpoints
from app.webhooks.payloads import STANDARD
from app.webhooks.secret_box import SecretBox
from app.webhooks.signing import caller_secret_problem, generate_secret
from app.webhooks.transport import Resolver, resolve_with_system, validate_endpoint_url

SUBSCRIBABLE_EVENTS = (
    REWARD_CLAIMED,
    POINTS_AWARDED,
    POINTS_DEDUCTED,
    TIER_UPGRADED,
    POINTS_EXPIRED,
    POINTS_RELEASED,
    TIER_DOWNGRADED,
    BADGE_AWARDED,
    STREAK_MILESTONE,
    STREAK_BROKEN,
    CHALLENGE_COMPLETED,
    LEADERBOARD_RANK_CHANGED,
    REFERRAL_TRACKED,
    REFERRAL_COMPLETED,
    COUPON_REDEEMED,
    COUPON_EXPIRED,
    REWARD_REDEEMED,  # reward.reward_claimed under its 23blocks name (app.outbox.EVENT_ALIASES)
)
# Sent by "send a test event" to that endpoint only, whatever it subscribes to.
TEST_EVENT = "webhook.test"
SECRET_ROTATION_OVERLAP = timedelta(hours=24)


def webhook_not_found() -> NotFound:
    return NotFound("webhook_not_found", "Webhook endpoint not found")


def delivery_not_found() -> NotFound:
    return NotFound("delivery_not_found", "Webhook delivery not found")


@dataclass(frozen=True)
class UrlPolicy:
    allow_private: bool
    resolve: Resolver = resolve_with_system


def signing_secret(given: str | None) -> str:
    """The caller's secret when it gives one (checked: app.webhooks.signing), else a new
    one the engine makes."""
    if given is None:
        return generate_secret()
    problem = caller_secret_problem(given)
    if problem is not None:
        raise DomainError("invalid_webhook_secret", f"secret {problem}", 422)
    return given


def create_endpoint(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    *,
    url: str,
    events: Sequence[str],
    description: str | None,
    url_policy: UrlPolicy,
    secret_box: SecretBox,
    secret: str | None = None,
    payload_format: str = STANDARD,
) -> tuple[WebhookEndpoint, str]:
    """The new endpoint and its signing secret: the caller's `secret` if given, else one
    made now (shown to the caller this once); stored sealed when a SECRET_KEY is set.
    `payload_format` shapes its request bodies (app.webhooks.payloads)."""
    validate_endpoint_url(url, url_policy.allow_private, url_policy.resolve)
    secret = signing_secret(secret)
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        env=env,
        url=url,
        description=description,
        events=check_event_names(events),
        enabled=True,
        secret=secret_box.seal(secret),
        payload_format=payload_format,
        created_at=utcnow(),
    )
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def get_endpoint(
    session: Session, tenant_id: uuid.UUID, env: str, endpoint_id: uuid.UUID, *, lock: bool = False
) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id,
        WebhookEndpoint.tenant_id == tenant_id,
        WebhookEndpoint.env == env,
    )
    if lock:
        query = query.with_for_update()
    endpoint = session.execute(query).scalar_one_or_none()
    if endpoint is None:
        raise webhook_not_found()
    return endpoint


def list_endpoints(
    session: Session, tenant_id: uuid.UUID, env: str, *, offset: int, limit: int
) -> tuple[list[WebhookEndpoint], int]:
    conditions = (WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.env == env)
    total = session.execute(
        select(func.count()).select_from(WebhookEndpoint).where(*conditions)
    ).scalar_one()
    endpoints = session.execute(
        select(WebhookEndpoint)
        .where(*conditions)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        .offset(offset)
        .limit(limit)
    ).scalars()
    return list(endpoints), int(total)


def update_endpoint(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    endpoint_id: uuid.UUID,
    changes: dict[str, Any],
    url_policy: UrlPolicy,
) -> WebhookEndpoint:
    """Apply `changes` (url, events, description, payload_format, enabled). Disabling fails
    the pending deliveries (redeliver them after re-enabling); enabling clears the failure
    record."""
    endpoint = get_endpoint(session, tenant_id, env, endpoint_id, lock=True)
    now = utcnow()
    if "url" in changes:
        validate_endpoint_url(changes["url"], url_policy.allow_private, url_policy.resolve)
        endpoint.url = changes["url"]
    if "events" in changes:
        endpoint.events = check_event_names(changes["events"])
    if "description" in changes:
        endpoint.description = changes["description"]
    if "payload_format" in changes:
        endpoint.payload_format = changes["payload_format"]
    if changes.get("enabled") is True and not endpoint.enabled:
        endpoint.enabled = True
        endpoint.disabled_reason = None
        endpoint.failing_since = None
    endpoint.updated_at = now
    session.flush()
    if changes.get("enabled") is False and endpoint.enabled:
        disable_endpoints(session, {endpoint.id}, "manual", now)
        session.refresh(endpoint)
    return endpoint


def delete_endpoint(
    session: Session, tenant_id: uuid.UUID, env: str, endpoint_id: uuid.UUID
) -> None:
    """Remove the endpoint and its delivery log (the events stay in the outbox)."""
    endpoint = get_endpoint(session, tenant_id, env, endpoint_id, lock=True)
    session.delete(endpoint)
    session.flush()


@dataclass(frozen=True)
class RotatedSecret:
    secret: str
    previous_secret_expires_at: datetime


def rotate_secret(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    endpoint_id: uuid.UUID,
    secret_box: SecretBox,
    secret: str | None = None,
) -> RotatedSecret:
    """A new signing secret (the caller's `secret` if given, else one made now); the
    current one keeps signing alongside it for 24 hours."""
    new_secret = signing_secret(secret)
    endpoint = get_endpoint(session, tenant_id, env, endpoint_id, lock=True)
    now = utcnow()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + SECRET_ROTATION_OVERLAP
    endpoint.secret = secret_box.seal(new_secret)
    endpoint.updated_at = now
    session.flush()
    return RotatedSecret(new_secret, endpoint.previous_secret_expires_at)


def endpoint_view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    now = utcnow()
    overlap_ends = endpoint.previous_secret_expires_at
    return {
        "id": str(endpoint.id),
        "url": endpoint.url,
        "description": endpoint.description,
        "events": list(endpoint.events),
        "enabled": endpoint.enabled,
        "payload_format": endpoint.payload_format,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": endpoint.failing_since,
        "previous_secret_expires_at": overlap_ends if overlap_ends and overlap_ends > now else None,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }


def list_deliveries(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    endpoint_id: uuid.UUID,
    *,
    status: str | None,
    offset: int,
    limit: int,
) -> tuple[list[WebhookDelivery], int]:
    get_endpoint(session, tenant_id, env, endpoint_id)
    conditions = [WebhookDelivery.endpoint_id == endpoint_id]
    if status is not None:
        conditions.append(WebhookDelivery.status == status)
    total = session.execute(
        select(func.count()).select_from(WebhookDelivery).where(*conditions)
    ).scalar_one()
    deliveries = session.execute(
        select(WebhookDelivery)
        .where(*conditions)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .offset(offset)
        .limit(limit)
    ).scalars()
    return list(deliveries), int(total)


def get_delivery(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> WebhookDelivery:
    get_endpoint(session, tenant_id, env, endpoint_id)
    delivery = session.execute(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id
        )
    ).scalar_one_or_none()
    if delivery is None:
        raise delivery_not_found()
    return delivery


def delivery_view(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": str(delivery.id),
        "event_id": str(delivery.event_id),
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at if delivery.status == "pending" else None,
        "last_attempt_at": delivery.last_attempt_at,
        "last_response_status": delivery.last_response_status,
        "last_response_body": delivery.last_response_body,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at,
        "delivered_at": delivery.delivered_at,
    }


def _require_enabled(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise Conflict("webhook_disabled", "Webhook endpoint is disabled; enable it first")


def _restart_values(now: datetime) -> dict[str, Any]:
    # A redelivery is a fresh run of the retry schedule, under the same webhook-id.
    return {
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "leased_until": None,
        "delivered_at": None,
    }


def redeliver(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> WebhookDelivery:
    _require_enabled(get_endpoint(session, tenant_id, env, endpoint_id))
    delivery = get_delivery(session, tenant_id, env, endpoint_id, delivery_id)
    for name, value in _restart_values(utcnow()).items():
        setattr(delivery, name, value)
    session.flush()
    return delivery


def redeliver_failed_since(
    session: Session, tenant_id: uuid.UUID, env: str, endpoint_id: uuid.UUID, since: datetime
) -> int:
    """Queue again every failed delivery of the endpoint created at or after `since`."""
    _require_enabled(get_endpoint(session, tenant_id, env, endpoint_id))
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == "failed",
            WebhookDelivery.created_at >= since,
        )
        .values(**_restart_values(utcnow())),
        execution_options={"synchronize_session": False},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def send_test_event(
    session: Session, tenant_id: uuid.UUID, env: str, endpoint_id: uuid.UUID
) -> WebhookDelivery:
    """A `webhook.test` event for this endpoint only, delivered like any other."""
    endpoint = get_endpoint(session, tenant_id, env, endpoint_id)
    _require_enabled(endpoint)
    now = utcnow()
    # Written already dispatched: the fan-out must not offer it to other endpoints.
    event = OutboxEvent(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        env=env,
        type=TEST_EVENT,
        payload={"message": "Test event from rewards-engine", "endpoint_id": str(endpoint.id)},
        created_at=now,
        dispatched_at=now,
    )
    session.add(event)
    session.flush()
    delivery = WebhookDelivery(
        id=uuid.uuid4(),
        endpoint_id=endpoint.id,
        event_id=event.id,
        event_type=TEST_EVENT,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    return delivery


def reseal_secrets(session: Session, secret_box: SecretBox) -> int:
    """Store every endpoint's secrets sealed with the box's first key (or, with no key, as
    they are): after a key is added to SECRET_KEY, or set for the first time. How many
    endpoints changed. Raises SecretKeyError if a stored secret opens with no listed key."""
    endpoints = session.execute(
        select(WebhookEndpoint).order_by(WebhookEndpoint.id).with_for_update()
    ).scalars()
    changed = 0
    for endpoint in endpoints:
        secret = secret_box.reseal(endpoint.secret)
        previous = secret_box.reseal(endpoint.previous_secret) if endpoint.previous_secret else None
        if (secret, previous) != (endpoint.secret, endpoint.previous_secret):
            endpoint.secret, endpoint.previous_secret = secret, previous
            changed += 1
    return changed
