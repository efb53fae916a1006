"""23blocks dialect, Streaks API: the reference's examples over the native streaks (a
record is the native streak record operation)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask.testing import FlaskClient

from api.blocks.streaks import time_remaining
from tests.blocks_contract import (
    assert_conforms,
    endpoint_example,
    object_example,
    send,
    with_attributes,
)
from tests.conftest import TenantKeys, WorkerProcess

SECTION = "Streaks API"
GET = endpoint_example(SECTION, "GET", "/v1/rewards/streaks/{user_id}/{streak_type}")
RECORD = endpoint_example(SECTION, "POST", "/v1/rewards/streaks/record")
CONFIG = endpoint_example(SECTION, "POST", "/v1/rewards/streaks/config")


def configure(client: FlaskClient, tenant: TenantKeys, **changes: Any) -> Any:
    body = with_attributes(CONFIG["request"], **changes)
    response = send(client, "POST", "/v1/rewards/streaks/config", tenant.admin(), body)
    assert response.status_code == 201, response.json
    return response


def record(client: FlaskClient, tenant: TenantKeys) -> Any:
    return send(
        client, "POST", "/v1/rewards/streaks/record", tenant.participant(), RECORD["request"]
    )


def test_the_documented_config_is_accepted_and_answered_with_its_attributes(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = configure(client, tenant)

    assert_conforms(response.json, {"data": {"id": "", **CONFIG["request"]["data"]}})
    assert response.json["data"]["attributes"]["action"] == "daily-purchase"
    again = send(client, "POST", "/v1/rewards/streaks/config", tenant.admin(), CONFIG["request"])
    assert again.status_code == 409
    assert again.json["errors"][0]["code"] == "streak_already_exists"


def test_the_documented_record_is_answered_as_a_streak_update(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    configure(client, tenant, streak_type="daily-login", milestones=[{"days": 1, "points": 25}])

    response = record(client, tenant)

    assert response.status_code == RECORD["status"] == 200, response.json
    assert response.json["data"]["type"] == "streak-update"
    assert_conforms(response.json, RECORD["response"])
    attributes = response.json["data"]["attributes"]
    assert (attributes["previous-streak"], attributes["current-streak"]) == (0, 1)
    assert (attributes["milestone-reached"], attributes["bonus-points"]) == (1, 25)


def test_a_users_streak_is_answered_as_documented(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    milestones = [{"days": 1, "points": 25}, {"days": 3, "points": 100}]
    configure(client, tenant, streak_type="daily-login", milestones=milestones)
    assert record(client, tenant).status_code == 200

    response = send(client, "GET", "/v1/rewards/streaks/user-123/daily-login", tenant.participant())

    assert response.status_code == 200
    assert_conforms(response.json, GET["response"])
    assert_conforms(response.json, object_example(SECTION, "Streak"))
    attributes = response.json["data"]["attributes"]
    assert (attributes["current-streak"], attributes["next-milestone"]) == (1, 3)
    assert (attributes["days-to-milestone"], attributes["rewards-earned"]) == (2, 25)
    assert attributes["milestones-reached"] == [1]


def test_a_streak_not_configured_is_a_404_streak_not_active(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    recorded = record(client, tenant)
    read = send(client, "GET", "/v1/rewards/streaks/user-123/daily-login", tenant.participant())

    for response in (recorded, read):
        assert response.status_code == 404
        [error] = response.json["errors"]
        assert (error["code"], error["title"]) == (
            "streak_not_active",
            "No active streak for this type",
        )


def test_a_bad_period_is_a_422_pointing_at_it(client: FlaskClient, tenant: TenantKeys) -> None:
    body = with_attributes(CONFIG["request"], period="hourly")

    response = send(client, "POST", "/v1/rewards/streaks/config", tenant.admin(), body)

    assert response.status_code == 422
    assert response.json["errors"][0]["source"] == {"pointer": "/data/attributes/period"}


def test_time_remaining_counts_hours_past_a_day() -> None:
    now = datetime(2026, 1, 2, 8, 30, 27, tzinfo=UTC)

    assert time_remaining(datetime(2026, 1, 3, 23, 59, 59, tzinfo=UTC), now) == "39:29:32"
    assert time_remaining(None, now) is None
