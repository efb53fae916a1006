"""Webhook signing secrets at rest: sealed with SECRET_KEY (the suite runs with one, so
every delivery test also proves sealed secrets sign), opened with any listed key, rotated
by listing a new key first and resealing; a copy of the table alone signs nothing."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.models import WebhookEndpoint
from app.webhooks.endpoints import reseal_secrets
from app.webhooks.secret_box import SEALED_PREFIX, SecretBox, SecretKeyError
from tests.conftest import SUITE_SECRET_KEY, TenantKeys
from tests.test_cli import rewards, rewards_json
from tests.webhook_receiver import create_webhook

SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWJ5dGVzLTMyLWxvbmch"


def test_a_sealed_secret_opens_with_any_listed_key_and_with_no_other() -> None:
    old, new = SecretBox(["old key"]), SecretBox(["new key", "old key"])
    sealed = old.seal(SECRET)
    assert sealed.startswith(SEALED_PREFIX) and SECRET not in sealed
    assert old.seal(SECRET) != sealed  # a fresh IV each time
    assert old.open(sealed) == new.open(sealed) == SECRET
    resealed = new.reseal(sealed)
    assert SecretBox(["new key"]).open(resealed) == SECRET
    with pytest.raises(SecretKeyError, match="does not list"):
        SecretBox(["old key"]).open(resealed)
    with pytest.raises(SecretKeyError, match="SECRET_KEY is not set"):
        SecretBox([]).open(sealed)
    # Without a key, secrets are stored, and stored ones opened, as they are.
    assert SecretBox([]).seal(SECRET) == SECRET == SecretBox(["any"]).open(SECRET)


def test_keys_come_from_the_variable_or_from_a_file_newest_first(tmp_path: Any) -> None:
    assert Settings(secret_key=" new , old ").secret_keys() == ["new", "old"]
    key_file = tmp_path / "keys"
    key_file.write_text("new\n\nold\n")
    assert Settings(secret_key_file=key_file).secret_keys() == ["new", "old"]
    assert Settings().secret_keys() == []


def test_the_stored_secret_is_sealed_and_the_created_one_shown_once(
    client: FlaskClient, tenant: TenantKeys, db_session: Session
) -> None:
    webhook = create_webhook(client, tenant.admin(), "http://127.0.0.1:9/in")
    stored = db_session.execute(
        select(WebhookEndpoint.secret).where(WebhookEndpoint.tenant_id == tenant.tenant_id)
    ).scalar_one()
    assert stored.startswith(SEALED_PREFIX) and webhook["secret"] not in stored
    assert SecretBox([SUITE_SECRET_KEY]).open(stored) == webhook["secret"]


def test_rotation_reseals_every_secret_under_the_new_key(
    client: FlaskClient, tenant: TenantKeys, db_session: Session
) -> None:
    webhook = create_webhook(client, tenant.admin(), "http://127.0.0.1:9/in")
    rotated = client.post(
        f"/api/v1/gamify/admin/webhooks/{webhook['id']}/rotate-secret", headers=tenant.admin()
    )
    assert rotated.status_code == 200, rotated.json
    # In the test's own transaction, rolled back after: the suite's workers keep its key.
    assert reseal_secrets(db_session, SecretBox(["next key", SUITE_SECRET_KEY])) >= 1
    endpoint = db_session.execute(
        select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant.tenant_id)
    ).scalar_one()
    assert endpoint.previous_secret is not None
    only_next = SecretBox(["next key"])
    assert only_next.open(endpoint.secret) == rotated.json["secret"]
    assert only_next.open(endpoint.previous_secret) == webhook["secret"]


def test_the_reseal_command_changes_nothing_when_a_key_is_missing(
    client: FlaskClient, tenant: TenantKeys, service_env: dict[str, str]
) -> None:
    create_webhook(client, tenant.admin(), "http://127.0.0.1:9/in")
    refused = rewards(service_env, "secrets", "reseal", SECRET_KEY="some other key")
    assert refused.returncode == 1
    assert "secret_key_mismatch" in refused.stderr and "nothing was changed" in refused.stderr
    done = rewards_json(service_env, "secrets", "reseal")
    assert done["sealed"] is True and done["endpoints_resealed"] >= 1
