"""The console overview's figures (app/console_overview.py) against PostgreSQL, and the
write path's record of how each request wanted its answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.console_overview import (
    failing_endpoints,
    low_stock_rewards,
    outbox_backlog,
    write_traffic,
)
from app.models import (
    Operation,
    OutboxEvent,
    Reward,
    WebhookDelivery,
    WebhookEndpoint,
)
from app.tenancy import create_tenant
from tests.conftest import TenantKeys

NOW = datetime(2027, 3, 1, 12, 30, 30, tzinfo=UTC)
WAIT = timedelta(seconds=5)
MINUTE = timedelta(minutes=1)
QUARTER = timedelta(minutes=15)


@pytest.fixture
def tenant_id(db_session: Session) -> uuid.UUID:
    return create_tenant(db_session, "Overview").id


def add_operation(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    at: datetime,
    kind: str = "points.award",
    status: str = "succeeded",
    http_status: int | None = 200,
    took: timedelta | None = timedelta(milliseconds=80),
    async_requested: bool | None = False,
    env: str = "live",
) -> None:
    finished = status in ("succeeded", "failed")
    session.add(
        Operation(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            env=env,
            kind=kind,
            fingerprint="f" * 64,
            payload={},
            status=status,
            http_status=http_status if finished else None,
            created_at=at,
            enqueued_at=at,
            finished_at=at + took if finished and took is not None else None,
            async_requested=async_requested,
        )
    )
    session.flush()


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return NOW.replace(hour=hour, minute=minute, second=second)


def test_writes_of_the_last_hour_per_minute_by_kind_and_outcome(
    db_session: Session, tenant_id: uuid.UUID
) -> None:
    add = lambda **fields: add_operation(db_session, tenant_id, **fields)  # noqa: E731
    add(at=at(12, 5, 10))
    add(at=at(12, 5, 50))
    add(at=at(12, 5, 40), kind="rewards.claim", status="failed", http_status=409)
    add(at=at(12, 10), kind="rewards.claim", status="failed", http_status=500)
    add(at=at(12, 30, 20), status="queued")  # accepted 10 s ago, not yet run
    add(at=at(11, 31), kind="points.deduct")  # the first minute of the window
    add(at=at(11, 30, 59))  # a second before the window
    add(at=at(12, 20), env="test")
    add_operation(db_session, create_tenant(db_session, "Other").id, at=at(12, 20))

    traffic = write_traffic(
        db_session,
        tenant_id,
        "live",
        now=NOW,
        window=timedelta(hours=1),
        bucket=MINUTE,
        sync_wait=WAIT,
    )

    # Sixty whole minutes through the one holding `now`.
    assert (traffic.since, traffic.until) == (at(11, 31), at(12, 31))
    assert len(traffic.bucket_starts) == 60
    minute = {start: position for position, start in enumerate(traffic.bucket_starts)}
    expected = {outcome: [0] * 60 for outcome in ("succeeded", "refused", "failed", "pending")}
    expected["succeeded"][minute[at(12, 5)]] = 2
    expected["succeeded"][minute[at(11, 31)]] = 1
    expected["refused"][minute[at(12, 5)]] = 1
    expected["failed"][minute[at(12, 10)]] = 1
    expected["pending"][minute[at(12, 30)]] = 1
    assert traffic.by_outcome() == expected
    assert traffic.total == 6
    assert traffic.kinds() == ["points.award", "rewards.claim", "points.deduct"]
    assert traffic.totals_by_kind() == {
        "points.award": {"succeeded": 2, "refused": 0, "failed": 0, "pending": 1},
        "rewards.claim": {"succeeded": 0, "refused": 1, "failed": 1, "pending": 0},
        "points.deduct": {"succeeded": 1, "refused": 0, "failed": 0, "pending": 0},
    }
    assert sum(traffic.by_kind()["rewards.claim"]) == 2


def test_writes_of_the_last_day_per_quarter_hour(db_session: Session, tenant_id: uuid.UUID) -> None:
    add_operation(db_session, tenant_id, at=NOW - timedelta(hours=20, minutes=1))
    add_operation(db_session, tenant_id, at=NOW - timedelta(hours=20, minutes=2))
    add_operation(db_session, tenant_id, at=NOW - timedelta(seconds=10), status="processing")
    add_operation(db_session, tenant_id, at=NOW - timedelta(hours=25))

    traffic = write_traffic(
        db_session,
        tenant_id,
        "live",
        now=NOW,
        window=timedelta(days=1),
        bucket=QUARTER,
        sync_wait=WAIT,
    )

    assert traffic.until == at(12, 45)
    assert len(traffic.bucket_starts) == 96
    by_outcome = traffic.by_outcome()
    quarter = traffic.bucket_starts.index(at(12, 15) - timedelta(hours=20))
    assert by_outcome["succeeded"][quarter] == 2
    assert by_outcome["pending"][-1] == 1
    assert traffic.total == 3


def test_the_202_share_counts_async_requests_and_waits_that_ran_out(
    db_session: Session, tenant_id: uuid.UUID
) -> None:
    add = lambda **fields: add_operation(db_session, tenant_id, **fields)  # noqa: E731
    # Answered within the wait: 200s.
    add(at=at(12, 1))
    add(at=at(12, 2), kind="rewards.claim", status="failed", http_status=409)
    add(at=at(12, 3), took=WAIT)  # finished exactly as the wait ended: still in time
    # Asked for 202 (Prefer: respond-async), whatever happened next.
    add(at=at(12, 4), async_requested=True)
    add(at=at(12, 30, 29), async_requested=True, status="queued")
    # The wait ran out: finished later than it, or not finished and the wait over.
    add(at=at(12, 5), took=WAIT + timedelta(milliseconds=1))
    add(at=at(12, 30, 20), status="queued")
    # Its request is still waiting: not answered yet either way.
    add(at=at(12, 30, 27), status="queued")
    # No request waited on it (a bulk job): in the writes, not in the share.
    add(at=at(12, 6), async_requested=None, took=timedelta(minutes=3))

    traffic = write_traffic(
        db_session,
        tenant_id,
        "live",
        now=NOW,
        window=timedelta(hours=1),
        bucket=MINUTE,
        sync_wait=WAIT,
    )

    fallback = traffic.fallback()
    assert (fallback.answered_async, fallback.answered_late) == (2, 2)
    assert fallback.answered_by_request == 7
    assert fallback.share == pytest.approx(4 / 7)
    assert traffic.total == 9
    per_minute = traffic.fallback_per_bucket()
    minute = traffic.bucket_starts.index
    assert per_minute[minute(at(12, 5))].share == 1.0
    assert per_minute[minute(at(12, 1))].share == 0.0
    assert per_minute[minute(at(12, 6))].share is None
    assert per_minute[minute(at(12, 30))].answered_by_request == 2


def test_no_writes_is_an_empty_window_and_no_share(
    db_session: Session, tenant_id: uuid.UUID
) -> None:
    traffic = write_traffic(
        db_session,
        tenant_id,
        "live",
        now=NOW,
        window=timedelta(hours=1),
        bucket=MINUTE,
        sync_wait=WAIT,
    )
    assert traffic.total == 0
    assert traffic.by_outcome()["succeeded"] == [0] * 60
    assert traffic.fallback().share is None


def add_event(
    session: Session, tenant_id: uuid.UUID, *, at: datetime, dispatched: bool = False
) -> uuid.UUID:
    event = OutboxEvent(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        env="live",
        type="points.awarded",
        payload={},
        created_at=at,
        dispatched_at=at if dispatched else None,
    )
    session.add(event)
    session.flush()
    return event.id


def test_the_outbox_backlog_counts_undispatched_events_and_ages_the_oldest(
    db_session: Session, tenant_id: uuid.UUID
) -> None:
    add_event(db_session, tenant_id, at=NOW - timedelta(seconds=90))
    add_event(db_session, tenant_id, at=NOW - timedelta(seconds=10))
    add_event(db_session, tenant_id, at=NOW - timedelta(hours=2), dispatched=True)
    add_event(db_session, create_tenant(db_session, "Other").id, at=NOW - timedelta(hours=3))

    backlog = outbox_backlog(db_session, tenant_id, "live")

    assert backlog.events == 2
    assert backlog.oldest_age(NOW) == timedelta(seconds=90)
    assert outbox_backlog(db_session, tenant_id, "test").oldest_age(NOW) is None


def add_endpoint(session: Session, tenant_id: uuid.UUID, url: str, **fields: Any) -> uuid.UUID:
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        env="live",
        url=url,
        events=["points.awarded"],
        secret="whsec_test",
        **fields,
    )
    session.add(endpoint)
    session.flush()
    return endpoint.id


def add_delivery(
    session: Session, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, **fields: Any
) -> None:
    created_at = fields.pop("created_at", NOW - timedelta(minutes=30))
    session.add(
        WebhookDelivery(
            id=uuid.uuid4(),
            endpoint_id=endpoint_id,
            event_id=add_event(session, tenant_id, at=created_at, dispatched=True),
            event_type="points.awarded",
            created_at=created_at,
            **fields,
        )
    )
    session.flush()


def test_failing_endpoints_are_those_retrying_disabled_by_the_dispatcher_or_failing(
    db_session: Session, tenant_id: uuid.UUID
) -> None:
    healthy = add_endpoint(db_session, tenant_id, "https://healthy.example/hook")
    add_delivery(db_session, tenant_id, healthy, status="succeeded", attempts=1)
    retrying = add_endpoint(
        db_session,
        tenant_id,
        "https://retrying.example/hook",
        failing_since=NOW - timedelta(minutes=20),
    )
    next_attempt = NOW + timedelta(minutes=5)
    add_delivery(
        db_session,
        tenant_id,
        retrying,
        status="pending",
        attempts=2,
        next_attempt_at=next_attempt,
        last_attempt_at=NOW - timedelta(minutes=1),
        last_response_status=503,
        last_error="HTTP 503",
    )
    add_delivery(
        db_session, tenant_id, retrying, status="pending", attempts=0, next_attempt_at=NOW
    )  # not attempted yet: not a retry
    gone = add_endpoint(
        db_session,
        tenant_id,
        "https://gone.example/hook",
        enabled=False,
        disabled_reason="gone",
    )
    add_delivery(
        db_session,
        tenant_id,
        gone,
        status="failed",
        attempts=1,
        last_attempt_at=NOW - timedelta(hours=2),
        last_response_status=410,
        last_error="HTTP 410",
        created_at=NOW - timedelta(hours=2),
    )
    add_delivery(  # failed before the window: not counted
        db_session,
        tenant_id,
        gone,
        status="failed",
        attempts=3,
        created_at=NOW - timedelta(days=2),
    )
    by_hand = add_endpoint(
        db_session,
        tenant_id,
        "https://paused.example/hook",
        enabled=False,
        disabled_reason="manual",
    )
    add_delivery(
        db_session,
        tenant_id,
        by_hand,
        status="failed",
        attempts=0,
        last_error="not sent: endpoint disabled",
    )
    other_tenant = create_tenant(db_session, "Other").id
    add_endpoint(
        db_session,
        other_tenant,
        "https://other.example/hook",
        failing_since=NOW - timedelta(hours=1),
    )

    listed = failing_endpoints(db_session, tenant_id, "live", since=NOW - timedelta(days=1))

    assert [endpoint.url for endpoint in listed] == [
        "https://gone.example/hook",
        "https://retrying.example/hook",
    ]
    gone_view, retrying_view = listed
    assert (gone_view.disabled_reason, gone_view.failed_recently, gone_view.retrying) == (
        "gone",
        1,
        0,
    )
    assert gone_view.last_response_status == 410
    assert retrying_view.id == retrying
    assert retrying_view.failing_since == NOW - timedelta(minutes=20)
    assert (retrying_view.retrying, retrying_view.next_attempt_at) == (1, next_attempt)
    assert (retrying_view.last_error, retrying_view.failed_recently) == ("HTTP 503", 0)


def add_reward(session: Session, tenant_id: uuid.UUID, name: str, **fields: Any) -> None:
    session.add(
        Reward(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            env="live",
            lookup_code=uuid.uuid4().hex[:12],
            name=name,
            type="coupon",
            **fields,
        )
    )
    session.flush()


def test_low_stock_rewards_are_active_ones_with_fewer_units_than_the_threshold(
    db_session: Session, tenant_id: uuid.UUID
) -> None:
    add = lambda name, **fields: add_reward(db_session, tenant_id, name, **fields)  # noqa: E731
    add("Two codes left", codes_loaded=3, codes_allocated=1)
    add("Five claims left", total_inventory=20, claims_count=15)
    add("Claims used up", total_inventory=12, claims_count=12, codes_loaded=5)
    add("Codes cap the inventory", total_inventory=100, codes_loaded=9, codes_allocated=0)
    add("Plenty", total_inventory=100, codes_loaded=50, codes_allocated=10)
    add("At the threshold", codes_loaded=10)
    add("Unlimited")
    add(
        "Generates its codes",
        codes_loaded=1,
        codes_allocated=1,
        config={"generate_when_exhausted": True},
    )
    add("Inactive", codes_loaded=1, is_active=False)
    add("Expired", codes_loaded=1, expires_at=NOW - timedelta(days=1))
    add("Not yet expired", codes_loaded=4, expires_at=NOW + timedelta(days=1))
    add_reward(db_session, create_tenant(db_session, "Other").id, "Other's", codes_loaded=1)

    low = low_stock_rewards(db_session, tenant_id, "live", threshold=10, now=NOW)

    assert [(reward.name, reward.available) for reward in low] == [
        ("Claims used up", 0),
        ("Two codes left", 2),
        ("Not yet expired", 4),
        ("Five claims left", 5),
        ("Codes cap the inventory", 9),
    ]
    assert low_stock_rewards(db_session, tenant_id, "live", threshold=1, now=NOW)[0].available == 0


# --- the write path records how each request wanted its answer ------------------------


def recorded_operation(session_factory: sessionmaker[Session], operation_id: str) -> Operation:
    with session_factory() as session:
        return session.execute(
            select(Operation).where(Operation.id == uuid.UUID(operation_id))
        ).scalar_one()


def test_a_write_asked_async_is_recorded_so_and_counted_in_the_202_share(
    make_app: Any, make_tenant: Any, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    tenant: TenantKeys = make_tenant()
    # Its own Redis prefix, so no worker hears of these writes (the suite's worker would
    # otherwise race the 0 s wait, and could answer 200 first); the sweeper runs them later.
    app: Flask = make_app(
        sync_wait_timeout_seconds=0.0,
        redis_key_prefix=f"{settings.redis_key_prefix}unheard:",
    )
    client = app.test_client()
    path = "/api/v1/gamify/points/award"
    body = {"participant_id": "p-1", "amount": 5}

    asked = client.post(
        path, json=body, headers={**tenant.participant(), "Prefer": "respond-async"}
    )
    # A wait of 0, and no worker told: answered 202.
    waited = client.post(path, json=body, headers=tenant.participant())

    assert asked.status_code == waited.status_code == 202
    assert recorded_operation(session_factory, asked.json["operation_id"]).async_requested is True
    assert recorded_operation(session_factory, waited.json["operation_id"]).async_requested is False
    with session_factory() as session:
        fallback = write_traffic(
            session,
            tenant.tenant_id,
            "live",
            now=datetime.now(UTC) + timedelta(seconds=1),
            window=timedelta(hours=1),
            bucket=MINUTE,
            sync_wait=timedelta(0),
        ).fallback()
    assert (fallback.answered_async, fallback.answered_late, fallback.share) == (1, 1, 1.0)
