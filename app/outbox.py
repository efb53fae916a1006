"""Recording events in the outbox, in the transaction of the change they report.

Which endpoints get an event: every endpoint of its tenant and environment subscribed to
its type that the statement recording it sees (committed before that statement ran).
An event that no endpoint subscribes to when it is recorded is stored already dispatched,
so the dispatcher never rewrites its row; it stays in the outbox as the record of the
change. One that some endpoint subscribes to is fanned out by the dispatcher to the
endpoints subscribed when it runs, which may include one created since.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

REWARD_CLAIMED = "reward.reward_claimed"
POINTS_AWARDED = "points.awarded"
POINTS_DEDUCTED = "points.deducted"
TIER_UPGRADED = "tier.upgraded"
POINTS_EXPIRED = "points.expired"
POINTS_RELEASED = "points.released"
TIER_DOWNGRADED = "tier.downgraded"
BADGE_AWARDED = "badge.awarded"
STREAK_MILESTONE = "streak.milestone"
STREAK_BROKEN = "streak.broken"
CHALLENGE_COMPLETED = "challenge.completed"
LEADERBOARD_RANK_CHANGED = "leaderboard.rank_changed"
REFERRAL_TRACKED = "referral.tracked"
REFERRAL_COMPLETED = "referral.completed"
COUPON_REDEEMED = "coupon.redeemed"
COUPON_EXPIRED = "coupon.expired"
REWARD_REDEEMED = "reward.redeemed"

# Names an endpoint may subscribe to for an event recorded under another: it receives
# those events under the name it subscribed to, with the same data. No event is recorded
# under an alias, so the claim path writes one outbox row per claim whoever listens; the
# fan-out (app.webhooks.dispatch) gives each delivery the name its endpoint subscribed to.
# An endpoint subscribes to one name of an event, never to both (check_event_names).
EVENT_ALIASES = {REWARD_REDEEMED: REWARD_CLAIMED}  # alias -> the type events are recorded as
# The aliases as SQL rows (name, type), from the constants above.
ALIAS_ROWS = "VALUES " + ", ".join(
    f"('{alias}', '{type_}')" for alias, type_ in EVENT_ALIASES.items()
)


def check_event_names(events: Sequence[str]) -> list[str]:
    """A subscription's event names, each once; ValueError when two name one event."""
    names = list(dict.fromkeys(events))
    for alias, type_ in EVENT_ALIASES.items():
        if alias in names and type_ in names:
            raise ValueError(f"{alias} and {type_} are one event: subscribe to one of them")
    return names


# Set on a session that recorded an event, so the caller knows after commit that the
# webhook dispatcher has work (a rolled-back savepoint leaves it set: a spare wake-up).
_RECORDED = "outbox_events_recorded"
# Set with it unless the writer learned that no endpoint subscribes to what it recorded.
_TO_DISPATCH = "outbox_events_to_dispatch"


def record_event(
    session: Session, tenant_id: uuid.UUID, env: str, event_type: str, data: dict[str, Any]
) -> uuid.UUID:
    """One event (single-participant writers); returns its id."""
    [event_id] = record_events(session, tenant_id, env, event_type, [data])
    return event_id


def mark_events_recorded(session: Session, *, subscribed: bool = True) -> None:
    """For writers that insert outbox rows themselves (multi-row INSERT, COPY).

    `subscribed=False` only from a writer that saw, in its transaction, that no webhook
    endpoint of the events' tenant and environment subscribes to their type, and stored
    them already dispatched.
    """
    session.info[_RECORDED] = True
    if subscribed:
        session.info[_TO_DISPATCH] = True


def events_recorded(session: Session) -> bool:
    return bool(session.info.get(_RECORDED))


def events_to_dispatch(session: Session) -> bool:
    """Whether to wake the webhook dispatcher after this transaction commits: False when
    every event recorded was for types no endpoint subscribed to, which were stored
    already dispatched."""
    return bool(session.info.get(_TO_DISPATCH))


# Whether any endpoint of the tenant and environment, enabled or not (fan-out records a
# disabled one's deliveries as failed), subscribes to one of the types or to an alias of
# one: the dispatcher's join, asked ahead of it.
ANY_SUBSCRIBED = (
    """
    EXISTS (
        SELECT FROM webhook_endpoints
        WHERE tenant_id = %(tenant_id)s AND env = %(env)s
          AND events ?| (CAST(%(types)s AS text[]) || ARRAY(
                SELECT alias.name FROM ("""  # noqa: S608 (constant fragments, no input)
    + ALIAS_ROWS
    + """) AS alias(name, type)
                WHERE alias.type = ANY(CAST(%(types)s AS text[]))))
    )
"""
)
# The events of a batch from one JSON array (one parameter whatever the batch size), in
# array order, with their ids; created_at is the column default (a data-modifying WITH
# runs to completion whether or not it is read). The same statement asks whether an
# endpoint subscribes to the type, and stores the events already dispatched when none does.
_INSERT_EVENTS = (
    """
    WITH subscribed AS (SELECT """  # noqa: S608 (constant fragments, no input)
    + ANY_SUBSCRIBED
    + """ AS endpoint),
    inserted AS (
        INSERT INTO outbox_events (id, tenant_id, env, type, payload, dispatched_at)
        SELECT (CAST(%(ids)s AS uuid[]))[event.position], %(tenant_id)s, %(env)s, %(type)s,
               event.payload, CASE WHEN subscribed.endpoint THEN NULL ELSE now() END
        FROM subscribed,
             jsonb_array_elements(CAST(%(payloads)s AS jsonb)) WITH ORDINALITY
                AS event(payload, position)
        ORDER BY event.position
    )
    SELECT endpoint FROM subscribed
    """
)


def endpoint_subscribes(
    session: Session, tenant_id: uuid.UUID, env: str, event_types: Sequence[str]
) -> bool:
    """For writers that record events themselves (COPY): ask before writing them, store
    them already dispatched when the answer is no, and pass it to mark_events_recorded."""
    return bool(
        session.connection()
        .exec_driver_sql(
            "SELECT " + ANY_SUBSCRIBED,
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
) -> list[uuid.UUID]:
    """Events of one type in one INSERT; returns their ids, in order."""
    if not payloads:
        return []
    event_ids = [uuid.uuid4() for _ in payloads]
    subscribed = (
        session.connection()
        .exec_driver_sql(
            _INSERT_EVENTS,
            {
                "ids": event_ids,
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
    return event_ids
