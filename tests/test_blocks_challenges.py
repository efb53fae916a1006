"""23blocks dialect, Challenges API: the reference's challenge object created and listed,
joined through the native join operation, progress counted by actions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient

from api.blocks.challenges import time_remaining
from app.clock import utcnow
from tests.blocks_contract import (
    assert_conforms,
    endpoint_example,
    object_example,
    send,
    with_attributes,
)
from tests.conftest import TenantKeys, WorkerProcess

SECTION = "Challenges API"
OBJECT = object_example(SECTION, "Challenge")
JOIN = endpoint_example(SECTION, "POST", "/v1/rewards/challenges/{challenge_id}/join")
PROGRESS = endpoint_example(
    SECTION, "GET", "/v1/rewards/challenges/{challenge_id}/progress/{user_id}"
)
COUNTS = ("participants-count", "completions-count")


def challenge_body(**changes: Any) -> dict[str, Any]:
    """The document's challenge object as a request: its counts are the server's; its
    window moved around now so that it runs."""
    now = utcnow()
    attributes = {
        name: value for name, value in OBJECT["data"]["attributes"].items() if name not in COUNTS
    }
    body = {"data": {"type": "challenge", "attributes": attributes}}
    window = {
        "starts_at": (now - timedelta(days=1)).isoformat(),
        "ends_at": (now + timedelta(days=23, hours=14)).isoformat(),
    }
    return with_attributes(body, **{**window, **changes})


def create(client: FlaskClient, tenant: TenantKeys, **changes: Any) -> Any:
    response = send(
        client, "POST", "/v1/rewards/challenges", tenant.admin(), challenge_body(**changes)
    )
    assert response.status_code == 201, response.json
    return response


def purchase(client: FlaskClient, tenant: TenantKeys, user_id: str) -> None:
    action = {"participant_id": user_id, "action": "purchase"}
    answer = client.post("/api/v1/gamify/actions", json=action, headers=tenant.participant())
    assert answer.status_code == 201, answer.json


def test_the_documented_challenge_is_created_and_answered_as_the_challenge_object(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = create(client, tenant)

    assert_conforms(response.json, OBJECT)
    attributes = response.json["data"]["attributes"]
    assert attributes["reward"] == {"type": "points", "amount": 500}
    assert attributes["requires-enrollment"] is False
    assert attributes["active"] is True


def test_challenges_are_listed_with_a_users_progress_and_filtered_by_running(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    create(client, tenant)
    ended = utcnow() - timedelta(hours=1)
    create(
        client,
        tenant,
        name="Autumn",
        starts_at=(ended - timedelta(days=5)).isoformat(),
        ends_at=ended.isoformat(),
    )
    purchase(client, tenant, "user-123")

    listed = send(client, "GET", "/v1/rewards/challenges?filter[user-id]=user-123", tenant.admin())
    running = send(client, "GET", "/v1/rewards/challenges?filter[active]=true", tenant.admin())

    assert listed.status_code == 200
    assert_conforms({"data": listed.json["data"][0]}, OBJECT)
    progress = listed.json["data"][0]["attributes"]["progress"]
    assert (progress["current"], progress["target"]) == (1, 5)
    assert [c["attributes"]["name"] for c in running.json["data"]] == ["Winter Challenge"]


def test_a_join_and_the_progress_are_answered_as_documented(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    challenge_id = create(client, tenant, requires_enrollment=True).json["data"]["id"]
    path = f"/v1/rewards/challenges/{challenge_id}"

    before = send(client, "GET", f"{path}/progress/user-123", tenant.participant())
    joined = send(client, "POST", f"{path}/join", tenant.participant(), JOIN["request"])
    for _ in range(3):
        purchase(client, tenant, "user-123")
    response = send(client, "GET", f"{path}/progress/user-123", tenant.participant())

    assert before.status_code == 404
    [error] = before.json["errors"]
    assert (error["code"], error["title"]) == (
        "challenge_not_enrolled",
        "User not enrolled in challenge",
    )
    assert joined.status_code == 200, joined.json
    assert joined.json["data"]["type"] == "challenge-enrollment"
    assert response.status_code == 200
    assert_conforms(response.json, PROGRESS["response"])
    attributes = response.json["data"]["attributes"]
    assert (attributes["current"], attributes["progress-percentage"]) == (3, 60.0)
    assert attributes["time-remaining"].startswith("23 days ")


def test_joining_an_ended_challenge_is_a_400_challenge_ended(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    ended = utcnow() - timedelta(hours=1)
    challenge_id = create(
        client,
        tenant,
        starts_at=(ended - timedelta(days=5)).isoformat(),
        ends_at=ended.isoformat(),
    ).json["data"]["id"]

    response = send(
        client,
        "POST",
        f"/v1/rewards/challenges/{challenge_id}/join",
        tenant.participant(),
        JOIN["request"],
    )

    assert response.status_code == 400
    assert response.json["errors"][0]["code"] == "challenge_ended"


def test_an_unknown_challenge_is_a_404_challenge_not_found(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = send(
        client,
        "GET",
        "/v1/rewards/challenges/challenge-winter-2026/progress/user-123",
        tenant.participant(),
    )

    assert response.status_code == 404
    assert response.json["errors"][0]["code"] == "challenge_not_found"


def test_an_unknown_type_is_a_422_pointing_at_it(client: FlaskClient, tenant: TenantKeys) -> None:
    response = send(
        client, "POST", "/v1/rewards/challenges", tenant.admin(), challenge_body(type="visits")
    )

    assert response.status_code == 422
    assert response.json["errors"][0]["source"] == {"pointer": "/data/attributes/type"}


def test_time_remaining_reads_as_the_document_shows_it() -> None:
    assert time_remaining(23 * 86_400 + 14 * 3600 + 30 * 60) == "23 days 14:30:00"
    assert time_remaining(None) is None
