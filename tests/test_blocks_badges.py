"""23blocks dialect, Badges API: the reference's examples over the native badges (awarded
by hand through the native badge award operation, progress counted by actions)."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.blocks_contract import (
    assert_conforms,
    endpoint_example,
    object_example,
    send,
    with_attributes,
)
from tests.conftest import TenantKeys, WorkerProcess

SECTION = "Badges API"
LIST = endpoint_example(SECTION, "GET", "/v1/rewards/badges")
CREATE = endpoint_example(SECTION, "POST", "/v1/rewards/badges")
AWARD = endpoint_example(SECTION, "POST", "/v1/rewards/badges/award")
USER_BADGES = endpoint_example(SECTION, "GET", "/v1/rewards/badges/user/{user_id}")
PROGRESS = endpoint_example(SECTION, "GET", "/v1/rewards/badges/{badge_id}/progress/{user_id}")


def create(client: FlaskClient, tenant: TenantKeys, **changes: Any) -> Any:
    body = with_attributes(CREATE["request"], **changes)
    response = send(client, "POST", "/v1/rewards/badges", tenant.admin(), body)
    assert response.status_code == 201, response.json
    return response.json["data"]


def award(client: FlaskClient, tenant: TenantKeys, badge_id: str) -> Any:
    body = with_attributes(AWARD["request"], badge_id=badge_id)
    return send(client, "POST", "/v1/rewards/badges/award", tenant.participant(), body)


def test_the_documented_badge_is_created_and_answered_as_the_badge_object(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = send(client, "POST", "/v1/rewards/badges", tenant.admin(), CREATE["request"])

    assert response.status_code == 201, response.json
    assert_conforms(response.json, object_example(SECTION, "Badge"))
    attributes = response.json["data"]["attributes"]
    assert (attributes["slug"], attributes["rarity"]) == ("super-shopper", "rare")
    assert attributes["conditions"] == {"action": "purchase", "count": 50}


def test_badges_are_listed_and_filtered_by_category_and_rarity(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    for listed in LIST["response"]["data"]:
        create(client, tenant, slug=listed["id"].removeprefix("badge-"), **listed["attributes"])

    everything = send(client, "GET", "/v1/rewards/badges", tenant.participant())
    uncommon = send(client, "GET", "/v1/rewards/badges?filter[rarity]=uncommon", tenant.admin())
    milestones = send(
        client, "GET", "/v1/rewards/badges?filter[category]=milestones", tenant.admin()
    )

    assert everything.status_code == 200
    assert_conforms(everything.json, LIST["response"])
    assert [badge["attributes"]["name"] for badge in uncommon.json["data"]] == ["Week Warrior"]
    assert [badge["attributes"]["name"] for badge in milestones.json["data"]] == ["First Purchase"]


def test_an_award_is_answered_as_documented_and_counted_once(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    badge_id = create(client, tenant)["id"]

    response = award(client, tenant, badge_id)
    again = award(client, tenant, badge_id)

    assert response.status_code == 201, response.json
    assert_conforms(response.json, AWARD["response"])
    assert response.json["data"]["attributes"]["points-awarded"] == 500
    assert again.status_code == 409
    [error] = again.json["errors"]
    assert (error["code"], error["title"]) == (
        "badge_already_awarded",
        "User already has this badge",
    )
    listed = send(client, "GET", "/v1/rewards/badges", tenant.participant())
    assert listed.json["data"][0]["attributes"]["unlock-count"] == 1


def test_a_users_badges_carry_the_documented_totals(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    first = create(client, tenant, points_reward=50)["id"]
    second = create(client, tenant, slug="week-warrior", points_reward=100)["id"]
    award(client, tenant, first)
    award(client, tenant, second)

    response = send(client, "GET", "/v1/rewards/badges/user/user-123", tenant.participant())

    assert response.status_code == 200
    assert_conforms(response.json, USER_BADGES["response"])
    assert response.json["meta"] == {"total-badges": 2, "total-points-from-badges": 150}


def test_progress_counts_the_users_actions_toward_the_badge(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    badge_id = create(client, tenant)["id"]
    for _ in range(2):
        action = {"participant_id": "user-456", "action": "purchase"}
        answer = client.post("/api/v1/gamify/actions", json=action, headers=tenant.participant())
        assert answer.status_code == 201, answer.json

    response = send(
        client, "GET", f"/v1/rewards/badges/{badge_id}/progress/user-456", tenant.participant()
    )

    assert response.status_code == 200
    # No completion is estimated.
    assert_conforms(response.json, PROGRESS["response"], "/data/attributes/estimated-completion")
    attributes = response.json["data"]["attributes"]
    assert (attributes["current-count"], attributes["target-count"]) == (2, 50)
    assert (attributes["progress-percentage"], attributes["earned"]) == (4.0, False)


def test_an_unknown_badge_is_a_404_badge_not_found(client: FlaskClient, tenant: TenantKeys) -> None:
    response = award(client, tenant, "badge-super-shopper")

    assert response.status_code == 404
    assert response.json["errors"][0]["code"] == "badge_not_found"


def test_an_unknown_rarity_is_a_422_pointing_at_it(client: FlaskClient, tenant: TenantKeys) -> None:
    body = with_attributes(CREATE["request"], rarity="mythic")

    response = send(client, "POST", "/v1/rewards/badges", tenant.admin(), body)

    assert response.status_code == 422
    assert response.json["errors"][0]["source"] == {"pointer": "/data/attributes/rarity"}


def test_badge_awards_are_capped_per_user_per_minute(
    make_app: Any, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    client = make_app(blocks_badge_awards_per_minute=1).test_client()
    first, second = (
        create(client, tenant, slug="one")["id"],
        create(client, tenant, slug="two")["id"],
    )

    answers = [award(client, tenant, badge_id) for badge_id in (first, second)]

    assert [answer.status_code for answer in answers] == [201, 429]
    assert answers[1].json["errors"][0]["code"] == "rate_limit_exceeded"
    assert "Retry-After" in answers[1].headers
