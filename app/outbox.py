"""Recording events in the outbox, in the transaction of the change they report."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.models import OutboxEvent

REWARD_CLAIMED = "reward.reward_claimed"
POINTS_AWARDED = "points.awarded"
POINTS_DEDUCTED = "points.deducted"
TIER_UPGRADED = "tier.upgraded"

# Set on a session that recorded an event, so the caller knows after commit that the
# webhook dispatcher has work (a rolled-back savepoint leaves it set: a spare wake-up).
_RECORDED = "outbox_events_recorded"


def record_event(
    session: Session, tenant_id: uuid.UUID, env: str, event_type: str, data: dict[str, Any]
) -> OutboxEvent:
    event = OutboxEvent(
        id=uuid.uuid4(), tenant_id=tenant_id, env=env, type=event_type, payload=data
    )
    session.add(event)
    mark_events_recorded(session)
    return event


def mark_events_recorded(session: Session) -> None:
    """For writers that insert outbox rows themselves (multi-row INSERT, COPY)."""
    session.info[_RECORDED] = True


def events_recorded(session: Session) -> bool:
    return bool(session.info.get(_RECORDED))


def record_events(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    event_type: str,
    payloads: list[dict[str, Any]],
) -> None:
    """Many events of one type in one multi-row INSERT (batched writers)."""
    if payloads:
        session.execute(
            insert(OutboxEvent),
            [
                {
                    "id": uuid.uuid4(),
                    "tenant_id": tenant_id,
                    "env": env,
                    "type": event_type,
                    "payload": payload,
                }
                for payload in payloads
            ],
        )
        mark_events_recorded(session)
