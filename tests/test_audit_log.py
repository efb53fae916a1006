"""Administrative changes are recorded with who, what and when, readable by an admin."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from flask.testing import FlaskClient

from tests.builders import GAMIFY, create_reward, upload_codes
from tests.conftest import TenantKeys


def _log(client: FlaskClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get(f"{GAMIFY}/admin/audit-log", headers=headers)
    assert response.status_code == 200
    return list(response.json["entries"])


def test_reward_changes_are_recorded_newest_first_with_the_acting_key(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin())
    upload_codes(client, tenant.admin(), reward["id"], ["A", "B", "A"])
    client.patch(
        f"{GAMIFY}/admin/rewards/{reward['id']}", json={"name": "New"}, headers=tenant.admin()
    )
    client.delete(f"{GAMIFY}/admin/rewards/{reward['id']}", headers=tenant.admin())

    entries = _log(client, tenant.admin())

    assert [entry["action"] for entry in entries] == [
        "reward.deactivated",
        "reward.updated",
        "reward.codes_uploaded",
        "reward.created",
    ]
    assert {entry["target_id"] for entry in entries} == {reward["id"]}
    assert {entry["actor"] for entry in entries} == {"api_key"}
    assert all(entry["actor_key_id"] for entry in entries)
    assert entries[1]["details"] == {"changed": ["name"]}
    assert entries[2]["details"] == {"added": 2, "duplicates": 1}


def test_a_refused_change_leaves_no_audit_entry(client: FlaskClient, tenant: TenantKeys) -> None:
    reward = create_reward(client, tenant.admin())
    refused = client.patch(
        f"{GAMIFY}/admin/rewards/{reward['id']}", json={"type": "voucher"}, headers=tenant.admin()
    )
    assert refused.status_code == 422
    assert [entry["action"] for entry in _log(client, tenant.admin())] == ["reward.created"]


def test_key_creation_and_revocation_by_the_cli_are_recorded(
    client: FlaskClient, tenant: TenantKeys, service_env: dict[str, str]
) -> None:
    env = {**os.environ, **service_env}
    rewards = [sys.executable, "-m", "app.cli"]
    created = subprocess.run(
        [*rewards, "key", "create", "--tenant", str(tenant.tenant_id)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key_id = created.stdout.split('"key_id": "')[1].split('"')[0]
    subprocess.run([*rewards, "key", "revoke", key_id], env=env, capture_output=True, check=True)

    entries = _log(client, tenant.admin())

    assert [(entry["action"], entry["target_id"], entry["actor"]) for entry in entries] == [
        ("api_key.revoked", key_id, "cli"),
        ("api_key.created", key_id, "cli"),
    ]
    assert created.stdout.split('"key": "')[1].split('"')[0] not in str(entries)


def test_the_audit_log_is_admin_only_and_scoped_to_tenant_and_environment(
    client: FlaskClient, make_tenant: Any
) -> None:
    acme, other = make_tenant("Acme"), make_tenant("Other")
    create_reward(client, acme.admin())
    assert client.get(f"{GAMIFY}/admin/audit-log", headers=acme.participant()).status_code == 403
    assert _log(client, other.admin()) == []
    assert _log(client, {"X-API-Key": acme.test_admin_key}) == []


def test_webhook_changes_are_recorded_without_their_secrets(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    created = client.post(
        f"{GAMIFY}/admin/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["reward.reward_claimed"]},
        headers=tenant.admin(),
    )
    assert created.status_code == 201
    webhook_id = created.json["id"]
    rotated = client.post(
        f"{GAMIFY}/admin/webhooks/{webhook_id}/rotate-secret", headers=tenant.admin()
    )

    entries = _log(client, tenant.admin())

    assert [entry["action"] for entry in entries] == ["webhook.secret_rotated", "webhook.created"]
    assert created.json["secret"] not in str(entries)
    assert rotated.json["secret"] not in str(entries)
