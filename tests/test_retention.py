"""Retention: what has served its purpose is purged in small batches that skip rows
anyone holds: finished deliveries, dispatched events once no delivery of theirs is left,
audit entries, finished operations; never a pending delivery, an undispatched event, an
event a delivery still needs, or anything younger than its retention.

The rows are backdated less than the defaults the suite's worker purges with, and purged
here with shorter retentions, so the worker's own sweeps cannot race this test."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.models import (
    AuditEntry,
    Environment,
    Operation,
    OperationStatus,
    OutboxEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from app.retention import Retention, purge_expired
from app.webhooks.signing import generate_secret
from tests.conftest import TenantKeys

RETENTION = Retention(
    operations=timedelta(hours=6),
    deliveries=timedelta(days=1),
    outbox=timedelta(days=1),
    audit=timedelta(days=1),
)
OLD = timedelta(days=2)  # past every retention above, within the worker's defaults
# A budget a purge of this test's rows never runs out of, on however busy a machine: these
# tests are about what goes, the sweep's own 2 s budget about how long one sweep works.
COMPLETE = 120.0


def _event(session: Session, tenant: TenantKeys, age: timedelta, dispatched: bool) -> uuid.UUID:
    created = utcnow() - age
    event = OutboxEvent(
        tenant_id=tenant.tenant_id,
        env=Environment.LIVE,
        type="reward.reward_claimed",
        payload={},
        created_at=created,
        dispatched_at=created if dispatched else None,
    )
    session.add(event)
    session.flush()
    return event.id


def _delivery(
    session: Session, endpoint_id: uuid.UUID, event_id: uuid.UUID, status: str, age: timedelta
) -> uuid.UUID:
    delivery = WebhookDelivery(
        endpoint_id=endpoint_id,
        event_id=event_id,
        event_type="reward.reward_claimed",
        status=status,
        created_at=utcnow() - age,
    )
    session.add(delivery)
    session.flush()
    return delivery.id


def _world(session_factory: sessionmaker[Session], tenant: TenantKeys) -> dict[str, Any]:
    with session_factory.begin() as session:
        # Disabled: the workers' dispatcher leaves its pending delivery alone.
        endpoint = WebhookEndpoint(
            tenant_id=tenant.tenant_id,
            env=Environment.LIVE,
            url="https://example.invalid/hook",
            events=["reward.reward_claimed"],
            secret=generate_secret(),
            enabled=False,
        )
        session.add(endpoint)
        session.flush()
        done_event = _event(session, tenant, OLD, dispatched=True)
        given_up_event = _event(session, tenant, OLD, dispatched=True)
        retried_event = _event(session, tenant, OLD, dispatched=True)
        world = {
            "bare_event": _event(session, tenant, OLD, dispatched=True),
            "undispatched_event": _event(session, tenant, OLD, dispatched=False),
            "young_event": _event(session, tenant, timedelta(hours=1), dispatched=True),
            "done_event": done_event,
            "retried_event": retried_event,
            "succeeded": _delivery(session, endpoint.id, done_event, "succeeded", OLD),
            "failed": _delivery(session, endpoint.id, given_up_event, "failed", OLD),
            "pending": _delivery(session, endpoint.id, retried_event, "pending", OLD),
        }
        for age in (OLD, timedelta(hours=1)):
            session.add(
                AuditEntry(
                    tenant_id=tenant.tenant_id,
                    env=Environment.LIVE,
                    action="reward.create",
                    target_id=str(age),
                    created_at=utcnow() - age,
                )
            )
        for hours in (12, 1):
            session.add(
                Operation(
                    tenant_id=tenant.tenant_id,
                    env=Environment.LIVE,
                    kind="points.award",
                    idempotency_key=f"finished-{hours}h-ago",
                    fingerprint="x",
                    payload={},
                    status=OperationStatus.SUCCEEDED.value,
                    http_status=200,
                    finished_at=utcnow() - timedelta(hours=hours),
                )
            )
    return world


def _left(session_factory: sessionmaker[Session], tenant: TenantKeys) -> dict[str, Any]:
    with session_factory() as session:
        return {
            "events": set(
                session.execute(
                    select(OutboxEvent.id).where(OutboxEvent.tenant_id == tenant.tenant_id)
                ).scalars()
            ),
            "deliveries": set(
                session.execute(
                    select(WebhookDelivery.id)
                    .join(WebhookEndpoint)
                    .where(WebhookEndpoint.tenant_id == tenant.tenant_id)
                ).scalars()
            ),
            "audit": session.execute(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.tenant_id == tenant.tenant_id)
            ).scalar_one(),
            "operations": set(
                session.execute(
                    select(Operation.idempotency_key).where(Operation.tenant_id == tenant.tenant_id)
                ).scalars()
            ),
        }


def test_purge_removes_only_what_served_its_purpose(
    session_factory: sessionmaker[Session], tenant: TenantKeys
) -> None:
    world = _world(session_factory, tenant)
    purge_expired(session_factory, RETENTION, batch=2, budget_seconds=COMPLETE)
    left = _left(session_factory, tenant)
    # The finished deliveries went first, so their event could follow in the same run.
    assert left["deliveries"] == {world["pending"]}
    assert left["events"] == {
        world["undispatched_event"],
        world["young_event"],
        world["retried_event"],
    }
    assert left["audit"] == 1
    assert left["operations"] == {"finished-1h-ago"}
    # Once its last delivery is done and past retention, the kept event goes too.
    with session_factory.begin() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == world["pending"])
            .values(status="succeeded")
        )
    purge_expired(session_factory, RETENTION, budget_seconds=COMPLETE)
    assert world["retried_event"] not in _left(session_factory, tenant)["events"]


def test_purge_skips_rows_someone_holds_instead_of_waiting(
    session_factory: sessionmaker[Session], tenant: TenantKeys
) -> None:
    world = _world(session_factory, tenant)
    with session_factory.begin() as holder:
        holder.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.id == world["succeeded"])
            .with_for_update()
        ).one()
        purge_expired(session_factory, RETENTION, budget_seconds=5)
        left = _left(session_factory, tenant)["deliveries"]
        assert left == {world["pending"], world["succeeded"]}
    purge_expired(session_factory, RETENTION, budget_seconds=COMPLETE)
    assert _left(session_factory, tenant)["deliveries"] == {world["pending"]}
