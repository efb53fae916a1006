"""23blocks dialect, webhooks: the reference's registration, answered as a JSON:API
`webhook` resource, over the native webhook endpoints."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from api.blocks.webhooks import EVENT_NAMES
from tests.blocks_contract import MEDIA_TYPE, endpoint_example, send, with_attributes
from tests.conftest import TenantKeys

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


def test_the_engine_makes_the_signing_secret_whatever_the_caller_sends(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = register(client, tenant.admin(), events=["points.awarded"])

    secret = response.json["data"]["attributes"]["secret"]
    assert secret.startswith("whsec_")
    assert secret != REGISTER["request"]["data"]["attributes"]["secret"]


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
