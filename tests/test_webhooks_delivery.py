"""Webhooks end to end: claims through a real worker to a real HTTP receiver."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.models import OutboxEvent
from app.outbox import record_event
from app.points.sweeps import sweep_lots
from tests.builders import GAMIFY, claim, create_reward
from tests.conftest import TenantKeys
from tests.webhook_receiver import (
    Reply,
    WebhookReceiver,
    create_webhook,
    free_port,
    verified_event,
    wait_for_deliveries,
)

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


def _claimed(client: FlaskClient, tenant: TenantKeys, participant_id: str = "user_42") -> Any:
    reward = create_reward(client, tenant.admin())
    response = claim(client, tenant.participant(), reward["id"], participant_id)
    assert response.status_code == 201, response.json
    return reward, response.json


def test_claim_is_delivered_signed_to_the_subscribed_endpoint(
    client: FlaskClient,
    tenant: TenantKeys,
    receiver: WebhookReceiver,
    session_factory: sessionmaker[Session],
) -> None:
    webhook = create_webhook(client, tenant.admin(), receiver.url)
    reward, claimed = _claimed(client, tenant)

    [request] = receiver.wait_for_requests(1)
    payload = verified_event(webhook["secret"], request)
    assert payload["type"] == "reward.reward_claimed"
    datetime.fromisoformat(payload["timestamp"])
    assert payload["data"] == {
        **claimed,
        "reward_id": reward["id"],
        "claimed_at": payload["data"]["claimed_at"],
        "environment": "live",
    }
    with session_factory() as session:
        event = session.execute(
            select(OutboxEvent).where(OutboxEvent.tenant_id == tenant.tenant_id)
        ).scalar_one()
    assert request.webhook_id == str(event.id)
    assert request.headers["content-type"] == "application/json"
    assert request.path == "/hooks"
    [delivery] = wait_for_deliveries(
        client, tenant.admin(), webhook["id"], lambda d: d[0]["status"] == "succeeded"
    )
    assert delivery["event_id"] == str(event.id)
    assert delivery["attempts"] == 1
    assert delivery["last_response_status"] == 200
    assert delivery["last_attempt_at"] is not None


def test_an_endpoint_subscribed_to_reward_redeemed_gets_claims_under_that_name(
    client: FlaskClient,
    tenant: TenantKeys,
    receiver: WebhookReceiver,
    session_factory: sessionmaker[Session],
) -> None:
    # Alone: the claim's event is recorded for it (not stored already dispatched).
    redeemed = create_webhook(client, tenant.admin(), receiver.url, events=["reward.redeemed"])
    reward, claimed = _claimed(client, tenant)
    [request] = receiver.wait_for_requests(1)
    payload = verified_event(redeemed["secret"], request)
    assert payload["type"] == "reward.redeemed"
    assert payload["data"] == {
        **claimed,
        "reward_id": reward["id"],
        "claimed_at": payload["data"]["claimed_at"],
        "environment": "live",
    }
    [delivery] = wait_for_deliveries(
        client, tenant.admin(), redeemed["id"], lambda d: d[0]["status"] == "succeeded"
    )
    assert delivery["event_type"] == "reward.redeemed"

    # Beside an endpoint of the native name: one event, each endpoint under its name.
    native_receiver = WebhookReceiver().start()
    try:
        native = create_webhook(client, tenant.admin(), native_receiver.url)
        response = claim(client, tenant.participant(), reward["id"], "user_43")
        assert response.status_code == 201, response.json
        [native_request] = native_receiver.wait_for_requests(1)
        second = receiver.wait_for_requests(2)[1]
    finally:
        native_receiver.stop()
    native_payload = verified_event(native["secret"], native_request)
    redeemed_payload = verified_event(redeemed["secret"], second)
    assert (native_payload["type"], redeemed_payload["type"]) == (
        "reward.reward_claimed",
        "reward.redeemed",
    )
    assert native_payload["data"] == redeemed_payload["data"]
    assert native_payload["data"]["participant_id"] == "user_43"
    assert native_request.webhook_id == second.webhook_id
    with session_factory() as session:
        types = session.execute(
            select(OutboxEvent.type).where(OutboxEvent.tenant_id == tenant.tenant_id)
        ).scalars()
        assert sorted(types) == ["reward.reward_claimed", "reward.reward_claimed"]


def test_receiver_down_at_first_gets_the_event_later_with_the_same_webhook_id(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    port = free_port()
    late_receiver = WebhookReceiver(port)
    webhook = create_webhook(client, tenant.admin(), late_receiver.url)
    _claimed(client, tenant)
    [failed_once] = wait_for_deliveries(
        client, tenant.admin(), webhook["id"], lambda d: bool(d) and d[0]["attempts"] >= 1
    )
    assert failed_once["status"] == "pending"
    assert "connection" in failed_once["last_error"]
    late_receiver.start()
    try:
        [request] = late_receiver.wait_for_requests(1)
        assert request.webhook_id == failed_once["event_id"]
        verified_event(webhook["secret"], request)
        [delivered] = wait_for_deliveries(
            client, tenant.admin(), webhook["id"], lambda d: d[0]["status"] == "succeeded"
        )
        assert delivered["attempts"] >= 2
        assert delivered["last_error"] is None
    finally:
        late_receiver.stop()


def test_receiver_failing_forever_is_marked_failed_then_redelivered_by_an_admin(
    client: FlaskClient, tenant: TenantKeys, receiver: WebhookReceiver
) -> None:
    receiver.responder = lambda request: Reply(500, b"x" * 5000)
    webhook = create_webhook(client, tenant.admin(), receiver.url)
    _claimed(client, tenant)
    # WEBHOOK_RETRY_SCHEDULE=1,1,2 in the tests: four attempts, then failed.
    [failed] = wait_for_deliveries(
        client, tenant.admin(), webhook["id"], lambda d: bool(d) and d[0]["status"] == "failed"
    )
    assert failed["attempts"] == 4
    assert failed["last_response_status"] == 500
    assert failed["last_error"] == "HTTP 500"
    assert len(failed["last_response_body"]) == 2048  # truncated
    assert failed["next_attempt_at"] is None
    assert len(receiver.requests) == 4
    assert receiver.webhook_ids() == {failed["event_id"]}

    receiver.responder = lambda request: Reply(204, b"")
    response = client.post(
        f"{GAMIFY}/admin/webhooks/{webhook['id']}/deliveries/{failed['id']}/redeliver",
        headers=tenant.admin(),
    )
    assert response.status_code == 202, response.json
    assert response.json["status"] == "pending"
    receiver.wait_for_requests(5)
    assert receiver.requests[-1].webhook_id == failed["event_id"]
    [delivered] = wait_for_deliveries(
        client, tenant.admin(), webhook["id"], lambda d: d[0]["status"] == "succeeded"
    )
    assert (delivered["attempts"], delivered["last_response_status"]) == (1, 204)


def test_claim_that_fails_validation_emits_nothing(
    client: FlaskClient,
    tenant: TenantKeys,
    receiver: WebhookReceiver,
    session_factory: sessionmaker[Session],
) -> None:
    webhook = create_webhook(client, tenant.admin(), receiver.url)
    reward = create_reward(client, tenant.admin(), max_claims_per_user=1)
    assert claim(client, tenant.participant(), reward["id"], "user_42").status_code == 201
    rejected = claim(client, tenant.participant(), reward["id"], "user_42")
    assert rejected.json["code"] == "max_claims_reached"
    # The outbox is the proof: the rejected claim's transaction rolled its event back.
    # The receiver then sees the one claim and a test event sent after the rejected claim.
    response = client.post(f"{GAMIFY}/admin/webhooks/{webhook['id']}/test", headers=tenant.admin())
    assert response.status_code == 202
    receiver.wait_for_requests(2)
    types = [json.loads(request.body)["type"] for request in receiver.requests]
    assert sorted(types) == ["reward.reward_claimed", "webhook.test"]
    with session_factory() as session:
        events = session.execute(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.tenant_id == tenant.tenant_id, OutboxEvent.type != "webhook.test")
        ).scalar_one()
    assert events == 1


def test_gone_receiver_disables_the_endpoint_until_an_admin_re_enables_it(
    client: FlaskClient, tenant: TenantKeys, receiver: WebhookReceiver
) -> None:
    receiver.responder = lambda request: Reply(410, b"gone")
    webhook = create_webhook(client, tenant.admin(), receiver.url)
    started = datetime.now(UTC) - timedelta(seconds=1)
    _claimed(client, tenant)
    [gone] = wait_for_deliveries(
        client, tenant.admin(), webhook["id"], lambda d: bool(d) and d[0]["status"] == "failed"
    )
    assert (gone["attempts"], gone["last_response_status"]) == (1, 410)
    endpoint = client.get(f"{GAMIFY}/admin/webhooks/{webhook['id']}", headers=tenant.admin()).json
    assert (endpoint["enabled"], endpoint["disabled_reason"]) == (False, "gone")

    # Events while disabled are logged as failed, not sent, so nothing is lost for good.
    _claimed(client, tenant, "user_43")
    deliveries = wait_for_deliveries(client, tenant.admin(), webhook["id"], lambda d: len(d) == 2)
    assert deliveries[0]["last_error"] == "not sent: endpoint disabled (it answered 410 Gone)"
    assert len(receiver.requests) == 1
    redeliver = client.post(
        f"{GAMIFY}/admin/webhooks/{webhook['id']}/redeliver",
        json={"since": started.isoformat()},
        headers=tenant.admin(),
    )
    assert redeliver.status_code == 409
    assert redeliver.json["code"] == "webhook_disabled"

    receiver.responder = lambda request: Reply(200)
    enabled = client.patch(
        f"{GAMIFY}/admin/webhooks/{webhook['id']}", json={"enabled": True}, headers=tenant.admin()
    )
    assert (enabled.json["enabled"], enabled.json["disabled_reason"]) == (True, None)
    redeliver = client.post(
        f"{GAMIFY}/admin/webhooks/{webhook['id']}/redeliver",
        json={"since": started.isoformat()},
        headers=tenant.admin(),
    )
    assert (redeliver.status_code, redeliver.json) == (202, {"redelivered": 2})
    receiver.wait_for(lambda requests: len({r.webhook_id for r in requests}) == 2)
    wait_for_deliveries(
        client,
        tenant.admin(),
        webhook["id"],
        lambda d: [delivery["status"] for delivery in d] == ["succeeded", "succeeded"],
    )


def test_retry_after_of_a_503_is_honoured(
    client: FlaskClient, tenant: TenantKeys, receiver: WebhookReceiver
) -> None:
    receiver.responder = lambda request: (
        Reply(503, headers={"Retry-After": "3"}) if len(receiver.requests) == 1 else Reply(200)
    )
    create_webhook(client, tenant.admin(), receiver.url)
    _claimed(client, tenant)
    first, second = receiver.wait_for_requests(2)
    # The schedule would retry after ~1 s; the receiver asked for 3.
    assert second.received_at - first.received_at >= 2.9
    assert second.webhook_id == first.webhook_id


def test_rotated_secret_signs_alongside_the_old_one_during_the_overlap(
    client: FlaskClient, tenant: TenantKeys, receiver: WebhookReceiver
) -> None:
    webhook = create_webhook(client, tenant.admin(), receiver.url)
    rotated = client.post(
        f"{GAMIFY}/admin/webhooks/{webhook['id']}/rotate-secret", headers=tenant.admin()
    )
    assert rotated.status_code == 200
    new_secret = rotated.json["secret"]
    assert new_secret.startswith("whsec_") and new_secret != webhook["secret"]
    response = client.post(f"{GAMIFY}/admin/webhooks/{webhook['id']}/test", headers=tenant.admin())
    [request] = receiver.wait_for_requests(1)
    assert request.webhook_id == response.json["event_id"]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (webhook["secret"], new_secret):
        assert verified_event(secret, request)["type"] == "webhook.test"


def test_a_callers_own_secrets_sign_deliveries_the_receiver_verifies_with_them(
    client: FlaskClient, tenant: TenantKeys, receiver: WebhookReceiver
) -> None:
    # Not base64 after whsec_: the key is the string's own bytes (a raw secret).
    own = "whsec_your_secret_key"
    webhook = create_webhook(client, tenant.admin(), receiver.url, secret=own)
    client.post(f"{GAMIFY}/admin/webhooks/{webhook['id']}/test", headers=tenant.admin())
    [first] = receiver.wait_for_requests(1)
    assert verified_event(own.encode(), first)["type"] == "webhook.test"
    # whsec_ and base64: the decoded bytes, as a Standard Webhooks library reads the string.
    next_own = "whsec_" + base64.b64encode(b"caller chosen key, 32 bytes long").decode()
    rotated = client.post(
        f"{GAMIFY}/admin/webhooks/{webhook['id']}/rotate-secret",
        json={"secret": next_own},
        headers=tenant.admin(),
    )
    assert rotated.json["secret"] == next_own
    client.post(f"{GAMIFY}/admin/webhooks/{webhook['id']}/test", headers=tenant.admin())
    [_, second] = receiver.wait_for_requests(2)
    assert verified_event(next_own, second)["type"] == "webhook.test"
    assert verified_event(own.encode(), second)["type"] == "webhook.test"  # the overlap


def test_slow_receiver_is_capped_and_does_not_hold_up_another_endpoint(
    client: FlaskClient,
    tenant: TenantKeys,
    receiver: WebhookReceiver,
    session_factory: sessionmaker[Session],
) -> None:
    slow = WebhookReceiver().start()
    answer = threading.Event()
    # The slow one holds each request until told, but for less than the sender's timeout
    # (WEBHOOK_TIMEOUT_SECONDS, 3 s here): a request the sender gave up on would be retried
    # while the receiver still holds it, and the receiver would see more than the sender
    # has in flight.
    slow.responder = lambda request: (answer.wait(2.5), Reply(200))[1]
    try:
        create_webhook(client, tenant.admin(), slow.url, events=["points.awarded"])
        create_webhook(client, tenant.admin(), receiver.url, events=["points.awarded"])
        events = 24
        with session_factory.begin() as session:
            for number in range(events):
                record_event(session, tenant.tenant_id, "live", "points.awarded", {"n": number})
        # The fast endpoint gets everything while the slow one holds its requests, and the
        # slow one never has more than WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT (16) in flight.
        receiver.wait_for_requests(events, timeout=10)
        slow.wait_for_requests(16, timeout=10)
        answer.set()
        slow.wait_for_requests(events, timeout=10)
        assert slow.max_in_flight == 16
        assert slow.webhook_ids() == receiver.webhook_ids()
    finally:
        answer.set()
        slow.stop()


def test_the_lifecycle_events_are_delivered_signed_like_the_others(
    client: FlaskClient,
    tenant: TenantKeys,
    receiver: WebhookReceiver,
    session_factory: sessionmaker[Session],
) -> None:
    """points.released and points.expired (the lot sweeps) and tier.downgraded (a tier set
    by hand) reach the endpoints that subscribe to them."""
    lifecycle = ["points.released", "points.expired", "tier.downgraded"]
    webhook = create_webhook(client, tenant.admin(), receiver.url, lifecycle)
    for code, level in (("silver", 1), ("gold", 2)):
        tier = {"code": code, "name": code.title(), "level": level, "points_required": 100 * level}
        assert (
            client.post(f"{GAMIFY}/admin/tiers", json=tier, headers=tenant.admin()).status_code
            == 201
        )
    body = {"participant_id": "lia", "amount": 250, "pending_days": 1, "expires_in_days": 2}
    awarded = client.post(f"{GAMIFY}/points/award", json=body, headers=tenant.participant())
    assert awarded.status_code == 200, awarded.json

    sweep_lots(session_factory, now=lambda: datetime.now(UTC) + timedelta(days=1, hours=1))
    sweep_lots(session_factory, now=lambda: datetime.now(UTC) + timedelta(days=3))
    placed = client.patch(
        f"{GAMIFY}/admin/participants/lia/tier",
        json={"tier_code": "silver", "reason": "review"},
        headers=tenant.admin(),
    )
    assert placed.status_code == 200, placed.json

    requests = receiver.wait_for_requests(3)
    delivered = [verified_event(webhook["secret"], request) for request in requests]
    by_type = {payload["type"]: payload["data"] for payload in delivered}
    assert set(by_type) == set(lifecycle)
    assert (by_type["points.released"]["amount"], by_type["points.released"]["new_balance"]) == (
        250,
        250,
    )
    assert (by_type["points.expired"]["amount"], by_type["points.expired"]["new_balance"]) == (
        250,
        0,
    )
    assert by_type["tier.downgraded"]["previous_tier"] == {
        "code": "gold",
        "name": "Gold",
        "level": 2,
    }
    assert by_type["tier.downgraded"]["new_tier"]["code"] == "silver"


def test_the_engagement_events_are_delivered_signed_like_the_others(
    client: FlaskClient,
    tenant: TenantKeys,
    receiver: WebhookReceiver,
    session_factory: sessionmaker[Session],
) -> None:
    """One purchase earns a badge, reaches a streak milestone, completes a challenge and
    enters a leaderboard's top; an earlier run's gap breaks a streak: each event reaches
    the endpoint that subscribes to it."""
    engagement = [
        "badge.awarded",
        "streak.milestone",
        "streak.broken",
        "challenge.completed",
        "leaderboard.rank_changed",
    ]
    webhook = create_webhook(client, tenant.admin(), receiver.url, engagement)
    admin = tenant.admin()
    for path, body in (
        (
            "badges",
            {"name": "First", "criteria": {"type": "action_count", "action": "buy", "count": 1}},
        ),
        (
            "streaks",
            {
                "streak_type": "daily-buy",
                "name": "Daily",
                "action": "buy",
                "milestones": [{"days": 1, "points": 5}],
            },
        ),
        ("challenges", {"name": "One buy", "type": "action_count", "action": "buy", "target": 1}),
        ("leaderboards", {"name": "Buyers", "metric": "action_count", "action": "buy"}),
    ):
        created = client.post(f"{GAMIFY}/admin/{path}", json=body, headers=admin)
        assert created.status_code == 201, created.json
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    for occurred_at in (two_days_ago, None):
        body = {"participant_id": "max", "action": "buy"}
        if occurred_at:
            body["occurred_at"] = occurred_at
        response = client.post(f"{GAMIFY}/actions", json=body, headers=tenant.participant())
        assert response.status_code == 201, response.json

    requests = receiver.wait_for_requests(6)
    delivered = [verified_event(webhook["secret"], request) for request in requests]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for payload in delivered:
        by_type.setdefault(payload["type"], []).append(payload["data"])
    assert set(by_type) == set(engagement)
    assert by_type["streak.broken"] == [
        {"participant_id": "max", "streak_type": "daily-buy", "count": 1, "run": 1}
    ]
    assert [event["days"] for event in by_type["streak.milestone"]] == [1, 1]
    assert by_type["badge.awarded"][0]["name"] == "First"
    assert by_type["challenge.completed"][0]["name"] == "One buy"
    assert by_type["leaderboard.rank_changed"][0]["change"] == "entered"
