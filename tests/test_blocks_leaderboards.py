"""23blocks dialect, Leaderboards API: the reference's examples over the native
leaderboards, read through their Redis cache, every read taking the key's leaderboard-read
unit."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from app.clock import utcnow
from tests.blocks_contract import (
    assert_conforms,
    endpoint_example,
    object_example,
    send,
    with_attributes,
)
from tests.conftest import TenantKeys, WorkerProcess

SECTION = "Leaderboards API"
BOARD = endpoint_example(SECTION, "GET", "/v1/rewards/leaderboards/{leaderboard_id}")
RANK = endpoint_example(SECTION, "GET", "/v1/rewards/leaderboards/{leaderboard_id}/rank/{user_id}")
CREATE = endpoint_example(SECTION, "POST", "/v1/rewards/leaderboards")
OBJECT = object_example(SECTION, "Leaderboard")
# Users carry no display name or avatar here.
NO_PROFILE = ("/data/attributes/entries/*/display-name", "/data/attributes/entries/*/avatar-url")


def monthly_points_board(client: FlaskClient, tenant: TenantKeys) -> Any:
    """The document's leaderboard object, created with the document's request shape."""
    attributes = {
        name: value
        for name, value in OBJECT["data"]["attributes"].items()
        if name not in ("reset-day",)
    }
    body = with_attributes(CREATE["request"], **attributes)
    response = send(client, "POST", "/v1/rewards/leaderboards", tenant.admin(), body)
    assert response.status_code == 201, response.json
    return response


def award(client: FlaskClient, tenant: TenantKeys, user_id: str, amount: int) -> None:
    body = {"data": {"type": "points-award", "attributes": {"user-id": user_id, "amount": amount}}}
    response = send(client, "POST", "/v1/rewards/points/award", tenant.participant(), body)
    assert response.status_code == 201, response.json


def test_a_created_board_is_answered_as_the_leaderboard_object(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = monthly_points_board(client, tenant)

    assert_conforms(response.json, OBJECT)
    attributes = response.json["data"]["attributes"]
    assert (attributes["metric"], attributes["period"], attributes["reset-day"]) == (
        "points-earned",
        "monthly",
        1,
    )
    assert attributes["rewards"][0] == {"rank": 1, "prize": "1000 bonus points"}


def test_the_documented_referral_board_is_accepted_as_sent(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = send(client, "POST", "/v1/rewards/leaderboards", tenant.admin(), CREATE["request"])

    assert response.status_code == 201, response.json
    assert response.json["data"]["attributes"]["metric"] == "referral-count"


def test_the_board_lists_its_entries_with_their_prizes(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    board_id = monthly_points_board(client, tenant).json["data"]["id"]
    for user_id, amount in (("user-456", 15000), ("user-789", 12500), ("user-123", 10200)):
        award(client, tenant, user_id, amount)

    response = send(
        client, "GET", f"/v1/rewards/leaderboards/{board_id}?limit=3", tenant.participant()
    )

    assert response.status_code == 200, response.json
    assert_conforms(response.json, BOARD["response"], *NO_PROFILE)
    entries = response.json["data"]["attributes"]["entries"]
    assert [(e["rank"], e["user-id"], e["score"], e["prize"]) for e in entries] == [
        (1, "user-456", 15000, "1000 bonus points"),
        (2, "user-789", 12500, "500 bonus points"),
        (3, "user-123", 10200, "250 bonus points"),
    ]


def test_a_users_rank_is_answered_as_documented(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    board_id = monthly_points_board(client, tenant).json["data"]["id"]
    for user_id, amount in (("a", 300), ("b", 200), ("user-123", 150), ("c", 100), ("d", 50)):
        award(client, tenant, user_id, amount)

    response = send(
        client, "GET", f"/v1/rewards/leaderboards/{board_id}/rank/user-123", tenant.participant()
    )

    assert response.status_code == 200
    assert_conforms(response.json, RANK["response"])
    attributes = response.json["data"]["attributes"]
    assert (attributes["rank"], attributes["users-above"], attributes["users-below"]) == (3, 2, 2)
    assert (attributes["distance-to-next-rank"], attributes["percentile"]) == (50, 50.0)


def test_leaderboard_reads_are_capped_per_key(make_app: Any, tenant: TenantKeys) -> None:
    client = make_app(blocks_leaderboard_reads_per_minute=2).test_client()
    board_id = monthly_points_board(client, tenant).json["data"]["id"]
    path = f"/v1/rewards/leaderboards/{board_id}"

    answers = [send(client, "GET", path, tenant.participant()).status_code for _ in range(3)]
    ranked = send(client, "GET", path + "/rank/someone", tenant.participant())

    assert answers == [200, 200, 429]
    assert ranked.status_code == 429
    assert ranked.json["errors"][0]["code"] == "rate_limit_exceeded"


def test_an_unknown_board_is_a_404_leaderboard_not_found(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = send(
        client, "GET", "/v1/rewards/leaderboards/leaderboard-monthly", tenant.participant()
    )

    assert response.status_code == 404
    assert response.json["errors"][0]["code"] == "leaderboard_not_found"


def test_an_unknown_metric_is_a_422_pointing_at_it(client: FlaskClient, tenant: TenantKeys) -> None:
    body = with_attributes(CREATE["request"], metric="likes")

    response = send(client, "POST", "/v1/rewards/leaderboards", tenant.admin(), body)

    assert response.status_code == 422
    assert response.json["errors"][0]["source"] == {"pointer": "/data/attributes/metric"}


def test_the_documented_period_names_pick_a_monthly_boards_period(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    board_id = monthly_points_board(client, tenant).json["data"]["id"]
    award(client, tenant, "user-1", 40)
    path = f"/v1/rewards/leaderboards/{board_id}"
    this_month = utcnow().strftime("%Y-%m")

    current = send(client, "GET", path, tenant.participant())
    named = send(client, "GET", f"{path}?period={this_month}", tenant.participant())
    previous = send(client, "GET", f"{path}?period=previous", tenant.participant())
    not_a_month_start = send(client, "GET", f"{path}?period=2026-01-15", tenant.participant())

    assert current.json["data"]["attributes"]["period"] == this_month
    assert named.json == current.json | {
        "data": {
            **current.json["data"],
            "attributes": {
                **current.json["data"]["attributes"],
                "updated-at": named.json["data"]["attributes"]["updated-at"],
            },
        }
    }
    assert [e["score"] for e in current.json["data"]["attributes"]["entries"]] == [40]
    assert previous.json["data"]["attributes"]["entries"] == []
    assert previous.json["data"]["attributes"]["period"] < this_month
    assert not_a_month_start.status_code == 422
    assert not_a_month_start.json["errors"][0]["source"] == {"parameter": "period"}
