"""Small builders for test data, shared by the test modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from flask.testing import FlaskClient
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session, sessionmaker

from app.models import Environment, WebhookEndpoint
from app.operation_kinds import OperationKind, register_kind, unregister_kind
from app.points.awards import award_points
from app.points.items import AwardItem
from app.webhooks.signing import generate_secret

GAMIFY = "/api/v1/gamify"

T = TypeVar("T")


def create_reward(
    client: FlaskClient, admin_headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"name": "10% Off Coupon", "type": "coupon", **fields}
    response = client.post(f"{GAMIFY}/admin/rewards", json=body, headers=admin_headers)
    assert response.status_code == 201, response.json
    return dict(response.json)


def create_earning_rule(
    client: FlaskClient, admin_headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"name": "Purchase points", "action": "purchase", "formula": "amount / 10", **fields}
    response = client.post(f"{GAMIFY}/admin/earning-rules", json=body, headers=admin_headers)
    assert response.status_code == 201, response.json
    return dict(response.json)


def create_streak(
    client: FlaskClient, admin_headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"streak_type": "daily-login", "name": "Daily login", "action": "login", **fields}
    response = client.post(f"{GAMIFY}/admin/streaks", json=body, headers=admin_headers)
    assert response.status_code == 201, response.json
    return dict(response.json)


def create_badge(
    client: FlaskClient, admin_headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"name": "First purchase", "criteria": {"type": "manual"}, **fields}
    response = client.post(f"{GAMIFY}/admin/badges", json=body, headers=admin_headers)
    assert response.status_code == 201, response.json
    return dict(response.json)


def create_challenge(
    client: FlaskClient, admin_headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {
        "name": "Five purchases",
        "type": "action_count",
        "action": "purchase",
        "target": 5,
        **fields,
    }
    response = client.post(f"{GAMIFY}/admin/challenges", json=body, headers=admin_headers)
    assert response.status_code == 201, response.json
    return dict(response.json)


def create_leaderboard(
    client: FlaskClient, admin_headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"name": "Top earners", "metric": "points_earned", **fields}
    response = client.post(f"{GAMIFY}/admin/leaderboards", json=body, headers=admin_headers)
    assert response.status_code == 201, response.json
    return dict(response.json)


def create_coupon(
    client: FlaskClient, admin_headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"discount_type": "percentage", "discount_value": 10, **fields}
    response = client.post(f"{GAMIFY}/admin/coupons", json=body, headers=admin_headers)
    assert response.status_code == 201, response.json
    return dict(response.json)


def redeem_coupon(
    client: FlaskClient,
    headers: dict[str, str],
    code: str,
    participant_id: str,
    order_id: str,
    **fields: Any,
) -> Any:
    body = {"code": code, "participant_id": participant_id, "order_id": order_id, **fields}
    return client.post(f"{GAMIFY}/coupons/redeem", json=body, headers=headers)


def upload_codes(
    client: FlaskClient, admin_headers: dict[str, str], reward_id: str, codes: list[str]
) -> dict[str, Any]:
    response = client.post(
        f"{GAMIFY}/admin/rewards/{reward_id}/codes", json={"codes": codes}, headers=admin_headers
    )
    assert response.status_code == 200, response.json
    return dict(response.json)


def fund_participant(
    session_factory: sessionmaker[Session],
    tenant_id: uuid.UUID,
    participant_id: str,
    amount: int,
    env: Environment = Environment.LIVE,
) -> None:
    """Give a participant points through the award pass (committed), as an award would."""
    with session_factory.begin() as session:
        award_points(
            session, tenant_id, env.value, [AwardItem(participant_id, amount)], operation_id=None
        )


def claim(
    client: FlaskClient,
    headers: dict[str, str],
    reward_id: str,
    participant_id: str,
    *,
    idempotency_key: str | None = None,
    points_deduction: bool = False,
    prefer_async: bool = False,
) -> Any:
    request_headers = dict(headers)
    if idempotency_key is not None:
        request_headers["Idempotency-Key"] = idempotency_key
    if prefer_async:
        request_headers["Prefer"] = "respond-async"
    return client.post(
        f"{GAMIFY}/rewards/{reward_id}/claim",
        json={"participant_id": participant_id, "points_deduction": points_deduction},
        headers=request_headers,
    )


def wait_for_operation(
    client: FlaskClient, headers: dict[str, str], operation_id: str, timeout: float = 60
) -> dict[str, Any]:
    """The operation's view once it has finished (succeeded or failed)."""
    view = wait_for(
        lambda: client.get(f"{GAMIFY}/operations/{operation_id}", headers=headers).json,
        lambda view: view["status"] in ("succeeded", "failed"),
        timeout,
        f"operation {operation_id} to finish",
    )
    return dict(view)


