"""The `rewards` command end to end: real processes against this run's database.

Keys the CLI prints are used through the Flask test client on a random operation id: a
valid key hears 404 operation_not_found, an invalid one 401 unauthorized.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from importlib import metadata
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.cli import main
from app.models import Tenant
from app.tenancy import find_principal
from tests.builders import wait_for
from tests.conftest import TenantKeys

# The shared app caches key lookups for AUTH_CACHE_TTL_SECONDS=1 (service_env).
CACHE_DEADLINE_SECONDS = 5


def rewards(
    service_env: dict[str, str], *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**os.environ, **service_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rewards_json(service_env: dict[str, str], *args: str) -> dict[str, Any]:
    """Runs a command that must succeed; its stdout must be exactly one JSON object."""
    result = rewards(service_env, *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    document = json.loads(lines[0])
    assert isinstance(document, dict)
    return document


def status_with(client: FlaskClient, key: str) -> tuple[int, str]:
    response = client.get(f"/api/v1/gamify/operations/{uuid.uuid4()}", headers={"X-API-Key": key})
    return response.status_code, response.json["code"]


AUTHENTICATED = (404, "operation_not_found")
UNAUTHORIZED = (401, "unauthorized")


@pytest.fixture(scope="module")
def cli_tenant(service_env: dict[str, str]) -> dict[str, Any]:
    return rewards_json(service_env, "tenant", "create", "--name", "CLI Co")


def test_tenant_create_prints_one_json_object_with_tenant_id_and_name(
    cli_tenant: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    assert set(cli_tenant) == {"tenant_id", "name"}
    assert cli_tenant["name"] == "CLI Co"
    with session_factory() as session:
        stored = session.get(Tenant, uuid.UUID(cli_tenant["tenant_id"]))
    assert stored is not None and stored.name == "CLI Co"


def test_key_create_prints_a_live_admin_key_that_authenticates(
    service_env: dict[str, str], cli_tenant: dict[str, Any], client: FlaskClient
) -> None:
    issued = rewards_json(
        service_env, "key", "create", "--tenant", cli_tenant["tenant_id"], "--scope", "admin"
    )
    assert set(issued) == {"key", "key_id", "env", "scopes", "expires_at"}
    assert issued["key"].startswith("bq_live_")
    assert (issued["env"], issued["scopes"], issued["expires_at"]) == ("live", ["admin"], None)
    uuid.UUID(issued["key_id"])
    assert status_with(client, issued["key"]) == AUTHENTICATED
    assert status_with(client, issued["key"] + "x") == UNAUTHORIZED


def test_key_create_with_env_test_prints_a_test_key_that_authenticates(
    service_env: dict[str, str], cli_tenant: dict[str, Any], client: FlaskClient
) -> None:
    issued = rewards_json(
        service_env, "key", "create", "--tenant", cli_tenant["tenant_id"], "--env", "test"
    )
    assert issued["key"].startswith("bq_test_")
    assert (issued["env"], issued["scopes"]) == ("test", [])
    assert status_with(client, issued["key"]) == AUTHENTICATED


@pytest.mark.parametrize(
    ("options", "prefix", "env", "scopes"),
    [
        (["--style", "blocks"], "sk_live_", "live", []),
        (["--style", "blocks", "--scope", "admin"], "sk_live_", "live", ["admin"]),
        (["--style", "blocks", "--env", "test"], "sk_test_", "test", []),
        (["--publishable"], "pk_live_", "live", ["publishable"]),
        (
            ["--publishable", "--style", "blocks", "--env", "test"],
            "pk_test_",
            "test",
            ["publishable"],
        ),
        (["--scope", "publishable"], "pk_live_", "live", ["publishable"]),
        (["--style", "bq", "--scope", "gamify:admin"], "bq_live_", "live", ["gamify:admin"]),
    ],
)
def test_key_create_in_the_blocks_style_mints_sk_and_pk_keys_that_authenticate(
    service_env: dict[str, str],
    cli_tenant: dict[str, Any],
    client: FlaskClient,
    session_factory: sessionmaker[Session],
    options: list[str],
    prefix: str,
    env: str,
    scopes: list[str],
) -> None:
    issued = rewards_json(
        service_env, "key", "create", "--tenant", cli_tenant["tenant_id"], *options
    )
    assert issued["key"].startswith(prefix)
    assert (issued["env"], issued["scopes"]) == (env, scopes)
    catalog = client.get("/api/v1/gamify/rewards", headers={"X-API-Key": issued["key"]})
    assert catalog.status_code == 200, catalog.json
    with session_factory() as session:
        principal = find_principal(session, issued["key"])
        hint = session.execute(
            text("SELECT key_hint FROM api_keys WHERE id = :id"), {"id": issued["key_id"]}
        ).scalar_one()
    assert principal is not None and principal.env == env
    assert principal.is_publishable is (prefix.startswith("pk_"))
    assert principal.is_admin is ("admin" in scopes or "gamify:admin" in scopes)
    assert hint == issued["key"][: len(prefix) + 4]


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        (["--publishable", "--scope", "admin"], "cannot carry an admin scope"),
        (["--scope", "publishable", "--scope", "gamify:admin"], "cannot carry an admin scope"),
        (["--publishable", "--style", "bq"], "blocks style"),
    ],
)
def test_a_publishable_key_is_never_an_admin_nor_of_the_bq_style(
    service_env: dict[str, str],
    cli_tenant: dict[str, Any],
    session_factory: sessionmaker[Session],
    options: list[str],
    complaint: str,
) -> None:
    def keys() -> int:
        with session_factory() as session:
            return int(
                session.execute(
                    text("SELECT count(*) FROM api_keys WHERE tenant_id = :t"),
                    {"t": cli_tenant["tenant_id"]},
                ).scalar_one()
            )

    before = keys()
    result = rewards(service_env, "key", "create", "--tenant", cli_tenant["tenant_id"], *options)
    assert result.returncode != 0
    assert result.stdout == ""
    assert complaint in result.stderr
    assert keys() == before


def test_key_created_with_a_past_expires_at_is_rejected(
    service_env: dict[str, str], cli_tenant: dict[str, Any], client: FlaskClient
) -> None:
    issued = rewards_json(
        service_env,
        "key",
        "create",
        "--tenant",
        cli_tenant["tenant_id"],
        "--expires-at",
        "2020-01-01T00:00:00Z",
    )
    assert issued["expires_at"] == "2020-01-01T00:00:00+00:00"
    assert status_with(client, issued["key"]) == UNAUTHORIZED


def test_key_revoke_rejects_the_key_once_the_auth_cache_expires(
    service_env: dict[str, str], cli_tenant: dict[str, Any], client: FlaskClient
) -> None:
    issued = rewards_json(service_env, "key", "create", "--tenant", cli_tenant["tenant_id"])
    assert status_with(client, issued["key"]) == AUTHENTICATED  # now cached

    revoked = rewards_json(service_env, "key", "revoke", issued["key_id"])

    assert revoked == {"key_id": issued["key_id"], "revoked": True}
    wait_for(
        lambda: status_with(client, issued["key"]),
        lambda seen: seen == UNAUTHORIZED,
        CACHE_DEADLINE_SECONDS,
        "the revoked key to be refused",
        interval=0.1,
    )


def test_tenant_disable_forbids_its_keys_and_enable_restores_them(
    service_env: dict[str, str], tenant: TenantKeys, client: FlaskClient
) -> None:
    tenant_id = str(tenant.tenant_id)
    assert status_with(client, tenant.participant_key) == AUTHENTICATED  # now cached

    disabled = rewards_json(service_env, "tenant", "disable", tenant_id)

    assert disabled == {"tenant_id": tenant_id, "disabled": True}

    def answer() -> tuple[int, dict[str, Any]]:
        response = client.get(
            f"/api/v1/gamify/operations/{uuid.uuid4()}", headers=tenant.participant()
        )
        return response.status_code, response.json

    forbidden = (
        403,
        {"code": "forbidden", "type": "forbidden", "detail": "Tenant is disabled", "status": 403},
    )
    wait_for(
        answer,
        lambda seen: seen == forbidden,
        CACHE_DEADLINE_SECONDS,
        "the disabled tenant's key to be forbidden",
        interval=0.1,
    )

    enabled = rewards_json(service_env, "tenant", "enable", tenant_id)

    assert enabled == {"tenant_id": tenant_id, "disabled": False}
    wait_for(
        lambda: status_with(client, tenant.participant_key),
        lambda seen: seen == AUTHENTICATED,
        CACHE_DEADLINE_SECONDS,
        "the enabled tenant's key to authenticate again",
        interval=0.1,
    )


def test_invalid_database_url_exits_2_with_one_stderr_line_naming_it(
    service_env: dict[str, str],
) -> None:
    result = rewards(service_env, "tenant", "create", "--name", "x", DATABASE_URL="mysql://x")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "DATABASE_URL" in lines[0]


def test_db_upgrade_is_idempotent(
    service_env: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    def revision() -> str:
        with session_factory() as session:
            return session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()

    before = revision()  # the run's database is already at head
    assert rewards_json(service_env, "db", "upgrade") == {"migrated": True}
    assert revision() == before


def test_key_create_with_unknown_scope_fails_naming_it_and_the_known_scopes(
    service_env: dict[str, str], cli_tenant: dict[str, Any]
) -> None:
    result = rewards(
        service_env, "key", "create", "--tenant", cli_tenant["tenant_id"], "--scope", "superuser"
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert "superuser" in result.stderr
    assert "known: admin, gamify:admin" in result.stderr


def test_an_unreachable_database_is_one_line_on_stderr_not_a_traceback(
    service_env: dict[str, str],
) -> None:
    result = rewards(
        service_env,
        "tenant",
        "create",
        "--name",
        "Nowhere",
        DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/none",
        DB_CONNECT_TIMEOUT_SECONDS="1",
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("rewards: database unavailable:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_version_prints_the_installed_package_version(service_env: dict[str, str]) -> None:
    result = rewards(service_env, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"rewards-engine {metadata.version('rewards-engine')}"


def test_serve_runs_web_concurrency_processes_unless_workers_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import api.server

    processes: list[int] = []
    monkeypatch.setattr(
        api.server,
        "serve",
        lambda settings, host, port, workers, connections: processes.append(workers),
    )
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert main(["serve"]) == 0
    assert main(["serve", "--workers", "1"]) == 0
    monkeypatch.delenv("WEB_CONCURRENCY")
    assert main(["serve"]) == 0
    assert processes == [3, 1, 2]
