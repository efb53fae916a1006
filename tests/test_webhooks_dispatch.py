"""The delivery state machine as plain functions on a rolled-back session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from celery import Task
from sqlalchemy import select
from sqlalchemy.orm import Session

import workers.webhook_tasks  # noqa: F401  (registers the dispatcher task)
from app.clock import set_clock
from app.config import Settings, SettingsError, load_settings
from app.models import OutboxEvent, WebhookDelivery, WebhookEndpoint
from app.outbox import POINTS_AWARDED, REWARD_CLAIMED, record_event
from app.tenancy import create_tenant
from app.webhooks.dispatch import (
    Attempt,
    RetryPolicy,
    claim_due_deliveries,
    fan_out_events,
    record_attempts,
)
from app.webhooks.dispatcher import send_delivery
from app.webhooks.secret_box import SecretBox
from app.webhooks.transport import SendResult
from tests.builders import add_webhook_endpoint
from tests.conftest import SUITE_SECRET_KEY
from workers.celery_app import (
    ALL_QUEUES,
    QUEUE_WEBHOOKS,
    TASK_DISPATCH_WEBHOOKS,
    create_celery,
)
from workers.webhook_tasks import RUN_BUDGET_SECONDS

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
# Other tests' endpoints are due too, their secrets sealed with the suite's key.
SUITE_BOX = SecretBox([SUITE_SECRET_KEY])
POLICY = RetryPolicy(schedule=(10.0, 60.0), disable_after_failing=timedelta(days=5))
LEASE = timedelta(seconds=15)


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[None]:
    set_clock(lambda: NOW)
    yield
    set_clock(None)


def _endpoint(
    session: Session,
    tenant_id: uuid.UUID,
    events: list[str],
    *,
    env: str = "live",
    enabled: bool = True,
    failing_since: datetime | None = None,
) -> WebhookEndpoint:
    return add_webhook_endpoint(
        session, tenant_id, env, events, enabled=enabled, failing_since=failing_since
    )


def _deliveries(session: Session, endpoint: WebhookEndpoint) -> list[WebhookDelivery]:
    session.expire_all()
    return list(
        session.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id)
            .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        ).scalars()
    )


def _event(session: Session, event_id: uuid.UUID) -> OutboxEvent:
    session.expire_all()
    return session.get_one(OutboxEvent, event_id)


def _claim_mine(session: Session, endpoint: WebhookEndpoint, now: datetime = NOW) -> list:  # type: ignore[type-arg]
    claimed = claim_due_deliveries(
        session, now, limit=1000, max_in_flight_per_endpoint=3, lease=LEASE, secret_box=SUITE_BOX
    )
    return [delivery for delivery in claimed if delivery.endpoint_id == endpoint.id]


def test_fan_out_makes_one_delivery_per_subscribed_endpoint_of_the_tenant_and_env(
    db_session: Session,
) -> None:
    tenant = create_tenant(db_session, "Acme")
    other_tenant = create_tenant(db_session, "Other")
    claims = _endpoint(db_session, tenant.id, [REWARD_CLAIMED])
    everything = _endpoint(db_session, tenant.id, [REWARD_CLAIMED, POINTS_AWARDED])
    points_only = _endpoint(db_session, tenant.id, [POINTS_AWARDED])
    test_env = _endpoint(db_session, tenant.id, [REWARD_CLAIMED], env="test")
    strangers = _endpoint(db_session, other_tenant.id, [REWARD_CLAIMED])
    paused = _endpoint(db_session, tenant.id, [REWARD_CLAIMED], enabled=False)
    event_id = record_event(db_session, tenant.id, "live", REWARD_CLAIMED, {"claim_id": "c1"})

    fanned = fan_out_events(db_session, NOW)
    assert fanned.events >= 1
    assert event_id in {d.event_id for d in _deliveries(db_session, claims)}
    for endpoint in (claims, everything):
        [delivery] = _deliveries(db_session, endpoint)
        assert (delivery.event_id, delivery.status, delivery.attempts) == (event_id, "pending", 0)
        assert delivery.next_attempt_at == NOW
    for endpoint in (points_only, test_env, strangers):
        assert _deliveries(db_session, endpoint) == []
    # A paused endpoint's events are logged as failed, ready for "redeliver since".
    [not_sent] = _deliveries(db_session, paused)
    assert (not_sent.status, not_sent.last_error) == ("failed", "not sent: endpoint disabled")
    assert _event(db_session, event_id).dispatched_at == NOW
    # The event is dispatched once: fanning out again adds nothing.
    fan_out_events(db_session, NOW)
    assert len(_deliveries(db_session, claims)) == 1


def test_an_event_no_endpoint_subscribes_to_is_stored_already_dispatched(
    db_session: Session,
) -> None:
    tenant = create_tenant(db_session, "Acme")
    points = _endpoint(db_session, tenant.id, [POINTS_AWARDED])
    _endpoint(db_session, tenant.id, [REWARD_CLAIMED], env="test")
    unheard = record_event(db_session, tenant.id, "live", REWARD_CLAIMED, {})
    awaited = record_event(db_session, tenant.id, "live", POINTS_AWARDED, {})
    assert _event(db_session, unheard).dispatched_at is not None
    assert _event(db_session, awaited).dispatched_at is None
    # An endpoint created since gets what still waits for the dispatcher, not the rest.
    late = _endpoint(db_session, tenant.id, [REWARD_CLAIMED, POINTS_AWARDED])
    fan_out_events(db_session, NOW)
    assert [d.event_id for d in _deliveries(db_session, points)] == [awaited]
    assert [d.event_id for d in _deliveries(db_session, late)] == [awaited]


def test_claim_takes_at_most_the_per_endpoint_cap_under_a_lease(db_session: Session) -> None:
    tenant = create_tenant(db_session, "Acme")
    endpoint = _endpoint(db_session, tenant.id, [POINTS_AWARDED])
    for number in range(5):
        record_event(db_session, tenant.id, "live", POINTS_AWARDED, {"n": number})
    fan_out_events(db_session, NOW)

    first = _claim_mine(db_session, endpoint)
    assert len(first) == 3  # the cap
    assert first[0].signing_secrets == (endpoint.secret,)
    assert _claim_mine(db_session, endpoint) == []  # three in flight: the cap is full
    # One answer frees one slot.
    record_attempts(db_session, [Attempt(first[0], SendResult(status=200), NOW)], POLICY, NOW)
    assert len(_claim_mine(db_session, endpoint)) == 1
    # A dispatcher that died leaves its leases to run out; then the deliveries are due again.
    after_lease = NOW + LEASE + timedelta(seconds=1)
    assert len(_claim_mine(db_session, endpoint, after_lease)) == 3


class _Recording:
    """A transport that answers 200 and remembers where it was asked to send."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def send(self, url: str, headers: dict[str, str], body: bytes) -> SendResult:
        self.urls.append(url)
        return SendResult(status=200)