def final_answer(
    client: FlaskClient, headers: dict[str, str], response: Any, success_status: int = 201
) -> tuple[int, dict[str, Any]]:
    """A write's answer: as given, or, for a 202 (the worker slower than the wait), its
    operation's once polled to the end."""
    if response.status_code != 202:
        return response.status_code, dict(response.json)
    finished = wait_for_operation(client, headers, response.json["operation_id"])
    if finished["status"] == "succeeded":
        return success_status, finished["result"]
    return finished["error"]["status"], finished["error"]


def run_ledger_verify(service_env: dict[str, str], *arguments: str) -> tuple[int, Any]:
    """`rewards ledger verify` as an operator runs it: exit code and its JSON report."""
    completed = subprocess.run(
        [sys.executable, "-m", "app.cli", "ledger", "verify", *arguments],
        env={**os.environ, **service_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return completed.returncode, json.loads(completed.stdout)


def add_webhook_endpoint(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    events: list[str],
    *,
    enabled: bool = True,
    failing_since: datetime | None = None,
) -> WebhookEndpoint:
    """An endpoint row as the admin API would store it, for tests below the API."""
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        env=env,
        url="http://127.0.0.1:9/hooks",
        events=events,
        enabled=enabled,
        disabled_reason=None if enabled else "manual",
        secret=generate_secret(),
        failing_since=failing_since,
    )
    session.add(endpoint)
    session.flush()
    return endpoint


def participants_with_events_to_dispatch(session: Session, tenant_id: uuid.UUID) -> set[str]:
    """The participants whose outbox events of this tenant wait for the dispatcher (the
    others were stored already dispatched, or were dispatched)."""
    return set(
        session.execute(
            text(
                "SELECT DISTINCT payload ->> 'participant_id' FROM outbox_events"
                " WHERE tenant_id = :tenant_id AND dispatched_at IS NULL"
            ),
            {"tenant_id": tenant_id},
        ).scalars()
    )


def http_json(
    method: str, url: str, key: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """One JSON request to a live server: (status, parsed body), errors included."""
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(
    fetch: Callable[[], T],
    until: Callable[[T], bool],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
) -> T:
    """The suite's one poller: calls `fetch()` until `until(value)` holds and returns that
    value; after `timeout` seconds fails naming `what` and the last value seen. It sleeps
    only between polls, `interval` seconds (0: poll again at once)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last seen: {value!r:.2000})")
        time.sleep(interval)


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, *, interval: float = 0.05
) -> None:
    """`wait_for` a predicate to hold."""
    wait_for(predicate, bool, timeout, what, interval=interval)


def service_connections_waiting_on_a_lock(connection: Connection | Session) -> int:
    """How many of the service's database connections (web or worker) wait on a lock."""
    return int(
        connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database() AND application_name LIKE 'rewards-engine%'"
            )
        ).scalar_one()
    )


@contextmanager
def registered_kinds(*kinds: OperationKind) -> Iterator[None]:
    """Test-only operation kinds, registered for the duration and removed afterwards, so
    the registry the service runs with holds only its own kinds outside the block."""
    for kind in kinds:
        register_kind(kind)
    try:
        yield
    finally:
        for kind in kinds:
            unregister_kind(kind)
