"""23blocks dialect, Tiers API: the reference's examples over the native tiers and tier
status (a tier's id is its native code, the document's slug)."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.blocks_contract import (
    MEDIA_TYPE,
    assert_conforms,
    endpoint_example,
    object_example,
    send,
    with_attributes,
)
from tests.conftest import TenantKeys, WorkerProcess

SECTION = "Tiers API"
LIST = endpoint_example(SECTION, "GET", "/v1/rewards/tiers")
CREATE = endpoint_example(SECTION, "POST", "/v1/rewards/tiers")
USER_TIER = endpoint_example(SECTION, "GET", "/v1/rewards/tiers/user/{user_id}")
SET_TIER = endpoint_example(SECTION, "PATCH", "/v1/rewards/tiers/user/{user_id}")
# The tier object's image: tiers carry none here.
NO_IMAGE = "/data/attributes/badge-image-url"


def create_ladder(client: FlaskClient, tenant: TenantKeys) -> None:
    """The document's listed tiers, created with the document's request shape."""
    for tier in LIST["response"]["data"]:
        slug = tier["id"].removeprefix("tier-")
        body = with_attributes(CREATE["request"], slug=slug, **tier["attributes"])
        response = send(client, "POST", "/v1/rewards/tiers", tenant.admin(), body)
        assert response.status_code == 201, response.json


def award(client: FlaskClient, tenant: TenantKeys, user_id: str, amount: int) -> None:
    body = {"data": {"type": "points-award", "attributes": {"user-id": user_id, "amount": amount}}}
    response = send(client, "POST", "/v1/rewards/points/award", tenant.participant(), body)
    assert response.status_code == 201, response.json


def test_the_documented_tier_is_created_and_answered_as_the_tier_object(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = send(client, "POST", "/v1/rewards/tiers", tenant.admin(), CREATE["request"])

    assert response.status_code == 201, response.json
    assert response.mimetype == MEDIA_TYPE
    assert_conforms(response.json, object_example(SECTION, "Tier"), NO_IMAGE)
    assert response.json["data"]["id"] == "diamond"
    assert response.json["data"]["attributes"]["points-multiplier"] == 3.0


def test_the_tiers_are_listed_lowest_first_with_their_member_counts(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    create_ladder(client, tenant)
    award(client, tenant, "u-silver", 1200)

    response = send(client, "GET", "/v1/rewards/tiers", tenant.participant())

    assert response.status_code == 200
    assert_conforms(response.json, LIST["response"])
    assert_conforms({"data": response.json["data"][0]}, object_example(SECTION, "Tier"), NO_IMAGE)
    assert [tier["id"] for tier in response.json["data"]] == [
        "bronze",
        "silver",
        "gold",
        "platinum",
    ]
    members = {tier["id"]: tier["attributes"]["member-count"] for tier in response.json["data"]}
    assert members == {"bronze": 0, "silver": 1, "gold": 0, "platinum": 0}


def test_a_users_tier_status_is_answered_as_documented(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    create_ladder(client, tenant)
    award(client, tenant, "user-123", 8500)

    response = send(client, "GET", "/v1/rewards/tiers/user/user-123", tenant.participant())

    assert response.status_code == 200
    # Lifetime qualification: the tier never lapses, so nothing is to be maintained.
    assert_conforms(
        response.json,
        USER_TIER["response"],
        "/data/attributes/tier-expires-at",
        "/data/attributes/points-to-maintain",
    )
    attributes = response.json["data"]["attributes"]
    assert attributes["current-tier"] == {"id": "gold", "name": "Gold", "level": 2}
    assert attributes["next-tier"]["id"] == "platinum"
    assert (attributes["points-to-next-tier"], attributes["progress-percentage"]) == (6500, 56.67)


def test_an_admin_sets_a_users_tier_by_the_tier_id_the_list_answers(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    create_ladder(client, tenant)
    award(client, tenant, "user-123", 10)
    body = with_attributes(SET_TIER["request"], tier_id="platinum")

    response = send(client, "PATCH", "/v1/rewards/tiers/user/user-123", tenant.admin(), body)

    assert response.status_code == 200, response.json
    assert response.json["data"]["type"] == "user-tier-status"
    assert response.json["data"]["attributes"]["current-tier"]["id"] == "platinum"


def test_an_unknown_tier_is_a_404_tier_not_found(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    award(client, tenant, "user-123", 10)

    response = send(
        client, "PATCH", "/v1/rewards/tiers/user/user-123", tenant.admin(), SET_TIER["request"]
    )

    assert response.status_code == 404
    [error] = response.json["errors"]
    assert (error["code"], error["title"]) == ("tier_not_found", "Tier doesn't exist")


def test_an_empty_tier_id_is_a_422_pointing_at_tier_id(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    body: Any = with_attributes(SET_TIER["request"], tier_id="")

    response = send(client, "PATCH", "/v1/rewards/tiers/user/user-123", tenant.admin(), body)

    assert response.status_code == 422
    assert response.json["errors"][0]["source"] == {"pointer": "/data/attributes/tier-id"}


def test_a_tier_slug_taken_is_a_409(client: FlaskClient, tenant: TenantKeys) -> None:
    send(client, "POST", "/v1/rewards/tiers", tenant.admin(), CREATE["request"])
    again = with_attributes(CREATE["request"], level=9)

    response = send(client, "POST", "/v1/rewards/tiers", tenant.admin(), again)

    assert response.status_code == 409
    assert response.json["errors"][0]["code"] == "tier_already_exists"
