"""23blocks dialect, points rules: the reference's points-rule created as a native earning
rule, which then earns on actions as any native rule does."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.blocks_contract import endpoint_example, send, with_attributes
from tests.conftest import TenantKeys, WorkerProcess

RULE = endpoint_example("Points API", "POST", "/v1/rewards/points/rules")
PATH = "/v1/rewards/points/rules"
WEEKEND_ONLY = {"weekend": 1.5}


def create(client: FlaskClient, tenant: TenantKeys, **changes: Any) -> Any:
    return send(client, "POST", PATH, tenant.admin(), with_attributes(RULE["request"], **changes))


def test_the_documented_rule_is_accepted_as_sent(client: FlaskClient, tenant: TenantKeys) -> None:
    response = send(client, "POST", PATH, tenant.admin(), RULE["request"])

    assert response.status_code == 201, response.json
    assert response.json["data"]["attributes"]["multipliers"] == {"weekend": 1.5, "holiday": 2.0}


def test_a_created_rule_answers_the_documented_rule_shape(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = create(client, tenant, multipliers=WEEKEND_ONLY)

    assert response.status_code == 201, response.json
    assert response.json["data"]["type"] == "points-rule"
    documented = with_attributes(RULE["request"], multipliers=WEEKEND_ONLY)["data"]["attributes"]
    assert response.json["data"]["attributes"] == {
        **documented,
        "created-at": response.json["data"]["attributes"]["created-at"],
    }


def test_created_rules_are_listed(client: FlaskClient, tenant: TenantKeys) -> None:
    create(client, tenant, multipliers=WEEKEND_ONLY)
    create(client, tenant, name="Login Points", action="login", multipliers=WEEKEND_ONLY)

    response = send(client, "GET", PATH, tenant.admin())

    assert response.status_code == 200
    assert [rule["attributes"]["name"] for rule in response.json["data"]] == [
        "Purchase Points",
        "Login Points",
    ]
    assert response.json["meta"] == {"total-count": 2}


def test_the_rule_earns_by_its_formula_conditions_and_cap(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    create(client, tenant, multipliers=None, conditions={"min-amount": 10, "max-points": 100})
    actions = [
        {"participant_id": "u-rule", "action": "purchase", "properties": {"amount": a}}
        for a in (5, 20, 80)
    ]

    for action in actions:
        answer = client.post("/api/v1/gamify/actions", json=action, headers=tenant.participant())
        assert answer.status_code == 201, answer.json
    balance = send(client, "GET", "/v1/rewards/points/balance/u-rule", tenant.participant())

    # 5 is under the minimum; 20 earns 40; 80 earns 160, capped at 100.
    assert balance.json["data"]["attributes"]["available"] == 140


def test_a_formula_that_does_not_compile_is_a_422_at_points_formula(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = create(client, tenant, points_formula="amount *", multipliers=WEEKEND_ONLY)

    assert response.status_code == 422
    [error] = response.json["errors"]
    assert error["source"] == {"pointer": "/data/attributes/points-formula"}


def test_a_participant_key_cannot_create_rules(client: FlaskClient, tenant: TenantKeys) -> None:
    response = send(client, "POST", PATH, tenant.participant(), RULE["request"])

    assert response.status_code == 403
    assert response.json["errors"][0]["code"]
