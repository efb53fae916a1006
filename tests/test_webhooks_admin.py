"""The webhook admin API: registration, scoping, URL checks, secrets, the delivery log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.webhooks.schemas import EventType
from app.webhooks.endpoints import SUBSCRIBABLE_EVENTS
from tests.builders import GAMIFY
from tests.conftest import TenantKeys
from tests.webhook_receiver import create_webhook

WEBHOOKS = f"{GAMIFY}/admin/webhooks"
RECEIVER = "http://127.0.0.1:9/hooks"  # never called: nothing here dispatches


def test_create_returns_the_signing_secret_once(client: FlaskClient, tenant: TenantKeys) -> None:
    created = create_webhook(
        client,
        tenant.admin(),
        RECEIVER,
        events=["reward.reward_claimed", "points.awarded", "points.awarded"],
        description="fulfilment",
    )
    secret = created.pop("secret")
    assert secret.startswith("whsec_")
    uuid.UUID(created["id"])
    assert created == {
        "id": created["id"],
        "url": RECEIVER,
        "description": "fulfilment",
        "events": ["reward.reward_claimed", "points.awarded"],
        "enabled": True,
        "payload_format": "standard",
        "disabled_reason": None,
        "failing_since": None,
        "previous_secret_expires_at": None,
        "created_at": created["created_at"],
        "updated_at": None,
    }
    fetched = client.get(f"{WEBHOOKS}/{created['id']}", headers=tenant.admin())
    assert fetched.json == created
    listed = client.get(WEBHOOKS, headers=tenant.admin())
    assert listed.json == {"items": [created], "total": 1, "page": 1, "page_size": 50}
    for response in (fetched, listed):
        assert "whsec_" not in response.get_data(as_text=True)


def test_update_changes_only_the_fields_sent(client: FlaskClient, tenant: TenantKeys) -> None:
    created = create_webhook(client, tenant.admin(), RECEIVER)
    response = client.patch(
        f"{WEBHOOKS}/{created['id']}",
        json={"url": "http://127.0.0.1:10/other", "events": ["tier.upgraded"], "enabled": False},
        headers=tenant.admin(),
    )
    assert response.status_code == 200, response.json
    assert response.json["url"] == "http://127.0.0.1:10/other"
    assert response.json["events"] == ["tier.upgraded"]
    assert (response.json["enabled"], response.json["disabled_reason"]) == (False, "manual")
    assert response.json["description"] is None
    assert response.json["updated_at"] is not None
    enabled = client.patch(
        f"{WEBHOOKS}/{created['id']}", json={"enabled": True}, headers=tenant.admin()
    )
    assert (enabled.json["enabled"], enabled.json["disabled_reason"]) == (True, None)
    assert enabled.json["events"] == ["tier.upgraded"]
    null_url = client.patch(
        f"{WEBHOOKS}/{created['id']}", json={"url": None}, headers=tenant.admin()
    )
    assert null_url.status_code == 422


def test_the_payload_format_is_set_on_create_and_switched_by_update(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    created = create_webhook(client, tenant.admin(), RECEIVER, payload_format="blocks")
    assert created["payload_format"] == "blocks"
    url = f"{WEBHOOKS}/{created['id']}"

    switched = client.patch(url, json={"payload_format": "standard"}, headers=tenant.admin())
    assert (switched.status_code, switched.json["payload_format"]) == (200, "standard")
    for refused in ("soap", None):
        response = client.patch(url, json={"payload_format": refused}, headers=tenant.admin())
        assert response.status_code == 422, response.json
    assert client.get(url, headers=tenant.admin()).json["payload_format"] == "standard"


def test_delete_removes_the_endpoint(client: FlaskClient, tenant: TenantKeys) -> None:
    created = create_webhook(client, tenant.admin(), RECEIVER)
    assert client.delete(f"{WEBHOOKS}/{created['id']}", headers=tenant.admin()).status_code == 200
    missing = client.get(f"{WEBHOOKS}/{created['id']}", headers=tenant.admin())
    assert (missing.status_code, missing.json["code"]) == (404, "webhook_not_found")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "", None),
        ("PATCH", "", {"enabled": False}),
        ("DELETE", "", None),
        ("POST", "/rotate-secret", None),
        ("GET", "/deliveries", None),
        ("POST", "/test", None),
        ("POST", "/redeliver", {"since": "2026-01-01T00:00:00Z"}),
        ("POST", "/deliveries/3b9f5a0e-8c1d-4f7e-9a2b-6c4d8e1f0a7b/redeliver", None),
    ],
)
def test_another_tenants_or_environments_endpoint_is_not_found(
    client: FlaskClient,
    tenant: TenantKeys,
    make_tenant: Any,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    created = create_webhook(client, tenant.admin(), RECEIVER)
    other = make_tenant("Other")
    test_env_admin = {"X-API-Key": tenant.test_admin_key}
    for headers in (other.admin(), test_env_admin):
        response = client.open(
            f"{WEBHOOKS}/{created['id']}{path}", method=method, json=body, headers=headers
        )
        assert (response.status_code, response.json["code"]) == (404, "webhook_not_found")
    assert client.get(WEBHOOKS, headers=other.admin()).json["total"] == 0
    still_there = client.get(f"{WEBHOOKS}/{created['id']}", headers=tenant.admin())
    assert still_there.json["enabled"] is True


def test_webhook_admin_needs_an_admin_key(client: FlaskClient, tenant: TenantKeys) -> None:
    response = client.post(
        WEBHOOKS, json={"url": RECEIVER, "events": ["points.awarded"]}, headers=tenant.participant()
    )
    assert response.status_code == 403


def test_unknown_event_type_or_empty_list_is_a_validation_error(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    for events in (["reward.unknown"], []):
        response = client.post(
            WEBHOOKS, json={"url": RECEIVER, "events": events}, headers=tenant.admin()
        )
        assert (response.status_code, response.json["code"]) == (422, "validation_error")


def test_reward_redeemed_and_reward_reward_claimed_are_one_event_subscribed_by_one_name(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    both = ["reward.redeemed", "points.awarded", "reward.reward_claimed"]
    response = client.post(WEBHOOKS, json={"url": RECEIVER, "events": both}, headers=tenant.admin())
    assert (response.status_code, response.json["code"]) == (422, "validation_error")
    assert response.json["errors"][0]["loc"] == ["body", "events"]
    assert "subscribe to one of them" in response.json["errors"][0]["msg"]
    created = client.post(
        WEBHOOKS, json={"url": RECEIVER, "events": ["reward.redeemed"]}, headers=tenant.admin()
    )
    assert created.status_code == 201, created.json
    assert created.json["events"] == ["reward.redeemed"]
    url = f"{WEBHOOKS}/{created.json['id']}"
    refused = client.patch(url, json={"events": both}, headers=tenant.admin())
    assert (refused.status_code, refused.json["code"]) == (422, "validation_error")
    assert client.get(url, headers=tenant.admin()).json["events"] == ["reward.redeemed"]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/hooks", "a loopback address"),
        ("http://localhost/hooks", "a loopback address"),
        ("http://[::1]/hooks", "a loopback address"),
        ("http://169.254.169.254/latest/meta-data", "a cloud metadata address"),
        ("http://[::ffff:169.254.169.254]/", "a cloud metadata address"),
        ("http://10.1.2.3/hooks", "a private address"),
        ("https://192.168.0.10/hooks", "a private address"),
        ("http://0.0.0.0:8000/", "an unspecified address"),
    ],
)
def test_private_targets_are_refused_by_default(
    client: FlaskClient, make_app: Any, tenant: TenantKeys, url: str, reason: str
) -> None:
    strict: Flask = make_app(webhook_allow_private=False)
    response = strict.test_client().post(
        WEBHOOKS, json={"url": url, "events": ["points.awarded"]}, headers=tenant.admin()
    )
    assert response.status_code == 422
    assert response.json["code"] == "invalid_webhook_url"
    assert reason in response.json["detail"]
    assert "WEBHOOK_ALLOW_PRIVATE" in response.json["detail"]
    # The same check guards updates.
    created = create_webhook(client, tenant.admin(), RECEIVER)
    update = strict.test_client().patch(
        f"{WEBHOOKS}/{created['id']}", json={"url": url}, headers=tenant.admin()
    )
    assert (update.status_code, update.json["code"]) == (422, "invalid_webhook_url")


def test_allow_private_admits_loopback_but_never_cloud_metadata(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    # The tests run with WEBHOOK_ALLOW_PRIVATE=true.
    assert create_webhook(client, tenant.admin(), "http://127.0.0.1:8080/x")["enabled"]
    response = client.post(
        WEBHOOKS,
        json={"url": "http://169.254.169.254/", "events": ["points.awarded"]},
        headers=tenant.admin(),
    )
    assert response.status_code == 422
    assert "metadata" in response.json["detail"]


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("ftp://127.0.0.1/hooks", "scheme must be http or https"),
        ("file:///etc/passwd", "scheme must be http or https"),
        ("http://user:pass@127.0.0.1/hooks", "must not contain credentials"),
        ("http:///hooks", "must name a host"),
        ("http://127.0.0.1:99999/", "not valid"),
        ("http://127.0.0.1/a b", "spaces or control characters"),
    ],
)
def test_malformed_urls_are_refused_with_a_clear_reason(
    client: FlaskClient, tenant: TenantKeys, url: str, detail: str
) -> None:
    response = client.post(
        WEBHOOKS, json={"url": url, "events": ["points.awarded"]}, headers=tenant.admin()
    )
    assert (response.status_code, response.json["code"]) == (422, "invalid_webhook_url")
    assert detail in response.json["detail"]
    assert "pass" not in response.json["detail"]


def test_rotation_returns_the_new_secret_and_the_overlap_end(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    created = create_webhook(client, tenant.admin(), RECEIVER)
    rotated = client.post(f"{WEBHOOKS}/{created['id']}/rotate-secret", headers=tenant.admin())
    assert rotated.status_code == 200
    assert rotated.json["secret"].startswith("whsec_")
    assert rotated.json["secret"] != created["secret"]
    overlap_end = datetime.fromisoformat(rotated.json["previous_secret_expires_at"])
    expected = datetime.now(UTC) + timedelta(hours=24)
    assert abs((overlap_end - expected).total_seconds()) < 60
    fetched = client.get(f"{WEBHOOKS}/{created['id']}", headers=tenant.admin())
    assert fetched.json["previous_secret_expires_at"] == rotated.json["previous_secret_expires_at"]
    assert "whsec_" not in fetched.get_data(as_text=True)


def test_a_caller_given_secret_is_kept_and_answered_once(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    created = create_webhook(client, tenant.admin(), RECEIVER, secret="whsec_your_secret_key")
    assert created["secret"] == "whsec_your_secret_key"
    fetched = client.get(f"{WEBHOOKS}/{created['id']}", headers=tenant.admin())
    assert "whsec_your_secret_key" not in fetched.get_data(as_text=True)
    rotated = client.post(
        f"{WEBHOOKS}/{created['id']}/rotate-secret",
        json={"secret": "another-own-secret-0001"},
        headers=tenant.admin(),
    )
    assert rotated.status_code == 200, rotated.json
    assert rotated.json["secret"] == "another-own-secret-0001"


def test_a_secret_breaking_the_rule_is_a_validation_error_naming_it(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    created = create_webhook(client, tenant.admin(), RECEIVER)
    for secret in ("too-short", "has blanks in the secret", "whsec_AAAAAAAAAAAAAAAA"):
        response = client.post(
            WEBHOOKS,
            json={"url": RECEIVER, "events": ["points.awarded"], "secret": secret},
            headers=tenant.admin(),
        )
        rotated = client.post(
            f"{WEBHOOKS}/{created['id']}/rotate-secret",
            json={"secret": secret},
            headers=tenant.admin(),
        )
        for refused in (response, rotated):
            assert (refused.status_code, refused.json["code"]) == (422, "validation_error")
            assert "secret" in str(refused.json), refused.json
    listed = client.get(WEBHOOKS, headers=tenant.admin())
    assert listed.json["total"] == 1


def test_delivery_log_is_empty_and_paginated_for_a_new_endpoint(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    created = create_webhook(client, tenant.admin(), RECEIVER)
    response = client.get(
        f"{WEBHOOKS}/{created['id']}/deliveries?status=failed&page=2&page_size=10",
        headers=tenant.admin(),
    )
    assert response.json == {"items": [], "total": 0, "page": 2, "page_size": 10}
    bad = client.get(f"{WEBHOOKS}/{created['id']}/deliveries?status=nope", headers=tenant.admin())
    assert bad.status_code == 422
    missing = client.post(
        f"{WEBHOOKS}/{created['id']}/deliveries/{uuid.uuid4()}/redeliver", headers=tenant.admin()
    )
    assert (missing.status_code, missing.json["code"]) == (404, "delivery_not_found")


def test_webhook_endpoints_are_in_the_openapi_document(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").json["paths"]
    for path in (
        "/api/v1/gamify/admin/webhooks",
        "/api/v1/gamify/admin/webhooks/{webhook_id}",
        "/api/v1/gamify/admin/webhooks/{webhook_id}/rotate-secret",
        "/api/v1/gamify/admin/webhooks/{webhook_id}/deliveries",
        "/api/v1/gamify/admin/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
        "/api/v1/gamify/admin/webhooks/{webhook_id}/redeliver",
        "/api/v1/gamify/admin/webhooks/{webhook_id}/test",
    ):
        assert path in paths


def test_every_event_the_engine_records_can_be_subscribed_to() -> None:
    """The API's list of event types is the engine's (two spellings of one list)."""
    assert set(get_args(EventType)) == set(SUBSCRIBABLE_EVENTS)
