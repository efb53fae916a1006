"""Recording events in the outbox, in the transaction of the change they report."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.models import OutboxEvent

REWARD_CLAIMED = "reward.reward_claimed"
POINTS_AWARDED = "points.awarded"
POINTS_DEDUCTED = "points.deducted"
TIER_UPGRADED = "tier.upgraded"

# Set on a session that recorded an event, so the caller knows after commit that the
# webhook dispatcher has work (a rolled-back savepoint leaves it set: a spare wake-up).
_RECORDED = "outbox_events_recorded"
# Set with it unless the writer learned that no endpoint subscribes to what it recorded.
_TO_DISPATCH = "outbox_events_to_dispatch"


def record_event(
    session: Session, tenant_id: uuid.UUID, env: str, event_type: str, data: dict[str, Any]
) -> OutboxEvent:
    event = OutboxEvent(
        id=uuid.uuid4(), tenant_id=tenant_id, env=env, type=event_type, payload=data
    )
    session.add(event)
    mark_events_recorded(session)
    return event


def mark_events_recorded(session: Session, *, subscribed: bool = True) -> None:
    """For writers that insert outbox rows themselves (multi-row INSERT, COPY).

    `subscribed=False` only from a writer that saw, in its transaction, that no webhook
    endpoint of the events' tenant and environment subscribes to their type.
    """
    session.info[_RECORDED] = True
    if subscribed:
        session.info[_TO_DISPATCH] = True


def events_recorded(session: Session) -> bool:
    return bool(session.info.get(_RECORDED))


def events_to_dispatch(session: Session) -> bool:
    """Whether to wake the webhook dispatcher after this transaction commits.

    False when every event recorded was for types no endpoint subscribed to. Skipping the
    wake-up then loses nothing: the events are in the outbox either way, and the dispatcher
    (run by beat every WEBHOOK_DISPATCH_INTERVAL_SECONDS) fans each one out to the
    endpoints subscribed when it runs, so one created meanwhile still gets it.
    """
    return bool(session.info.get(_TO_DISPATCH))


# Whether any endpoint of the tenant and environment, enabled or not (fan-out records a
# disabled one's deliveries as failed), subscribes to one of the types: the dispatcher's
# join, asked ahead of it.
_ANY_SUBSCRIBED = """
    EXISTS (
        SELECT FROM webhook_endpoints
        WHERE tenant_id = %(tenant_id)s AND env = %(env)s
          AND events ?| CAST(%(types)s AS text[])
    )
"""
# The events of a batch from one JSON array (one parameter whatever the batch size), in
# array order; ids are random UUIDs like the ORM's, created_at is the column default (a
# data-modifying WITH runs to completion whether or not it is read). The same statement
# answers whether an endpoint subscribes to the type.
_INSERT_EVENTS = (
    """
    WITH inserted AS (
        INSERT INTO outbox_events (id, tenant_id, env, type, payload)
        SELECT gen_random_uuid(), %(tenant_id)s, %(env)s, %(type)s, event.payload
        FROM jsonb_array_elements(CAST(%(payloads)s AS jsonb)) WITH ORDINALITY
            AS event(payload, position)
        ORDER BY event.position
    )
    SELECT """  # noqa: S608 (constant fragments, no input)
    + _ANY_SUBSCRIBED
)


def endpoint_subscribes(
    session: Session, tenant_id: uuid.UUID, env: str, event_types: Sequence[str]
) -> bool:
    """For writers that record events themselves (COPY): pass the answer, asked in the
    writing transaction, to mark_events_recorded."""
    return bool(
        session.connection()
        .exec_driver_sql(
            "SELECT " + _ANY_SUBSCRIBED,
            {"tenant_id": tenant_id, "env": env, "types": list(event_types)},
        )
        .scalar_one()
    )


def record_events(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    event_type: str,
    payloads: list[dict[str, Any]],
) -> None:
    """Many events of one type in one INSERT (batched writers)."""
    if payloads:
        subscribed = (
            session.connection()
            .exec_driver_sql(
                _INSERT_EVENTS,
                {
                    "tenant_id": tenant_id,
                    "env": env,
                    "type": event_type,
                    "types": [event_type],
                    "payloads": json.dumps(payloads),
                },
            )
            .scalar_one()
        )
        mark_events_recorded(session, subscribed=bool(subscribed))
