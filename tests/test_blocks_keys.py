"""Keys in the 23blocks style: a secret key (sk_) does everything its scopes allow on both
dialects; a publishable key (pk_) only the reads a browser makes and streak actions."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from app.models import Environment
from app.tenancy import KeyStyle, create_api_key
from tests.blocks_contract import endpoint_example, send, with_attributes
from tests.conftest import TenantKeys, WorkerProcess

AWARD = endpoint_example("Points API", "POST", "/v1/rewards/points/award")
RECORD = endpoint_example("Streaks API", "POST", "/v1/rewards/streaks/record")


def mint(
    session_factory: sessionmaker[Session], tenant: TenantKeys, *scopes: str, env: str = "live"
) -> dict[str, str]:
    with session_factory.begin() as session:
        issued = create_api_key(
            session, tenant.tenant_id, Environment(env), list(scopes), style=KeyStyle.BLOCKS
        )
    return {"Authorization": f"Bearer {issued.key}"}


@pytest.fixture
def publishable(session_factory: sessionmaker[Session], tenant: TenantKeys) -> dict[str, str]:
    return mint(session_factory, tenant, "publishable")


def test_a_secret_key_writes_through_either_dialect_and_reads_through_the_other(
    client: FlaskClient,
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
    worker: WorkerProcess,
) -> None:
    secret = mint(session_factory, tenant)
    blocks = send(client, "POST", "/v1/rewards/points/award", secret, AWARD["request"])
    native = client.post(
        "/api/v1/gamify/points/award",
        json={"participant_id": "user-123", "amount": 5},
        headers=secret,
    )
    balance = client.get("/api/v1/gamify/participants/user-123/points", headers=secret)

    assert secret["Authorization"].startswith("Bearer sk_live_")
    assert (blocks.status_code, native.status_code) == (201, 200)
    assert balance.json["balance"] == 155


def test_the_key_prefix_picks_the_environment(
    client: FlaskClient,
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
    worker: WorkerProcess,
) -> None:
    test_key = mint(session_factory, tenant, env="test")
    send(client, "POST", "/v1/rewards/points/award", test_key, AWARD["request"])

    in_test = send(client, "GET", "/v1/rewards/points/balance/user-123", test_key)
    in_live = send(client, "GET", "/v1/rewards/points/balance/user-123", tenant.participant())

    assert test_key["Authorization"].startswith("Bearer sk_test_")
    assert in_test.json["data"]["attributes"]["available"] == 150
    assert in_live.json["data"]["attributes"]["available"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "/v1/rewards/points/balance/user-123",
        "/v1/rewards/points/history/user-123",
        "/v1/rewards/tiers",
        "/v1/rewards/badges",
        "/v1/rewards/catalog",
        "/api/v1/gamify/participants/user-123/points",
    ],
)
def test_a_publishable_key_makes_the_reads_a_browser_makes(
    client: FlaskClient, publishable: dict[str, str], path: str
) -> None:
    assert send(client, "GET", path, publishable).status_code == 200


def test_a_publishable_key_records_streak_actions(
    client: FlaskClient, tenant: TenantKeys, publishable: dict[str, str], worker: WorkerProcess
) -> None:
    config = endpoint_example("Streaks API", "POST", "/v1/rewards/streaks/config")
    body = with_attributes(config["request"], streak_type="daily-login")
    configured = send(client, "POST", "/v1/rewards/streaks/config", tenant.admin(), body)
    recorded = send(client, "POST", "/v1/rewards/streaks/record", publishable, RECORD["request"])

    assert configured.status_code == 201, configured.json
    assert recorded.status_code == 200, recorded.json
    assert recorded.json["data"]["attributes"]["current-streak"] == 1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/rewards/points/award", AWARD["request"]),
        ("POST", "/v1/rewards/points/deduct", None),
        ("POST", "/v1/rewards/tiers", None),
        ("POST", "/api/v1/gamify/points/award", {"participant_id": "u", "amount": 1}),
        ("GET", "/api/v1/gamify/admin/rewards", None),
    ],
)
def test_a_publishable_key_may_do_nothing_else(
    client: FlaskClient, publishable: dict[str, str], method: str, path: str, body: Any
) -> None:
    response = send(client, method, path, publishable, body)

    assert response.status_code == 403
    errors = response.json.get("errors") or [response.json]
    assert errors[0]["code"] == "forbidden"
