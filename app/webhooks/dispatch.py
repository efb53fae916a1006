"""The delivery state machine, kept in PostgreSQL: fan-out, claiming, recording attempts.

Each step is a few set-based statements in the caller's transaction, so its cost is per
batch, not per delivery:
- `fan_out_events`: one INSERT ... SELECT turns every undispatched outbox event into one
  delivery per subscribed endpoint of its tenant and environment, and marks the events
  dispatched, atomically (a crash either does both or neither). An endpoint subscribed to
  an alias of the event's type (app.outbox.EVENT_ALIASES) gets it under that name.
- `claim_due_deliveries`: takes due deliveries under a lease, at most `max_in_flight`
  per endpoint counting the ones already leased, oldest due first across endpoints.
- `record_attempts`: one executemany for the deliveries, a few statements for endpoints.
Retries are rows with a future `next_attempt_at`, never long broker countdowns.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, func, text, update
from sqlalchemy.orm import Session

from app.models import WebhookDelivery, WebhookEndpoint
from app.outbox import ALIAS_ROWS
from app.webhooks.secret_box import SecretBox, SecretKeyError
from app.webhooks.transport import SendResult

log = logging.getLogger(__name__)

FAN_OUT_BATCH = 5000
GONE = 410
# Statuses whose Retry-After says when to come back.
RETRY_AFTER_STATUSES = (429, 503)
RETRY_AFTER_CAP_SECONDS = 24 * 3600.0
JITTER = 0.1  # +-10% of each delay, so endpoints that failed together do not retry together
LAST_ERROR_LIMIT = 500

_FAN_OUT = text(
    """
    WITH events AS (
        SELECT id, tenant_id, env, type FROM outbox_events
        WHERE dispatched_at IS NULL
        ORDER BY created_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ),
    -- Each event under its own type and under each alias of it: the names an endpoint
    -- may have subscribed to it by (one of them per endpoint, app.outbox.check_event_names).
    named AS (
        SELECT id, tenant_id, env, type FROM events
        UNION ALL
        SELECT ev.id, ev.tenant_id, ev.env, alias.name
        FROM events ev JOIN ("""  # noqa: S608 (constant fragments, no input)
    + ALIAS_ROWS
    + """) AS alias(name, type) ON alias.type = ev.type
    ),
    fanned AS (
        -- A disabled endpoint gets its deliveries as failed, so that re-enabling it and
        -- redelivering the failed ones since the outage recovers every event.
        INSERT INTO webhook_deliveries (
            id, endpoint_id, event_id, event_type, status, attempts, next_attempt_at,
            last_error, created_at
        )
        SELECT gen_random_uuid(), e.id, ev.id, ev.type,
               CASE WHEN e.enabled THEN 'pending' ELSE 'failed' END, 0,
               CASE WHEN e.enabled THEN CAST(:now AS timestamptz) END,
               CASE WHEN e.enabled THEN NULL
                    WHEN e.disabled_reason = 'gone' THEN :gone_error
                    WHEN e.disabled_reason = 'failing' THEN :failing_error
                    ELSE :manual_error END,
               :now
        FROM named ev
        JOIN webhook_endpoints e
          ON e.tenant_id = ev.tenant_id AND e.env = ev.env
         AND e.events @> jsonb_build_array(ev.type)
        ON CONFLICT (endpoint_id, event_id) DO NOTHING
        RETURNING status
    ),
    marked AS (
        UPDATE outbox_events o SET dispatched_at = :now
        FROM events WHERE o.id = events.id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM marked) AS events,
           (SELECT count(*) FROM fanned WHERE status = 'pending') AS deliveries
    """
)

_CLAIM_DUE = text(
    """
    WITH due_endpoints AS (
        -- NO KEY UPDATE: serializes claimers of one endpoint (so the in-flight count below
        -- holds) without blocking fan-out inserts, whose foreign key takes KEY SHARE.
        SELECT e.id FROM webhook_endpoints e
        WHERE e.enabled AND e.id IN (
            SELECT d.endpoint_id FROM webhook_deliveries d
            WHERE d.status = 'pending' AND d.next_attempt_at <= :now
        )
        FOR NO KEY UPDATE SKIP LOCKED
    ),
    slots AS (
        SELECT de.id AS endpoint_id,
               :max_in_flight - (
                   SELECT count(*) FROM webhook_deliveries f
                   WHERE f.endpoint_id = de.id AND f.status = 'pending'
                     AND f.leased_until > :now
               ) AS free
        FROM due_endpoints de
    ),
    picked AS (
        SELECT p.id FROM slots s
        CROSS JOIN LATERAL (
            SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
            WHERE d.endpoint_id = s.endpoint_id AND d.status = 'pending'
              AND d.next_attempt_at <= :now
            ORDER BY d.next_attempt_at
            LIMIT greatest(s.free, 0)
            FOR UPDATE SKIP LOCKED
        ) p
        ORDER BY p.next_attempt_at
        LIMIT :limit
    )
    UPDATE webhook_deliveries d
    SET next_attempt_at = :lease_until, leased_until = :lease_until
    FROM picked, webhook_endpoints e, outbox_events o
    WHERE d.id = picked.id AND e.id = d.endpoint_id AND o.id = d.event_id
    RETURNING d.id, d.attempts, d.event_id, d.event_type, o.created_at AS event_created_at,
              o.payload, e.id AS endpoint_id, e.url, e.payload_format, e.secret,
              e.failing_since,
              CASE WHEN e.previous_secret_expires_at > :now THEN e.previous_secret END
                  AS previous_secret
    """
)


@dataclass(frozen=True)
class FanOut:
    events: int
    deliveries: int  # pending ones created (deliveries for disabled endpoints not counted)


def fan_out_events(session: Session, now: datetime, limit: int = FAN_OUT_BATCH) -> FanOut:
    row = session.execute(
        _FAN_OUT,
        {
            "now": now,
            "limit": limit,
            **{f"{reason}_error": error for reason, error in DISABLED_ERRORS.items()},
        },
    ).one()
    return FanOut(events=int(row.events), deliveries=int(row.deliveries))


@dataclass(frozen=True)
class ClaimedDelivery:
    id: uuid.UUID
    attempts: int  # attempts made before this one
    event_id: uuid.UUID
    event_type: str
    event_created_at: datetime
    payload: dict[str, Any]
    endpoint_id: uuid.UUID
    url: str
    signing_secrets: tuple[str, ...]
    endpoint_was_failing: bool  # at claim time; only then does a success touch the endpoint
    payload_format: str  # the endpoint's, app.webhooks.payloads

    def __repr__(self) -> str:  # never print the secrets
        return f"ClaimedDelivery(id={self.id}, endpoint_id={self.endpoint_id})"


def _signing_secrets(secret_box: SecretBox, row: Any) -> tuple[str, ...]:
    """The endpoint's active secrets, opened; none if one cannot be (its attempt then fails,
    see send_delivery), so that one endpoint's secret cannot stop everyone's deliveries."""
    try:
        return tuple(secret_box.open(s) for s in (row.secret, row.previous_secret) if s)
    except SecretKeyError as exc:
        log.error("webhook endpoint %s: cannot open its signing secret: %s", row.endpoint_id, exc)
        return ()


def claim_due_deliveries(
    session: Session,
    now: datetime,
    *,
    limit: int,
    max_in_flight_per_endpoint: int,
    lease: timedelta,
    secret_box: SecretBox,
) -> list[ClaimedDelivery]:
    if limit <= 0:
        return []
    rows = session.execute(
        _CLAIM_DUE,
        {
            "now": now,
            "limit": limit,
            "max_in_flight": max_in_flight_per_endpoint,
            "lease_until": now + lease,
        },
    ).all()
    return [
        ClaimedDelivery(
            id=row.id,
            attempts=row.attempts,
            event_id=row.event_id,
            event_type=row.event_type,
            event_created_at=row.event_created_at,
            payload=row.payload,
            endpoint_id=row.endpoint_id,
            url=row.url,
            signing_secrets=_signing_secrets(secret_box, row),
            endpoint_was_failing=row.failing_since is not None,
            payload_format=row.payload_format,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class RetryPolicy:
    schedule: Sequence[float]  # delay before attempt 2, 3, ...: len(schedule) + 1 attempts
    disable_after_failing: timedelta

    def next_delay(self, attempts_made: int, result: SendResult) -> float | None:
        """Seconds until the next attempt, or None when the delivery has failed for good."""
        if attempts_made > len(self.schedule):
            return None
        delay = self.schedule[attempts_made - 1]
        if result.status in RETRY_AFTER_STATUSES and result.retry_after_seconds is not None:
            # The receiver said when it can take more: neither sooner nor needlessly later.
            delay = min(max(result.retry_after_seconds, 0.0), RETRY_AFTER_CAP_SECONDS)
            return delay * random.uniform(1.0, 1.0 + JITTER)
        return delay * random.uniform(1.0 - JITTER, 1.0 + JITTER)


@dataclass(frozen=True)
class Attempt:
    delivery: ClaimedDelivery
    result: SendResult
    attempted_at: datetime


def _outcome_error(result: SendResult) -> str | None:
    if result.error:
        return result.error[:LAST_ERROR_LIMIT]
    if result.succeeded:
        return None
    return f"HTTP {result.status}"


def record_attempts(
    session: Session, attempts: Sequence[Attempt], policy: RetryPolicy, now: datetime
) -> None:
    """Store each attempt's outcome and schedule retries; disable gone or long-failing
    endpoints (their pending deliveries fail, to be redelivered once re-enabled)."""
    if not attempts:
        return
    rows: list[dict[str, Any]] = []
    succeeded: set[uuid.UUID] = set()
    recovered: set[uuid.UUID] = set()
    failed: set[uuid.UUID] = set()
    gone: set[uuid.UUID] = set()
    for attempt in attempts:
        delivery, result = attempt.delivery, attempt.result
        attempts_made = delivery.attempts + 1
        row: dict[str, Any] = {
            "b_id": delivery.id,
            "attempts": attempts_made,
            "last_attempt_at": attempt.attempted_at,
            "last_response_status": result.status,
            "last_response_body": result.body,
            "last_error": _outcome_error(result),
            "leased_until": None,
            "delivered_at": None,
        }
        if result.succeeded:
            if delivery.endpoint_was_failing:
                recovered.add(delivery.endpoint_id)
            succeeded.add(delivery.endpoint_id)
            row.update(status="succeeded", next_attempt_at=None, delivered_at=now)
        else:
            failed.add(delivery.endpoint_id)
            delay = None if result.status == GONE else policy.next_delay(attempts_made, result)
            if result.status == GONE:
                gone.add(delivery.endpoint_id)
            if delay is None:
                row.update(status="failed", next_attempt_at=None)
            else:
                row.update(status="pending", next_attempt_at=now + timedelta(seconds=delay))
        rows.append(row)
    table = cast(Table, WebhookDelivery.__table__)
    session.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            status=bindparam("status"),
            attempts=bindparam("attempts"),
            next_attempt_at=bindparam("next_attempt_at"),
            leased_until=bindparam("leased_until"),
            last_attempt_at=bindparam("last_attempt_at"),
            last_response_status=bindparam("last_response_status"),
            last_response_body=bindparam("last_response_body"),
            last_error=bindparam("last_error"),
            delivered_at=bindparam("delivered_at"),
        ),
        rows,
        execution_options={"synchronize_session": False},
    )
    _record_endpoint_health(session, recovered, failed - succeeded, gone, policy, now)


def _record_endpoint_health(
    session: Session,
    recovered: set[uuid.UUID],
    only_failed: set[uuid.UUID],
    gone: set[uuid.UUID],
    policy: RetryPolicy,
    now: datetime,
) -> None:
    # Any success means the endpoint is not failing continuously. (An endpoint that starts
    # failing between claim and answer keeps a failing_since one success too long: it is
    # cleared by the next success.)
    if recovered:
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id.in_(recovered), WebhookEndpoint.failing_since.is_not(None))
            .values(failing_since=None)
        )
    failing_too_long: set[uuid.UUID] = set()
    if only_failed:
        failing = session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id.in_(only_failed))
            .values(failing_since=func.coalesce(WebhookEndpoint.failing_since, now))
            .returning(WebhookEndpoint.id, WebhookEndpoint.failing_since)
        ).all()
        failing_too_long = {
            endpoint_id
            for endpoint_id, since in failing
            if since is not None and now - since >= policy.disable_after_failing
        }
    disable_endpoints(session, gone, "gone", now)
    disable_endpoints(session, failing_too_long - gone, "failing", now)


DISABLED_ERRORS = {
    "gone": "not sent: endpoint disabled (it answered 410 Gone)",
    "failing": "not sent: endpoint disabled (failing continuously)",
    "manual": "not sent: endpoint disabled",
}


def disable_endpoints(
    session: Session, endpoint_ids: set[uuid.UUID], reason: str, now: datetime
) -> None:
    if not endpoint_ids:
        return
    session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id.in_(endpoint_ids), WebhookEndpoint.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason, updated_at=now)
    )
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id.in_(endpoint_ids),
            WebhookDelivery.status == "pending",
        )
        .values(
            status="failed",
            next_attempt_at=None,
            leased_until=None,
            # Keep what the last attempt got, if there was one: that is what to fix.
            last_error=case(
                (WebhookDelivery.attempts == 0, DISABLED_ERRORS[reason]),
                else_=func.left(
                    DISABLED_ERRORS[reason].removeprefix("not sent: ")
                    + "; last attempt: "
                    + func.coalesce(WebhookDelivery.last_error, "none"),
                    LAST_ERROR_LIMIT,
                ),
            ),
        ),
        execution_options={"synchronize_session": False},
    )
