"""Console webhooks: endpoints, secrets, test events, deliveries, redelivery (Flask client)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.runtime import runtime
from app.clock import utcnow
from app.models import AuditEntry, WebhookDelivery, WebhookEndpoint
from app.webhooks.endpoints import send_test_event
from app.webhooks.signing import sign
from tests.builders import GAMIFY
from tests.conftest import TenantKeys
from tests.console_support import form_csrf, session_csrf, sign_in
from tests.webhook_receiver import create_webhook

WEBHOOKS_PAGE = "/console/webhooks"
API_WEBHOOKS = f"{GAMIFY}/admin/webhooks"
RECEIVER = "http://127.0.0.1:9/hooks"  # never answers: deliveries here fail
SECRET_SHOWN = re.compile(r'<code id="new-secret" class="secret">([^<]+)</code>')


@pytest.fixture
def console(client: FlaskClient, tenant: TenantKeys) -> FlaskClient:
    assert sign_in(client, tenant.admin_key).status_code == 303
    return client


def _field_error(html: str, name: str) -> str:
    match = re.search(rf'<p class="field-error" id="error-{name}">([^<]*)</p>', html)
    assert match, f"the page shows an error beside {name}"
    return match.group(1)


def _audit_actions(
    session_factory: sessionmaker[Session], tenant: TenantKeys
) -> list[tuple[str, str, dict[str, Any] | None]]:
    with session_factory() as session:
        entries = session.execute(
            select(AuditEntry)
            .where(AuditEntry.tenant_id == tenant.tenant_id)
            .order_by(AuditEntry.created_at)
        ).scalars()
        return [
            (entry.action, entry.target_id, entry.details)
            for entry in entries
            if not entry.action.startswith("console.")
        ]


def _stored(session_factory: sessionmaker[Session], webhook_id: str) -> WebhookEndpoint:
    with session_factory() as session:
        endpoint = session.get(WebhookEndpoint, uuid.UUID(webhook_id))
        assert endpoint is not None
        return endpoint


def _new_form(csrf: str, **changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "csrf_token": csrf,
        "url": RECEIVER,
        "description": "fulfilment",
        "events": ["points.awarded", "tier.upgraded"],
        "payload_format": "blocks",
        "secret": "",
    }
    form.update(changes)
    return form


def _failed_deliveries(
    session_factory: sessionmaker[Session], tenant: TenantKeys, webhook_id: str, count: int
) -> list[str]:
    """`count` deliveries that failed for good, an hour ago (test events, made so in the
    transaction that makes them, so no dispatcher ever picks them up)."""
    an_hour_ago = utcnow() - timedelta(hours=1)
    made = []
    with session_factory.begin() as session:
        for _ in range(count):
            delivery = send_test_event(session, tenant.tenant_id, "live", uuid.UUID(webhook_id))
            delivery.status = "failed"
            delivery.attempts = 4
            delivery.last_attempt_at = an_hour_ago
            delivery.last_response_status = 500
            delivery.last_response_body = "upstream exploded " + "x" * 400
            delivery.last_error = "HTTP 500"
            delivery.created_at = an_hour_ago
            made.append(str(delivery.id))
    return made


def test_forms_without_the_form_token_are_refused_and_change_nothing(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    webhook = create_webhook(console, tenant.admin(), RECEIVER)
    [delivery_id] = _failed_deliveries(session_factory, tenant, webhook["id"], 1)
    base = f"{WEBHOOKS_PAGE}/{webhook['id']}"
    posts = {
        f"{WEBHOOKS_PAGE}/new": _new_form(""),
        base: {"url": "http://127.0.0.1:9/other", "events": ["points.awarded"]},
        f"{base}/rotate-secret": {},
        f"{base}/test": {},
        f"{base}/deliveries/{delivery_id}/redeliver": {},
        f"{base}/redeliver": {"since": "2020-01-01T00:00"},
    }
    before = _stored(session_factory, webhook["id"])

    for path, form in posts.items():
        form.pop("csrf_token", None)
        answer = console.post(path, data=form)
        assert answer.status_code == 400, path
        assert "Form refused" in answer.text

    after = _stored(session_factory, webhook["id"])
    assert (after.url, after.secret, after.updated_at) == (
        before.url,
        before.secret,
        before.updated_at,
    )
    with session_factory() as session:
        deliveries = session.execute(
            select(WebhookDelivery.status).where(
                WebhookDelivery.endpoint_id == uuid.UUID(webhook["id"])
            )
        ).all()
    assert [status for (status,) in deliveries] == ["failed"]
    assert console.get(API_WEBHOOKS, headers=tenant.admin()).json["total"] == 1
    assert [action for action, _, _ in _audit_actions(session_factory, tenant)] == [
        "webhook.created"
    ]


def test_creating_an_endpoint_shows_its_secret_once_and_audits_it(
    console: FlaskClient,
    tenant: TenantKeys,
    flask_app: Flask,
    session_factory: sessionmaker[Session],
) -> None:
    page = console.get(f"{WEBHOOKS_PAGE}/new")
    assert page.status_code == 200
    answer = console.post(f"{WEBHOOKS_PAGE}/new", data=_new_form(form_csrf(page.text)))

    assert answer.status_code == 201, answer.text
    secret_match = SECRET_SHOWN.search(answer.text)
    assert secret_match is not None
    secret = secret_match.group(1)
    [listed] = console.get(API_WEBHOOKS, headers=tenant.admin()).json["items"]
    assert {key: listed[key] for key in ("url", "description", "events", "payload_format")} == {
        "url": RECEIVER,
        "description": "fulfilment",
        "events": ["points.awarded", "tier.upgraded"],
        "payload_format": "blocks",
    }
    with flask_app.app_context():
        assert runtime().secret_box.open(_stored(session_factory, listed["id"]).secret) == secret
    # Shown once: neither the list nor the endpoint's page carries it.
    for path in (WEBHOOKS_PAGE, f"{WEBHOOKS_PAGE}/{listed['id']}"):
        shown = console.get(path)
        assert shown.status_code == 200
        assert secret not in shown.text
    assert RECEIVER in console.get(WEBHOOKS_PAGE).text
    assert _audit_actions(session_factory, tenant) == [
        (
            "webhook.created",
            listed["id"],
            {"url": RECEIVER, "secret_given": False, "via": "console"},
        )
    ]


def test_creating_an_endpoint_shows_each_validation_error_beside_its_field(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    csrf = session_csrf(console)
    typed_secret = "short-Typed-Secret"  # 18 characters, but one is refused: see below
    missing = console.post(
        f"{WEBHOOKS_PAGE}/new",
        data=_new_form(csrf, url="", events=[], secret=typed_secret.replace("-", " ", 1)),
    )
    assert missing.status_code == 422
    # A secret typed into a refused form is not sent back into the page's HTML.
    assert typed_secret.replace("-", " ", 1) not in missing.text
    assert re.search(r'<input id="f-secret"[^>]* autocomplete="new-password"', missing.text)
    assert _field_error(missing.text, "url")
    assert _field_error(missing.text, "events")
    assert "16 to 200 printable ASCII characters" in _field_error(missing.text, "secret")
    assert ">fulfilment</textarea>" in missing.text  # what was typed is kept
    assert 'value="blocks" selected' in missing.text

    refused_url = console.post(f"{WEBHOOKS_PAGE}/new", data=_new_form(csrf, url="ftp://x/y"))
    assert refused_url.status_code == 422
    assert _field_error(refused_url.text, "url")
    assert console.get(API_WEBHOOKS, headers=tenant.admin()).json["total"] == 0
    assert _audit_actions(session_factory, tenant) == []


def test_editing_an_endpoint_changes_what_was_changed_and_shows_errors_beside_fields(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    webhook = create_webhook(console, tenant.admin(), RECEIVER, events=["points.awarded"])
    page = console.get(f"{WEBHOOKS_PAGE}/{webhook['id']}")
    assert page.status_code == 200
    csrf = form_csrf(page.text)
    path = f"{WEBHOOKS_PAGE}/{webhook['id']}"

    saved = console.post(
        path,
        data={
            "csrf_token": csrf,
            "url": RECEIVER,
            "description": "",
            "events": ["tier.upgraded", "points.awarded"],
            "payload_format": "blocks",
        },
    )
    assert saved.status_code == 303
    assert saved.headers["Location"].endswith("?done=updated")
    fetched = console.get(f"{API_WEBHOOKS}/{webhook['id']}", headers=tenant.admin()).json
    assert fetched["events"] == ["tier.upgraded", "points.awarded"]
    assert (fetched["payload_format"], fetched["enabled"]) == ("blocks", False)
    assert fetched["disabled_reason"] == "manual"
    assert "Changes saved." in console.get(saved.headers["Location"]).text

    bad = console.post(
        path, data={"csrf_token": csrf, "url": RECEIVER, "events": [], "payload_format": "xml"}
    )
    assert bad.status_code == 422
    for name in ("events", "payload_format"):
        assert _field_error(bad.text, name)
    bad_url = console.post(
        path,
        data={
            "csrf_token": csrf,
            "url": "not a url",
            "events": ["tier.upgraded"],
            "payload_format": "blocks",
        },
    )
    assert bad_url.status_code == 422
    assert "must not contain spaces" in _field_error(bad_url.text, "url")
    assert console.get(f"{API_WEBHOOKS}/{webhook['id']}", headers=tenant.admin()).json == fetched

    actions = _audit_actions(session_factory, tenant)
    assert actions[-1] == (
        "webhook.updated",
        webhook["id"],
        {"changed": ["enabled", "events", "payload_format"], "via": "console"},
    )


def test_rotating_the_secret_shows_the_new_one_which_then_signs(
    console: FlaskClient,
    tenant: TenantKeys,
    flask_app: Flask,
    session_factory: sessionmaker[Session],
) -> None:
    webhook = create_webhook(console, tenant.admin(), RECEIVER)
    old_secret = webhook["secret"]
    csrf = session_csrf(console)

    rotated = console.post(
        f"{WEBHOOKS_PAGE}/{webhook['id']}/rotate-secret", data={"csrf_token": csrf}
    )

    assert rotated.status_code == 200, rotated.text
    shown = SECRET_SHOWN.search(rotated.text)
    assert shown is not None
    new_secret = shown.group(1)
    assert new_secret.startswith("whsec_") and new_secret != old_secret
    stored = _stored(session_factory, webhook["id"])
    with flask_app.app_context():
        box = runtime().secret_box
        active = (box.open(stored.secret), box.open(stored.previous_secret or ""))
    assert active == (new_secret, old_secret)  # the old one signs alongside for 24 hours
    message = sign(active[0], "msg_1", 1_700_000_000, b"{}")
    assert message == sign(new_secret, "msg_1", 1_700_000_000, b"{}")
    assert message != sign(old_secret, "msg_1", 1_700_000_000, b"{}")
    assert new_secret not in console.get(f"{WEBHOOKS_PAGE}/{webhook['id']}").text

    too_short = console.post(
        f"{WEBHOOKS_PAGE}/{webhook['id']}/rotate-secret",
        data={"csrf_token": csrf, "secret": "short"},
    )
    assert too_short.status_code == 422
    assert _field_error(too_short.text, "secret")
    assert _stored(session_factory, webhook["id"]).secret == stored.secret
    assert _audit_actions(session_factory, tenant)[-1] == (
        "webhook.secret_rotated",
        webhook["id"],
        {"secret_given": False, "via": "console"},
    )


def test_a_test_event_is_queued_audited_and_listed_among_the_deliveries(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    webhook = create_webhook(console, tenant.admin(), RECEIVER)

    sent = console.post(
        f"{WEBHOOKS_PAGE}/{webhook['id']}/test", data={"csrf_token": session_csrf(console)}
    )

    assert sent.status_code == 303
    page = console.get(sent.headers["Location"]).text
    assert "A webhook.test event is queued" in page
    assert "<code>webhook.test</code>" in page
    action, target, details = _audit_actions(session_factory, tenant)[-1]
    assert (action, target) == ("webhook.test_sent", webhook["id"])
    assert details is not None and details["via"] == "console"


def test_the_deliveries_are_paged_filtered_and_show_the_response(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    webhook = create_webhook(console, tenant.admin(), RECEIVER)
    _failed_deliveries(session_factory, tenant, webhook["id"], 3)
    path = f"{WEBHOOKS_PAGE}/{webhook['id']}"

    first = console.get(path, query_string={"page_size": 2, "status": ""}).text
    assert "Page 1 of 2 (3 in all)" in first
    assert first.count("HTTP 500") == 2
    assert "upstream exploded" in first
    assert "x" * 300 not in first  # an excerpt of the body
    second = console.get(path, query_string={"page_size": 2, "page": 2}).text
    assert "Page 2 of 2" in second and second.count("HTTP 500") == 1
    pending_only = console.get(path, query_string={"status": "pending"}).text
    assert "No deliveries with status pending yet." in pending_only
    assert console.get(path, query_string={"status": "lost"}).status_code == 422


def test_redelivering_one_delivery_queues_it_again_audited(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    webhook = create_webhook(console, tenant.admin(), RECEIVER)
    [delivery_id, other_id] = _failed_deliveries(session_factory, tenant, webhook["id"], 2)

    answer = console.post(
        f"{WEBHOOKS_PAGE}/{webhook['id']}/deliveries/{delivery_id}/redeliver",
        data={"csrf_token": session_csrf(console)},
    )

    assert answer.status_code == 303
    assert "The delivery is queued again" in console.get(answer.headers["Location"]).text
    with session_factory() as session:
        statuses = dict(
            session.execute(
                select(WebhookDelivery.id, WebhookDelivery.status).where(
                    WebhookDelivery.endpoint_id == uuid.UUID(webhook["id"])
                )
            ).all()
        )
    # Pending through its fresh retry schedule (the receiver never answers).
    assert statuses == {uuid.UUID(delivery_id): "pending", uuid.UUID(other_id): "failed"}
    assert _audit_actions(session_factory, tenant)[-1] == (
        "webhook.redelivered",
        webhook["id"],
        {"delivery_id": delivery_id, "via": "console"},
    )


def test_redelivering_every_failed_delivery_since_a_time(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    webhook = create_webhook(console, tenant.admin(), RECEIVER)
    _failed_deliveries(session_factory, tenant, webhook["id"], 2)
    path = f"{WEBHOOKS_PAGE}/{webhook['id']}/redeliver"
    csrf = session_csrf(console)

    later = (utcnow() + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    none_since = console.post(path, data={"csrf_token": csrf, "since": later})
    assert none_since.status_code == 303
    assert (
        "0 failed deliveries are queued again." in console.get(none_since.headers["Location"]).text
    )

    earlier = (utcnow() - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
    both = console.post(path, data={"csrf_token": csrf, "since": earlier})
    assert both.status_code == 303
    assert both.headers["Location"].endswith("?redelivered=2")
    assert "2 failed deliveries are queued again." in console.get(both.headers["Location"]).text
    action, target, details = _audit_actions(session_factory, tenant)[-1]
    assert (action, target) == ("webhook.failed_redelivered", webhook["id"])
    assert details is not None and (details["redelivered"], details["via"]) == (2, "console")

    for given in ("", "yesterday"):
        refused = console.post(path, data={"csrf_token": csrf, "since": given})
        assert refused.status_code == 422
        assert _field_error(refused.text, "since")


def test_redelivering_to_a_disabled_endpoint_says_why_beside_the_form(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    webhook = create_webhook(console, tenant.admin(), RECEIVER)
    _failed_deliveries(session_factory, tenant, webhook["id"], 1)
    console.patch(
        f"{API_WEBHOOKS}/{webhook['id']}", json={"enabled": False}, headers=tenant.admin()
    )

    refused = console.post(
        f"{WEBHOOKS_PAGE}/{webhook['id']}/redeliver",
        data={"csrf_token": session_csrf(console), "since": "2020-01-01T00:00"},
    )

    assert refused.status_code == 409
    assert "Webhook endpoint is disabled; enable it first" in refused.text
    assert "Send a test event" not in refused.text


def test_another_tenants_endpoint_is_a_not_found_page(
    console: FlaskClient, make_tenant: Any
) -> None:
    stranger = make_tenant("Other")
    theirs = create_webhook(console, stranger.admin(), RECEIVER)
    for path in (f"{WEBHOOKS_PAGE}/{theirs['id']}", f"{WEBHOOKS_PAGE}/not-a-uuid"):
        answer = console.get(path)
        assert answer.status_code == 404
        assert answer.mimetype == "text/html"
    refused = console.post(
        f"{WEBHOOKS_PAGE}/{theirs['id']}/rotate-secret", data={"csrf_token": session_csrf(console)}
    )
    assert refused.status_code == 404