def test_an_endpoint_whose_secret_cannot_be_used_fails_alone(db_session: Session) -> None:
    """A secret sealed with a key SECRET_KEY no longer lists, or a corrupt one, fails that
    endpoint's attempt (retried on schedule); the others' deliveries go out as ever."""
    tenant = create_tenant(db_session, "Acme")
    healthy = _endpoint(db_session, tenant.id, [POINTS_AWARDED])
    lost_key = _endpoint(db_session, tenant.id, [POINTS_AWARDED])
    corrupt = _endpoint(db_session, tenant.id, [POINTS_AWARDED])
    lost_key.secret = SecretBox(["a key since removed"]).seal(lost_key.secret)
    corrupt.secret = "whsec_x"
    record_event(db_session, tenant.id, "live", POINTS_AWARDED, {"n": 1})
    fan_out_events(db_session, NOW)
    claimed = {d.endpoint_id: d for d in _claim_mine_all(db_session)}
    assert claimed[lost_key.id].signing_secrets == ()
    transport = _Recording()
    results = {
        endpoint.id: send_delivery(transport, claimed[endpoint.id])  # type: ignore[arg-type]
        for endpoint in (healthy, lost_key, corrupt)
    }
    assert results[healthy.id].succeeded
    assert results[lost_key.id].error == "signing secret unavailable (SECRET_KEY)"
    assert results[corrupt.id].error == "internal error while sending"
    assert transport.urls == [healthy.url]


