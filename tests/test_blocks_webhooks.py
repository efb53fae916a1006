"""23blocks dialect, webhooks: the reference's registration, answered as a JSON:API
`webhook` resource, over the native webhook endpoints; the secret it sends signs."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient
from standardwebhooks import Webhook

from api.blocks.webhooks import EVENT_NAMES
from tests.blocks_contract import (
    MEDIA_TYPE,
    assert_conforms,
    endpoint_example,
    object_example,
    send,
    with_attributes,
)
from tests.builders import GAMIFY
from tests.conftest import TenantKeys, WorkerProcess
from tests.test_blocks_tiers import award, create_ladder
from tests.webhook_receiver import (
    ReceivedRequest,
    WebhookReceiver,
    create_webhook,
    verified_event,
)

SECTION = "Webhooks"
REGISTER = endpoint_example(SECTION, "POST", "/v1/rewards/webhooks")
# The document's host would be resolved over the network: a loopback receiver instead
# (the suite allows private targets).
RECEIVER = "http://127.0.0.1:9/webhooks/rewards"
SUBSCRIBABLE_HERE = sorted(EVENT_NAMES)
PAYLOAD = object_example(SECTION, "Webhook Payload")


def register(client: FlaskClient, headers: dict[str, str], **changes: object) -> Any:
    body = with_attributes(REGISTER["request"], url=RECEIVER, **changes)
    return send(client, "POST", "/v1/rewards/webhooks", headers, body)


def test_the_documented_registration_makes_a_native_endpoint_answered_as_a_webhook(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = register(client, tenant.admin(), events=["tier.upgraded", "badge.awarded"])

    assert response.status_code == 201, response.json
    assert response.mimetype == MEDIA_TYPE
    data = response.json["data"]
    assert data["type"] == "webhook"
    attributes = data["attributes"]
    assert attributes["url"] == RECEIVER
    assert attributes["events"] == ["tier.upgraded", "badge.awarded"]
    assert attributes["active"] is True
    native = client.get(f"/api/v1/gamify/admin/webhooks/{data['id']}", headers=tenant.admin())
    assert native.status_code == 200
    assert native.json["events"] == ["tier.upgraded", "badge.awarded"]


def test_the_documented_secret_signs_the_deliveries_and_is_answered_back(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    receiver = WebhookReceiver().start()
    try:
        body = with_attributes(REGISTER["request"], url=receiver.url, events=["points.awarded"])
        response = send(client, "POST", "/v1/rewards/webhooks", tenant.admin(), body)
        assert response.status_code == 201, response.json
        documented = REGISTER["request"]["data"]["attributes"]["secret"]
        assert response.json["data"]["attributes"]["secret"] == documented
        test = client.post(
            f"{GAMIFY}/admin/webhooks/{response.json['data']['id']}/test",
            headers=tenant.admin(),
        )
        assert test.status_code == 202
        [request] = receiver.wait_for_requests(1)
        # Not base64 after whsec_: the key is the secret's own bytes (README, Webhooks).
        assert verified_event(documented.encode(), request)["type"] == "webhook.test"
    finally:
        receiver.stop()


def test_without_a_secret_the_engine_makes_one(client: FlaskClient, tenant: TenantKeys) -> None:
    body = REGISTER["request"]
    attributes = {
        name: value for name, value in body["data"]["attributes"].items() if name != "secret"
    }
    attributes |= {"url": RECEIVER, "events": ["points.awarded"]}
    response = send(
        client,
        "POST",
        "/v1/rewards/webhooks",
        tenant.admin(),
        {"data": {"type": "webhook", "attributes": attributes}},
    )

    assert response.status_code == 201, response.json
    assert response.json["data"]["attributes"]["secret"].startswith("whsec_")


def test_a_secret_breaking_the_rule_is_a_422_pointing_at_it(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = register(client, tenant.admin(), events=["points.awarded"], secret="too short")

    assert response.status_code == 422
    assert response.json["errors"][0]["source"] == {"pointer": "/data/attributes/secret"}


def test_every_documented_event_the_engine_publishes_can_be_subscribed(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    for start in range(0, len(SUBSCRIBABLE_HERE), 10):
        events = SUBSCRIBABLE_HERE[start : start + 10]
        response = register(client, tenant.admin(), events=events)
        assert response.status_code == 201, response.json
        assert response.json["data"]["attributes"]["events"] == events


def test_an_unknown_event_is_a_422_pointing_at_the_events(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = register(client, tenant.admin(), events=["points.awarded", "no.such_event"])

    assert response.status_code == 422
    assert response.json["errors"][0]["source"] == {"pointer": "/data/attributes/events"}


def test_a_participant_key_cannot_register_a_webhook(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = register(client, tenant.participant(), events=["points.awarded"])

    assert response.status_code == 403


def test_the_dialects_openapi_document_lists_the_commerce_endpoints(client: FlaskClient) -> None:
    spec = client.get("/v1/rewards/openapi.json").json

    documented = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
    }
    assert {
        ("POST", "/v1/rewards/coupons"),
        ("GET", "/v1/rewards/coupons"),
        ("GET", "/v1/rewards/coupons/{id_or_code}"),
        ("POST", "/v1/rewards/coupons/validate"),
        ("POST", "/v1/rewards/coupons/redeem"),
        ("POST", "/v1/rewards/coupons/generate"),
        ("GET", "/v1/rewards/coupons/download/{campaign_id}"),
        ("GET", "/v1/rewards/referrals/code/{user_id}"),
        ("POST", "/v1/rewards/referrals/track"),
        ("POST", "/v1/rewards/referrals/complete"),
        ("GET", "/v1/rewards/referrals/user/{user_id}"),
        ("POST", "/v1/rewards/referrals/config"),
        ("GET", "/v1/rewards/catalog"),
        ("POST", "/v1/rewards/catalog"),
        ("POST", "/v1/rewards/catalog/redeem"),
        ("GET", "/v1/rewards/catalog/redemptions/{user_id}"),
        ("POST", "/v1/rewards/webhooks"),
    } <= documented


def _into_gold(request: ReceivedRequest) -> bool:
    data = json.loads(request.body)["data"]
    return (data.get("new_tier") or {}).get("code") == "gold"


def test_an_endpoint_registered_here_receives_the_documented_payload_signed_with_its_secret(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    receiver = WebhookReceiver().start()
    try:
        registered = send(
            client,
            "POST",
            "/v1/rewards/webhooks",
            tenant.admin(),
            with_attributes(REGISTER["request"], url=receiver.url, events=["tier.upgraded"]),
        )
        assert registered.status_code == 201, registered.json
        secret = registered.json["data"]["attributes"]["secret"]
        native = create_webhook(client, tenant.admin(), f"{receiver.url}/native", ["tier.upgraded"])
        create_ladder(client, tenant)
        award(client, tenant, "user-123", 1000)  # into silver
        award(client, tenant, "user-123", 4250)  # silver into gold

        requests = receiver.wait_for(lambda seen: sum(map(_into_gold, seen)) == 2)
        [blocks] = [r for r in requests if _into_gold(r) and r.path == "/hooks"]
        [standard] = [r for r in requests if _into_gold(r) and r.path == "/hooks/native"]

        # The documented secret is not base64 after whsec_: its key is its own bytes.
        event = dict(Webhook(secret.encode()).verify(blocks.body, blocks.headers))
        assert_conforms(event, PAYLOAD)
        assert event["id"] == blocks.webhook_id == standard.webhook_id
        assert event["type"] == "tier.upgraded"
        assert event["created_at"].endswith("Z")
        data = event["data"]
        assert data["user_id"] == "user-123"
        assert "participant_id" not in data
        assert (data["previous_tier"]["id"], data["previous_tier"]["level"]) == ("silver", 1)
        assert data["new_tier"] == {"id": "gold", "name": "Gold", "code": "gold", "level": 2}
        assert data["qualifying_points"] >= 5000

        native_event = verified_event(native["secret"], standard)
        assert set(native_event) == {"type", "timestamp", "data"}
        assert native_event["data"]["participant_id"] == "user-123"
        assert native_event["data"]["new_tier"] == {"code": "gold", "name": "Gold", "level": 2}
    finally:
        receiver.stop()


def test_the_native_admin_api_shows_the_blocks_payload_format_and_can_switch_it(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    webhook_id = register(client, tenant.admin(), events=["points.awarded"]).json["data"]["id"]
    url = f"{GAMIFY}/admin/webhooks/{webhook_id}"

    assert client.get(url, headers=tenant.admin()).json["payload_format"] == "blocks"
    switched = client.patch(url, json={"payload_format": "standard"}, headers=tenant.admin())
    assert switched.status_code == 200, switched.json
    assert switched.json["payload_format"] == "standard"
    assert client.get(url, headers=tenant.admin()).json["payload_format"] == "standard"
