"""23blocks dialect, Points API: the reference's own examples, accepted and answered in its
shape, over the native points operations."""

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

SECTION = "Points API"
AWARD = endpoint_example(SECTION, "POST", "/v1/rewards/points/award")
DEDUCT = endpoint_example(SECTION, "POST", "/v1/rewards/points/deduct")
BALANCE = endpoint_example(SECTION, "GET", "/v1/rewards/points/balance/{user_id}")
HISTORY = endpoint_example(SECTION, "GET", "/v1/rewards/points/history/{user_id}")


def award(client: FlaskClient, tenant: TenantKeys, **changes: Any) -> Any:
    body = with_attributes(AWARD["request"], **changes)
    return send(client, "POST", "/v1/rewards/points/award", tenant.participant(), body)


def test_the_documented_award_is_accepted_and_answered_as_documented(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    response = award(client, tenant)

    assert response.status_code == AWARD["status"] == 201, response.json
    assert response.mimetype == MEDIA_TYPE
    assert_conforms(response.json, AWARD["response"])
    assert_conforms(response.json, object_example(SECTION, "Points"))
    attributes = response.json["data"]["attributes"]
    assert attributes["user-id"] == "user-123"
    assert attributes["amount"] == 150
    assert attributes["type"] == "credit"
    assert attributes["balance-after"] == 150
    assert attributes["metadata"] == {"order-id": "order-456"}


def test_an_award_replayed_with_its_idempotency_key_is_one_award(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    first = award(client, tenant, user_id="u-replay")
    body = with_attributes(AWARD["request"], user_id="u-replay")
    headers = {**tenant.participant(), "Idempotency-Key": "order-456-points"}
    once = send(client, "POST", "/v1/rewards/points/award", headers, body)
    again = send(client, "POST", "/v1/rewards/points/award", headers, body)

    assert first.status_code == once.status_code == again.status_code == 201
    assert again.json == once.json
    assert once.json["data"]["attributes"]["balance-after"] == 300


def test_the_documented_deduction_is_accepted_and_answered_as_a_debit(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    award(client, tenant, amount=800)
    response = send(
        client, "POST", "/v1/rewards/points/deduct", tenant.participant(), DEDUCT["request"]
    )

    assert response.status_code == 201, response.json
    # A debit earns nothing by an action and never expires.
    assert_conforms(
        response.json, AWARD["response"], "/data/attributes/action", "/data/attributes/expires-at"
    )
    attributes = response.json["data"]["attributes"]
    assert (attributes["type"], attributes["amount"], attributes["balance-after"]) == (
        "debit",
        500,
        300,
    )
    assert attributes["metadata"] == {
        "reason": "reward_redemption",
        "reference-id": "redemption-789",
    }


def test_a_deduction_beyond_the_balance_is_a_json_api_insufficient_points_error(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    response = send(
        client, "POST", "/v1/rewards/points/deduct", tenant.participant(), DEDUCT["request"]
    )

    assert response.status_code == 400
    assert response.mimetype == MEDIA_TYPE
    [error] = response.json["errors"]
    assert error["code"] == "insufficient_points"
    assert error["status"] == "400"
    assert error["title"] and error["detail"]


def test_the_balance_is_answered_with_every_documented_field(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    award(client, tenant, amount=2000, expires_in_days=10)
    response = send(client, "GET", "/v1/rewards/points/balance/user-123", tenant.participant())

    assert response.status_code == 200
    assert_conforms(response.json, BALANCE["response"])
    attributes = response.json["data"]["attributes"]
    assert attributes["available"] == attributes["total-earned"] == 2000
    assert attributes["expiring-soon"] == 2000


def test_the_history_pages_and_filters_by_the_documented_parameters(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    for amount in (10, 20, 30):
        award(client, tenant, amount=amount)
    award(client, tenant, amount=5, action="login")
    send(
        client,
        "POST",
        "/v1/rewards/points/deduct",
        tenant.participant(),
        with_attributes(DEDUCT["request"], amount=7),
    )
    path = "/v1/rewards/points/history/user-123"

    page = send(client, "GET", path + "?page[number]=2&page[size]=2", tenant.participant())
    credits = send(client, "GET", path + "?filter[type]=credit", tenant.participant())
    logins = send(client, "GET", path + "?filter[action]=login", tenant.participant())

    assert page.status_code == 200
    assert_conforms(page.json, HISTORY["response"])
    assert page.json["meta"] == {"total-count": 5, "page-count": 3}
    assert [entry["attributes"]["amount"] for entry in page.json["data"]] == [30, 20]
    assert [entry["attributes"]["amount"] for entry in credits.json["data"]] == [5, 30, 20, 10]
    assert [entry["attributes"]["amount"] for entry in logins.json["data"]] == [5]


def test_a_bad_attribute_is_a_422_pointing_at_it(client: FlaskClient, tenant: TenantKeys) -> None:
    response = award(client, tenant, amount="150")

    assert response.status_code == 422
    [error] = response.json["errors"]
    assert error["code"] == "validation_error"
    assert error["source"] == {"pointer": "/data/attributes/amount"}


def test_a_document_of_another_type_is_refused_at_data_type(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    body = {**AWARD["request"], "data": {**AWARD["request"]["data"], "type": "points-deduction"}}
    response = send(client, "POST", "/v1/rewards/points/award", tenant.participant(), body)

    assert response.status_code == 422
    assert response.json["errors"][0]["source"] == {"pointer": "/data/type"}


def test_plain_json_is_accepted_too(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    response = client.post(
        "/v1/rewards/points/award", json=AWARD["request"], headers=tenant.participant()
    )

    assert response.status_code == 201, response.json


def test_an_unknown_path_under_the_dialect_answers_a_json_api_404(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = send(client, "GET", "/v1/rewards/nothing-here", tenant.participant())

    assert response.status_code == 404
    assert response.json["errors"][0]["code"] == "not_found"


def test_a_missing_key_is_a_json_api_401(client: FlaskClient) -> None:
    response = send(client, "GET", "/v1/rewards/points/balance/user-123", {})

    assert response.status_code == 401
    assert response.json["errors"][0]["code"] == "unauthorized"
