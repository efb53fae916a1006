"""The 23blocks dialect as a whole: one engine and one set of data behind both dialects,
the same write path (idempotency, async answers, polling), its rate limits and its own
OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.blocks_contract import EXAMPLES, MEDIA_TYPE, endpoint_example, send, with_attributes
from tests.builders import claim, create_reward, wait_for
from tests.conftest import TenantKeys, WorkerProcess
from tests.contract.extract_blocks_examples import SEED, extract

AWARD = endpoint_example("Points API", "POST", "/v1/rewards/points/award")
GAMIFY = "/api/v1/gamify"


def blocks_award(client: FlaskClient, tenant: TenantKeys, **changes: Any) -> Any:
    body = with_attributes(AWARD["request"], **changes)
    return send(client, "POST", "/v1/rewards/points/award", tenant.participant(), body)


def test_points_awarded_in_one_dialect_are_claimed_in_the_other_and_one_history_shows_both(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    awarded = blocks_award(client, tenant, user_id="shopper", amount=1000)
    reward = create_reward(
        client, tenant.admin(), name="Tote bag", type="physical", points_cost=400
    )
    claimed = claim(client, tenant.participant(), reward["id"], "shopper", points_deduction=True)

    native = client.get(
        f"{GAMIFY}/participants/shopper/points/transactions", headers=tenant.participant()
    )
    blocks = send(client, "GET", "/v1/rewards/points/history/shopper", tenant.participant())
    balance = send(client, "GET", "/v1/rewards/points/balance/shopper", tenant.participant())

    assert awarded.status_code == 201, awarded.json
    assert claimed.status_code == 201, claimed.json
    assert [(entry["type"], entry["amount"]) for entry in native.json["transactions"]] == [
        ("claim", -400),
        ("award", 1000),
    ]
    assert [
        (entry["attributes"]["type"], entry["attributes"]["amount"])
        for entry in blocks.json["data"]
    ] == [("debit", 400), ("credit", 1000)]
    assert [entry["id"] for entry in blocks.json["data"]] == [
        entry["transaction_id"] for entry in native.json["transactions"]
    ]
    assert balance.json["data"]["attributes"]["available"] == 600


def test_an_idempotency_key_is_one_write_whichever_dialect_replays_it(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    headers = {**tenant.participant(), "Idempotency-Key": "cross-dialect-1"}
    body = with_attributes(AWARD["request"], user_id="twice", amount=70)
    first = send(client, "POST", "/v1/rewards/points/award", headers, body)
    again = send(client, "POST", "/v1/rewards/points/award", headers, body)
    other_body = with_attributes(AWARD["request"], user_id="twice", amount=71)
    reused = send(client, "POST", "/v1/rewards/points/award", headers, other_body)

    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert reused.status_code == 422
    assert reused.json["errors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"


def test_respond_async_answers_202_with_an_operation_to_poll_under_the_dialect(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    headers = {**tenant.participant(), "Prefer": "respond-async"}
    body = with_attributes(AWARD["request"], user_id="later", amount=40)
    accepted = send(client, "POST", "/v1/rewards/points/award", headers, body)

    assert accepted.status_code == 202
    assert accepted.json["data"]["type"] == "operation"
    location = accepted.headers["Location"]
    assert location == f"/v1/rewards/operations/{accepted.json['data']['id']}"
    finished = wait_for(
        lambda: send(client, "GET", location, tenant.participant()).json,
        lambda document: document["data"]["attributes"]["status"] == "succeeded",
        30,
        "the award to finish",
    )
    result = finished["data"]["attributes"]["result"]
    assert result["data"]["type"] == "points-transaction"
    assert result["data"]["attributes"]["balance-after"] == 40


def test_a_refused_write_polls_as_json_api_errors(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    deduct = endpoint_example("Points API", "POST", "/v1/rewards/points/deduct")
    headers = {**tenant.participant(), "Prefer": "respond-async"}
    accepted = send(client, "POST", "/v1/rewards/points/deduct", headers, deduct["request"])
    finished = wait_for(
        lambda: send(client, "GET", accepted.headers["Location"], tenant.participant()).json,
        lambda document: document["data"]["attributes"]["status"] == "failed",
        30,
        "the deduction to fail",
    )

    assert finished["data"]["attributes"]["errors"][0]["code"] == "insufficient_points"


def test_points_operations_are_capped_per_user_per_minute_with_retry_after(
    make_app: Any, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    app: Flask = make_app(blocks_points_per_minute=2)
    client = app.test_client()
    answers = [blocks_award(client, tenant, user_id="eager", amount=1) for _ in range(3)]
    other_user = blocks_award(client, tenant, user_id="calm", amount=1)

    assert [answer.status_code for answer in answers] == [201, 201, 429]
    assert answers[2].json["errors"][0]["code"] == "rate_limit_exceeded"
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert other_user.status_code == 201


def test_the_dialect_has_its_own_openapi_document_of_json_api_bodies(client: FlaskClient) -> None:
    spec = client.get("/v1/rewards/openapi.json").json
    native = client.get("/openapi.json").json

    award = spec["paths"]["/v1/rewards/points/award"]["post"]
    schema_ref = award["requestBody"]["content"][MEDIA_TYPE]["schema"]["$ref"]
    request_schema = spec["components"]["schemas"][schema_ref.rsplit("/", 1)[-1]]
    assert "data" in request_schema["properties"]
    assert "422" in award["responses"] and "201" in award["responses"]
    assert all(path.startswith("/v1/rewards/") for path in spec["paths"])
    assert not any(path.startswith("/v1/rewards/") for path in native["paths"])
    history = spec["paths"]["/v1/rewards/points/history/{user_id}"]["get"]
    assert {"page[number]", "page[size]", "filter[type]", "filter[from]"} <= {
        parameter["name"] for parameter in history["parameters"]
    }


def test_the_contract_examples_are_the_references_own() -> None:
    # CI checks out ../shared beside the project: the examples must be what it documents.
    assert extract(SEED.read_text()) == EXAMPLES


def test_every_endpoint_the_reference_documents_is_served(client: FlaskClient) -> None:
    served = {
        (method.upper(), path)
        for path, operations in client.get("/v1/rewards/openapi.json").json["paths"].items()
        for method in operations
    }
    documented = {
        (example["method"], example["path"])
        for section in EXAMPLES.values()
        for example in section["endpoints"]
    }

    assert len(documented) == 39
    assert documented - served == set()