def _claim_mine_all(session: Session) -> list:  # type: ignore[type-arg]
    return claim_due_deliveries(
        session, NOW, limit=1000, max_in_flight_per_endpoint=3, lease=LEASE, secret_box=SUITE_BOX
    )


def test_failed_attempts_follow_the_schedule_then_fail_for_good(db_session: Session) -> None:
    tenant = create_tenant(db_session, "Acme")
    endpoint = _endpoint(db_session, tenant.id, [POINTS_AWARDED])
    record_event(db_session, tenant.id, "live", POINTS_AWARDED, {})
    fan_out_events(db_session, NOW)
    moment = NOW
    for expected_delay in (10.0, 60.0):
        [claimed] = _claim_mine(db_session, endpoint, moment)
        record_attempts(
            db_session,
            [Attempt(claimed, SendResult(status=500, body="no"), moment)],
            POLICY,
            moment,
        )
        [delivery] = _deliveries(db_session, endpoint)
        assert delivery.status == "pending"
        assert delivery.next_attempt_at is not None
        delay = (delivery.next_attempt_at - moment).total_seconds()
        assert expected_delay * 0.9 <= delay <= expected_delay * 1.1
        assert (delivery.last_response_status, delivery.last_error) == (500, "HTTP 500")
        assert delivery.leased_until is None
        assert _claim_mine(db_session, endpoint, moment) == []  # not due yet
        moment = delivery.next_attempt_at
    [claimed] = _claim_mine(db_session, endpoint, moment)
    record_attempts(
        db_session,
        [Attempt(claimed, SendResult(error="connection refused"), moment)],
        POLICY,
        moment,
    )
    [delivery] = _deliveries(db_session, endpoint)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)
    assert delivery.last_error == "connection refused"
    db_session.refresh(endpoint)
    assert endpoint.enabled
    assert endpoint.failing_since == NOW


def test_endpoint_failing_for_five_days_is_disabled_and_success_clears_the_record(
    db_session: Session,
) -> None:
    tenant = create_tenant(db_session, "Acme")
    recovering = _endpoint(
        db_session, tenant.id, [POINTS_AWARDED], failing_since=NOW - timedelta(days=6)
    )
    failing = _endpoint(
        db_session, tenant.id, [POINTS_AWARDED], failing_since=NOW - timedelta(days=5)
    )
    for _ in range(2):
        record_event(db_session, tenant.id, "live", POINTS_AWARDED, {})
    fan_out_events(db_session, NOW)
    claimed = claim_due_deliveries(
        db_session,
        NOW,
        limit=1000,
        max_in_flight_per_endpoint=3,
        lease=LEASE,
        secret_box=SUITE_BOX,
    )
    ok = [delivery for delivery in claimed if delivery.endpoint_id == recovering.id]
    broken = [delivery for delivery in claimed if delivery.endpoint_id == failing.id]
    record_attempts(
        db_session,
        [
            Attempt(ok[0], SendResult(status=200), NOW),
            Attempt(broken[0], SendResult(status=502), NOW),
        ],
        POLICY,
        NOW,
    )
    db_session.refresh(recovering)
    db_session.refresh(failing)
    assert (recovering.enabled, recovering.failing_since) == (True, None)
    assert (failing.enabled, failing.disabled_reason) == (False, "failing")
    # Nothing stays pending; each delivery says why it failed.
    statuses = {(d.status, d.last_error) for d in _deliveries(db_session, failing)}
    assert statuses == {
        ("failed", "endpoint disabled (failing continuously); last attempt: HTTP 502"),
        ("failed", "not sent: endpoint disabled (failing continuously)"),
    }


