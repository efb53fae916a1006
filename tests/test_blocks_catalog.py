"""23blocks dialect, Rewards Catalog API: the reference's own examples, accepted and
answered in its shape, over the native rewards and claims."""

from __future__ import annotations

from typing import Any

import pytest
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

SECTION = "Rewards Catalog API"
LIST = endpoint_example(SECTION, "GET", "/v1/rewards/catalog")
CREATE = endpoint_example(SECTION, "POST", "/v1/rewards/catalog")
REDEEM = endpoint_example(SECTION, "POST", "/v1/rewards/catalog/redeem")
REDEMPTIONS = endpoint_example(SECTION, "GET", "/v1/rewards/catalog/redemptions/{user_id}")
REWARD = object_example(SECTION, "Reward")
# The documented catalog's three rewards, as created (open now: no window).
FIVE_OFF = {
    "name": "$5 Off Coupon",
    "slug": "reward-5-off",
    "points-cost": 500,
    "category": "discounts",
    "type": "fixed_discount",
    "value": 5.0,
}
FREE_SHIPPING = {
    "name": "Free Shipping",
    "slug": "free-shipping",
    "points-cost": 250,
    "category": "discounts",
    "type": "free_shipping",
}
T_SHIRT = {
    "name": "Branded T-Shirt",
    "slug": "tshirt",
    "points-cost": 2500,
    "category": "merchandise",
    "type": "physical_product",
    "inventory": 50,
}


def create(client: FlaskClient, tenant: TenantKeys, attributes: dict[str, Any]) -> Any:
    body = {"data": {"type": "reward", "attributes": attributes}}
    response = send(client, "POST", "/v1/rewards/catalog", tenant.admin(), body)
    assert response.status_code == 201, response.json
    return response.json["data"]


def award(client: FlaskClient, tenant: TenantKeys, user_id: str, amount: int) -> None:
    body = {"data": {"type": "points-award", "attributes": {"user-id": user_id, "amount": amount}}}
    response = send(client, "POST", "/v1/rewards/points/award", tenant.participant(), body)
    assert response.status_code == 201, response.json


def redeem(client: FlaskClient, tenant: TenantKeys, **changes: Any) -> Any:
    body = with_attributes(REDEEM["request"], **changes)
    return send(client, "POST", "/v1/rewards/catalog/redeem", tenant.participant(), body)


