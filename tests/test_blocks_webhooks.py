"""23blocks dialect, webhooks: the reference's registration, answered as a JSON:API
`webhook` resource, over the native webhook endpoints; the secret it sends signs."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from api.blocks.webhooks import EVENT_NAMES
from tests.blocks_contract import MEDIA_TYPE, endpoint_example, send, with_attributes
from tests.builders import GAMIFY
from tests.conftest import TenantKeys, WorkerProcess
from tests.webhook_receiver import WebhookReceiver, verified_event

SECTION = "Webhooks"
REGISTER = endpoint_example(SECTION, "POST", "/v1/rewards/webhooks")
# The document's host would be resolved over the network: a loopback receiver instead
# (the suite allows private targets).
RECEIVER = "http://127.0.0.1:9/webhooks/rewards"
SUBSCRIBABLE_HERE = sorted(EVENT_NAMES)


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