def test_gone_disables_at_once(db_session: Session) -> None:
    tenant = create_tenant(db_session, "Acme")
    endpoint = _endpoint(db_session, tenant.id, [POINTS_AWARDED])
    record_event(db_session, tenant.id, "live", POINTS_AWARDED, {})
    fan_out_events(db_session, NOW)
    [claimed] = _claim_mine(db_session, endpoint)
    record_attempts(db_session, [Attempt(claimed, SendResult(status=410), NOW)], POLICY, NOW)
    db_session.refresh(endpoint)
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "gone")
    [delivery] = _deliveries(db_session, endpoint)
    assert (delivery.status, delivery.attempts) == ("failed", 1)


def test_retry_after_replaces_the_scheduled_delay() -> None:
    throttled = SendResult(status=429, retry_after_seconds=120)
    delay = POLICY.next_delay(1, throttled)
    assert delay is not None and 120 <= delay <= 132
    server_error_with_header = SendResult(status=500, retry_after_seconds=120)
    delay = POLICY.next_delay(1, server_error_with_header)
    assert delay is not None and delay <= 11
    assert POLICY.next_delay(3, throttled) is None  # attempts are still bounded


def test_outbox_event_ids_are_unique_webhook_ids(db_session: Session) -> None:
    tenant = create_tenant(db_session, "Acme")
    event_ids = [record_event(db_session, tenant.id, "live", POINTS_AWARDED, {}) for _ in range(3)]
    stored = db_session.execute(
        select(OutboxEvent.id).where(OutboxEvent.tenant_id == tenant.id)
    ).scalars()
    assert sorted(stored) == sorted(event_ids)


def test_dispatcher_task_options_are_what_celery_reads(settings: Settings) -> None:
    celery = create_celery(settings)
    celery.finalize()
    try:
        task = celery.tasks[TASK_DISPATCH_WEBHOOKS]
        # Acked on receipt: beat starts another run; leases hand back unfinished sends.
        assert (task.acks_late, task.ignore_result) == (False, True)
        # A run past its budget only finishes its sends, each bounded by the request timeout:
        # the hard limit stops a hung run, never one finishing its last sends.
        assert task.time_limit > RUN_BUDGET_SECONDS + settings.webhook_timeout_seconds

        def probe_task() -> None:
            pass

        # Any option Celery would silently ignore shows up as an unknown class attribute.
        celery.task(name="test.webhooks.probe", shared=False)(probe_task)
        allowed = set(vars(type(celery.tasks["test.webhooks.probe"]))) | set(dir(Task))
        assert set(vars(type(task))) - allowed == set()
        beat = celery.conf.beat_schedule["dispatch-webhooks"]
        assert beat["task"] == TASK_DISPATCH_WEBHOOKS
        assert beat["schedule"] == settings.webhook_dispatch_interval_seconds <= 2
        assert beat["options"] == {
            "queue": QUEUE_WEBHOOKS,
            "expires": settings.webhook_dispatch_interval_seconds,
        }
        assert QUEUE_WEBHOOKS in ALL_QUEUES
    finally:
        celery.close()


def test_retry_schedule_setting_is_a_comma_list_of_positive_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "1, 2.5,300")
    assert load_settings().webhook_retry_schedule == (1.0, 2.5, 300.0)
    for bad in ("", "1,,2", "0,1", "-5", "soon", "inf"):
        monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", bad)
        with pytest.raises(SettingsError, match="WEBHOOK_RETRY_SCHEDULE"):
            load_settings()
    monkeypatch.delenv("WEBHOOK_RETRY_SCHEDULE")
    # Unset, the default holds to the same rule.
    default = load_settings().webhook_retry_schedule
    assert default and all(delay > 0 for delay in default)