def test_the_documented_reward_is_created_and_answered_as_the_reward_object(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = send(client, "POST", "/v1/rewards/catalog", tenant.admin(), CREATE["request"])

    assert response.status_code == 201, response.json
    assert response.mimetype == MEDIA_TYPE
    # The VIP event has no face value.
    assert_conforms(response.json, REWARD, "/data/attributes/value")
    attributes = response.json["data"]["attributes"]
    assert attributes["type"] == "experience"
    assert (attributes["inventory"], attributes["redemption-limit"]) == (100, 1)
    assert attributes["available-until"] == "2026-09-01T00:00:00Z"


@pytest.mark.parametrize(
    ("document_type", "native_type"),
    [
        ("fixed_discount", "coupon"),
        ("percentage_discount", "coupon"),
        ("free_shipping", "coupon"),
        ("physical_product", "physical"),
        ("experience", "voucher"),
        ("gift_card", "digital"),
    ],
)
def test_a_rewards_document_type_maps_to_its_native_kind_and_is_answered_as_given(
    client: FlaskClient, tenant: TenantKeys, document_type: str, native_type: str
) -> None:
    made = create(client, tenant, {"name": "R", "points-cost": 1, "type": document_type})

    native = client.get(f"/api/v1/gamify/admin/rewards/{made['id']}", headers=tenant.admin())

    assert made["attributes"]["type"] == document_type
    assert native.json["type"] == native_type


def test_the_catalog_filters_and_sorts_by_the_documented_parameters(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    for attributes in (FIVE_OFF, FREE_SHIPPING, T_SHIRT):
        create(client, tenant, attributes)
    create(client, tenant, {**T_SHIRT, "name": "Sold out", "slug": "gone", "inventory": 0})

    def names(query: str) -> list[str]:
        response = send(client, "GET", "/v1/rewards/catalog" + query, tenant.participant())
        assert response.status_code == 200, response.json
        return [item["attributes"]["name"] for item in response.json["data"]]

    listed = send(client, "GET", "/v1/rewards/catalog?sort=-points-cost", tenant.participant())
    assert_conforms(listed.json["data"][2], LIST["response"]["data"][0], "/attributes/value")
    assert listed.json["meta"] == {"total-count": 4, "page-count": 1}
    # Equal costs: newest first.
    assert names("?sort=points-cost") == [
        "Free Shipping",
        "$5 Off Coupon",
        "Sold out",
        "Branded T-Shirt",
    ]
    assert names("?filter[category]=discounts&sort=points-cost") == [
        "Free Shipping",
        "$5 Off Coupon",
    ]
    assert names("?filter[max-points]=500&sort=-points-cost") == ["$5 Off Coupon", "Free Shipping"]
    assert "Sold out" not in names("?filter[available]=true")
    values = {item["attributes"]["name"]: item["attributes"] for item in listed.json["data"]}
    assert values["$5 Off Coupon"]["value"] == 5.0
    assert values["$5 Off Coupon"]["type"] == "fixed_discount"


def test_the_documented_redemption_spends_the_points_and_answers_its_fulfillment(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    create(client, tenant, FIVE_OFF)
    award(client, tenant, "user-123", 800)

    response = send(
        client, "POST", "/v1/rewards/catalog/redeem", tenant.participant(), REDEEM["request"]
    )

    assert response.status_code == REDEEM["status"] == 201, response.json
    # The reward sets no code expiry.
    assert_conforms(response.json, REDEEM["response"], "/data/attributes/fulfillment/expires-at")
    attributes = response.json["data"]["attributes"]
    assert attributes["reward-id"] != "reward-5-off"  # our id, found by the documented slug
    assert (attributes["points-spent"], attributes["status"]) == (500, "fulfilled")
    assert attributes["fulfillment"]["type"] == "coupon_code"
    assert attributes["fulfillment"]["code"]
    assert attributes["metadata"] == {"size": "L", "color": "blue"}
    balance = send(client, "GET", "/v1/rewards/points/balance/user-123", tenant.participant())
    assert balance.json["data"]["attributes"]["available"] == 300


def test_refused_redemptions_answer_the_error_tables_codes(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    five_off = create(client, tenant, FIVE_OFF)
    sold_out = create(client, tenant, {**T_SHIRT, "inventory": 0, "points-cost": 1})
    award(client, tenant, "user-123", 600)

    poor = redeem(client, tenant, user_id="user-poor")
    assert redeem(client, tenant).status_code == 201
    again = redeem(client, tenant, reward_id=five_off["id"])
    out = redeem(client, tenant, reward_id=sold_out["id"])
    unknown = redeem(client, tenant, reward_id="no-such-reward")

    assert poor.status_code == again.status_code == out.status_code == 400
    assert poor.json["errors"][0]["code"] == "insufficient_points"
    assert again.json["errors"][0]["code"] == "reward_limit_reached"
    assert out.json["errors"][0]["code"] == "reward_out_of_stock"
    assert unknown.status_code == 404
    assert unknown.json["errors"][0]["code"] == "reward_not_found"


def test_a_users_redemptions_are_listed_with_the_documented_meta(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    create(client, tenant, FIVE_OFF)
    create(client, tenant, FREE_SHIPPING)
    award(client, tenant, "user-123", 1000)
    assert redeem(client, tenant).status_code == 201
    assert redeem(client, tenant, reward_id="free-shipping").status_code == 201

    response = send(client, "GET", "/v1/rewards/catalog/redemptions/user-123", tenant.participant())

    assert response.status_code == 200
    # Not used yet.
    assert_conforms(response.json, REDEMPTIONS["response"], "/data/*/attributes/used-at")
    assert response.json["meta"] == {
        "total-redemptions": 2,
        "total-points-spent": 750,
        "page-count": 1,
    }
    assert [item["attributes"]["reward-name"] for item in response.json["data"]] == [
        "Free Shipping",
        "$5 Off Coupon",
    ]


def test_a_bad_attribute_is_a_422_pointing_at_it(client: FlaskClient, tenant: TenantKeys) -> None:
    response = send(
        client,
        "POST",
        "/v1/rewards/catalog",
        tenant.admin(),
        with_attributes(CREATE["request"], redemption_limit=0),
    )

    assert response.status_code == 422
    [error] = response.json["errors"]
    assert error["source"] == {"pointer": "/data/attributes/redemption-limit"}


def test_a_participant_key_cannot_add_a_reward(client: FlaskClient, tenant: TenantKeys) -> None:
    response = send(client, "POST", "/v1/rewards/catalog", tenant.participant(), CREATE["request"])

    assert response.status_code == 403
