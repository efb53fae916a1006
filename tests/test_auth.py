"""API-key authentication: who may call, which env and tenant they see, what is stored."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import delete, event, text, update
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.models import ApiKey, Environment, Operation, OperationStatus
from app.operations import submit_operation
from app.points.kinds import AWARD_KIND
from app.tenancy import create_api_key, create_tenant, find_principal, revoke_api_key
from tests.conftest import TenantKeys

UNAUTHORIZED = {
    "code": "unauthorized",
    "type": "unauthorized",
    "detail": "Missing, invalid, expired or revoked API key",
    "status": 401,
}


def operation_path(operation_id: uuid.UUID | None = None) -> str:
    return f"/api/v1/gamify/operations/{operation_id or uuid.uuid4()}"


def assert_authenticated(response: Any) -> None:
    """A random operation id: a caller who got past auth hears 404 operation_not_found."""
    assert response.status_code == 404, response.json
    assert response.json["code"] == "operation_not_found"


def assert_unauthorized(response: Any) -> None:
    assert response.status_code == 401
    assert response.json == UNAUTHORIZED


@pytest.fixture
def committed_operation(session_factory: sessionmaker[Session]) -> Iterator[Callable[..., Any]]:
    """Commits finished operations (an award, recorded and answered in one transaction, so
    no sweeper or worker ever picks it up); deletes them after."""
    created: list[uuid.UUID] = []

    def build(tenant_id: uuid.UUID, env: str) -> uuid.UUID:
        with session_factory.begin() as session:
            operation = submit_operation(
                session.connection(),
                tenant_id=tenant_id,
                env=env,
                kind=AWARD_KIND,
                payload={"participant_id": "ann", "amount": 1, "reason": None, "metadata": None},
                idempotency_key=None,
            ).operation
            session.execute(
                update(Operation)
                .where(Operation.id == operation.id)
                .values(
                    status=OperationStatus.SUCCEEDED.value,
                    http_status=200,
                    result={"amount": 1},
                    attempts=1,
                    finished_at=utcnow(),
                )
            )
        created.append(operation.id)
        return operation.id

    yield build
    with session_factory.begin() as session:
        session.execute(delete(Operation).where(Operation.id.in_(created)))


def issue_key(
    session_factory: sessionmaker[Session],
    tenant_id: uuid.UUID,
    env: Environment = Environment.LIVE,
    **options: Any,
) -> str:
    with session_factory.begin() as session:
        return create_api_key(session, tenant_id, env, [], **options).key


# Who may call


def test_missing_key_is_401(client: FlaskClient) -> None:
    assert_unauthorized(client.get(operation_path()))


def test_unknown_key_is_401(client: FlaskClient) -> None:
    assert_unauthorized(client.get(operation_path(), headers={"X-API-Key": "bq_live_nope"}))


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "{key}", "Token {key}", "Bearer{key}"],
    ids=["no-credentials", "blank-credentials", "basic", "no-scheme", "token", "no-space"],
)
def test_malformed_authorization_header_is_401(
    client: FlaskClient, tenant: TenantKeys, authorization: str
) -> None:
    header = authorization.format(key=tenant.participant_key)
    assert_unauthorized(client.get(operation_path(), headers={"Authorization": header}))


def test_oversized_key_is_401(client: FlaskClient) -> None:
    assert_unauthorized(client.get(operation_path(), headers={"X-API-Key": "k" * 10_000}))


def test_bearer_token_is_accepted_like_x_api_key(client: FlaskClient, tenant: TenantKeys) -> None:
    headers = {"Authorization": f"Bearer {tenant.participant_key}"}
    assert_authenticated(client.get(operation_path(), headers=headers))
    assert_authenticated(client.get(operation_path(), headers=tenant.participant()))


def test_expired_key_is_401(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    key = issue_key(session_factory, tenant.tenant_id, expires_at=utcnow() - timedelta(minutes=1))
    assert_unauthorized(client.get(operation_path(), headers={"X-API-Key": key}))


def test_key_with_future_expiry_is_accepted(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    key = issue_key(session_factory, tenant.tenant_id, expires_at=utcnow() + timedelta(hours=1))
    assert_authenticated(client.get(operation_path(), headers={"X-API-Key": key}))


def test_revoked_key_is_401(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        issued = create_api_key(session, tenant.tenant_id, Environment.LIVE, [])
    with session_factory.begin() as session:
        revoke_api_key(session, issued.key_id)
    assert_unauthorized(client.get(operation_path(), headers={"X-API-Key": issued.key}))


# What a key can see


def test_key_sees_its_own_env_operations(
    client: FlaskClient, tenant: TenantKeys, committed_operation: Callable[..., uuid.UUID]
) -> None:
    live_op = committed_operation(tenant.tenant_id, "live")
    test_op = committed_operation(tenant.tenant_id, "test")
    live = client.get(operation_path(live_op), headers={"X-API-Key": tenant.participant_key})
    test = client.get(operation_path(test_op), headers={"X-API-Key": tenant.test_participant_key})
    assert (live.status_code, live.json["operation_id"]) == (200, str(live_op))
    assert (test.status_code, test.json["operation_id"]) == (200, str(test_op))


def test_live_key_cannot_see_test_env_operations_and_vice_versa(
    client: FlaskClient, tenant: TenantKeys, committed_operation: Callable[..., uuid.UUID]
) -> None:
    live_op = committed_operation(tenant.tenant_id, "live")
    test_op = committed_operation(tenant.tenant_id, "test")
    for operation_id, key in (
        (test_op, tenant.participant_key),
        (test_op, tenant.admin_key),
        (live_op, tenant.test_participant_key),
        (live_op, tenant.test_admin_key),
    ):
        response = client.get(operation_path(operation_id), headers={"X-API-Key": key})
        assert_authenticated(response)


def test_another_tenants_operation_is_404(
    client: FlaskClient, make_tenant: Any, committed_operation: Callable[..., uuid.UUID]
) -> None:
    owner, stranger = make_tenant("Owner"), make_tenant("Stranger")
    operation_id = committed_operation(owner.tenant_id, "live")
    assert_authenticated(client.get(operation_path(operation_id), headers=stranger.admin()))
    assert client.get(operation_path(operation_id), headers=owner.admin()).status_code == 200


# What is stored


def test_key_secret_carries_at_least_128_random_bits(db_session: Session) -> None:
    tenant_id = create_tenant(db_session, "Key store").id
    keys = [
        create_api_key(db_session, tenant_id, env, []).key
        for env in (Environment.LIVE, Environment.TEST)
        for _ in range(20)
    ]
    random_parts = [s.removeprefix("bq_live_").removeprefix("bq_test_") for s in keys]
    for part in random_parts:
        decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        assert len(decoded) * 8 >= 128, part
    assert len(set(random_parts)) == len(random_parts)


def test_key_is_stored_only_as_a_digest(db_session: Session) -> None:
    issued = create_api_key(
        db_session, create_tenant(db_session, "Key store").id, Environment.LIVE, ["admin"]
    )
    random_part = issued.key.removeprefix("bq_live_")
    whole_row = db_session.execute(
        text("SELECT k::text FROM api_keys k WHERE k.id = :id"), {"id": issued.key_id}
    ).scalar_one()
    assert issued.key not in whole_row
    assert random_part not in whole_row
    assert find_principal(db_session, issued.key) is not None


# A key as an earlier version stored it: its digest (SHA-256 hex) must not drift, or every
# key issued before an upgrade would stop working.
PINNED_KEY = "bq_live_pinned-secret-from-an-earlier-version"
PINNED_KEY_HASH = "998f8514fce897de701e3dc42e4b9e3c4d8b4eb4b5b13be89aede1e12cc74489"


def test_a_key_stored_by_an_earlier_version_still_authenticates(db_session: Session) -> None:
    tenant_id = create_tenant(db_session, "Key store").id
    db_session.add(
        ApiKey(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            env="live",
            key_hash=PINNED_KEY_HASH,
            key_hint=PINNED_KEY[:12],
            scopes=["admin"],
        )
    )
    db_session.flush()

    principal = find_principal(db_session, PINNED_KEY)

    assert principal is not None
    assert (principal.tenant_id, principal.env) == (tenant_id, "live")
    assert find_principal(db_session, PINNED_KEY + "x") is None


# The auth cache


@pytest.fixture
def key_lookups(make_app: Any) -> Iterator[tuple[FlaskClient, list[str]]]:
    """A client on an app with a long auth-cache TTL, and the api_keys queries it makes.

    Its own app so the 1 s TTL of the shared one cannot expire between two requests.
    """
    app = make_app(auth_cache_ttl_seconds=60)
    engine = app.extensions["rewards"].engine
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "api_keys" in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield app.test_client(), statements
    event.remove(engine, "before_cursor_execute", record)


def test_cached_key_costs_no_database_round_trip(
    key_lookups: tuple[FlaskClient, list[str]], tenant: TenantKeys
) -> None:
    client, lookups = key_lookups
    for _ in range(3):
        assert_authenticated(client.get(operation_path(), headers=tenant.participant()))
    assert len(lookups) == 1


def test_unknown_key_is_cached_too_so_bad_keys_cannot_flood_the_database(
    key_lookups: tuple[FlaskClient, list[str]],
) -> None:
    client, lookups = key_lookups
    for _ in range(3):
        assert_unauthorized(client.get(operation_path(), headers={"X-API-Key": "bq_live_bad"}))
    assert len(lookups) == 1
