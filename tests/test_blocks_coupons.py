"""23blocks dialect, Coupons API: the reference's own examples, accepted and answered in
its shape, over the native coupons, their rules, redemptions and code generation."""

from __future__ import annotations

import csv
import io
import json
import time
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

SECTION = "Coupons API"
CREATE = endpoint_example(SECTION, "POST", "/v1/rewards/coupons")
VALIDATE = endpoint_example(SECTION, "POST", "/v1/rewards/coupons/validate")
REDEEM = endpoint_example(SECTION, "POST", "/v1/rewards/coupons/redeem")
GENERATE = endpoint_example(SECTION, "POST", "/v1/rewards/coupons/generate")
COUPON = object_example(SECTION, "Coupon")
# The Object example's coupon, open now (the document's summer window is in the past here).
SUMMER25 = {
    name: value
    for name, value in COUPON["data"]["attributes"].items()
    if name not in ("usage-count", "created-at", "starts-at", "expires-at")
}


def create(client: FlaskClient, tenant: TenantKeys, **changes: Any) -> Any:
    body = {"data": {"type": "coupon", "attributes": {**SUMMER25}}}
    body = with_attributes(body, **changes)
    response = send(client, "POST", "/v1/rewards/coupons", tenant.admin(), body)
    assert response.status_code == 201, response.json
    return response.json["data"]


def validate(client: FlaskClient, tenant: TenantKeys, **changes: Any) -> Any:
    body = with_attributes(VALIDATE["request"], **changes)
    return send(client, "POST", "/v1/rewards/coupons/validate", tenant.participant(), body)


def redeem(client: FlaskClient, tenant: TenantKeys, **changes: Any) -> Any:
    body = with_attributes(REDEEM["request"], **changes)
    return send(client, "POST", "/v1/rewards/coupons/redeem", tenant.participant(), body)


def test_the_documented_coupon_is_created_and_answered_as_the_coupon_object(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    documented = send(client, "POST", "/v1/rewards/coupons", tenant.admin(), CREATE["request"])
    # The object's attributes less the ones the engine keeps (usage-count, created-at).
    writable = {
        name: value
        for name, value in COUPON["data"]["attributes"].items()
        if name not in ("usage-count", "created-at")
    }
    summer = send(
        client,
        "POST",
        "/v1/rewards/coupons",
        tenant.admin(),
        {"data": {"type": "coupon", "attributes": writable}},
    )

    assert documented.status_code == 201, documented.json
    assert documented.mimetype == MEDIA_TYPE
    # Its conditions name no category: the documented list is empty here.
    no_categories = json.loads(json.dumps(COUPON))
    no_categories["data"]["attributes"]["conditions"]["categories"] = []
    assert_conforms(
        documented.json,
        no_categories,
        "/data/attributes/max-discount-amount",
        "/data/attributes/usage-limit",
        "/data/attributes/starts-at",
    )
    attributes = documented.json["data"]["attributes"]
    assert attributes["code"] == "NEWUSER20"
    assert attributes["name"] == "New User Welcome"
    assert attributes["conditions"] == {"categories": [], "new-customers-only": True}
    assert summer.status_code == 201, summer.json
    assert_conforms(summer.json, COUPON)
    assert summer.json["data"]["attributes"]["per-user-limit"] == 1
    assert summer.json["data"]["attributes"]["conditions"]["categories"] == ["summer-collection"]


def test_a_participant_key_cannot_create_a_coupon(client: FlaskClient, tenant: TenantKeys) -> None:
    response = send(client, "POST", "/v1/rewards/coupons", tenant.participant(), CREATE["request"])

    assert response.status_code == 403
    assert response.json["errors"][0]["status"] == "403"


def test_coupons_are_listed_by_the_documented_filters_and_search(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    create(client, tenant)
    create(client, tenant, code="WINTER10", name="Winter", expires_at="2030-01-01T00:00:00Z")
    create(client, tenant, code="OLDIE", name="Old", active=False)

    def listed(query: str) -> list[str]:
        response = send(client, "GET", "/v1/rewards/coupons" + query, tenant.admin())
        assert response.status_code == 200, response.json
        return sorted(item["attributes"]["code"] for item in response.json["data"])

    everything = send(client, "GET", "/v1/rewards/coupons?page[size]=2", tenant.admin())
    assert everything.json["meta"] == {"total-count": 3, "page-count": 2}
    assert_conforms(
        everything.json["data"][0],
        COUPON["data"],
        "/attributes/starts-at",
        "/attributes/expires-at",
    )
    assert listed("?filter[active]=true") == ["SUMMER25", "WINTER10"]
    assert listed("?filter[active]=false") == ["OLDIE"]
    # Coupons that never expire expire after any instant.
    assert listed("?filter[expires-after]=2031-01-01T00:00:00Z") == ["OLDIE", "SUMMER25"]
    assert listed("?search=wint") == ["WINTER10"]
    assert listed("?search=summer%20sale") == ["SUMMER25"]


def test_a_coupon_is_read_by_id_or_by_code_and_an_unknown_one_is_404(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    made = create(client, tenant)

    by_id = send(client, "GET", f"/v1/rewards/coupons/{made['id']}", tenant.admin())
    by_code = send(client, "GET", "/v1/rewards/coupons/summer25", tenant.admin())
    unknown = send(client, "GET", "/v1/rewards/coupons/NOPE", tenant.admin())

    assert by_id.status_code == by_code.status_code == 200
    assert by_id.json == by_code.json
    assert by_code.json["data"]["id"] == made["id"]
    assert unknown.status_code == 404
    assert unknown.json["errors"][0]["code"] == "invalid_coupon"


def test_the_documented_validation_is_answered_with_the_discount(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    create(client, tenant)

    response = validate(client, tenant)

    assert response.status_code == 200, response.json
    assert_conforms(response.json, VALIDATE["response"])
    attributes = response.json["data"]["attributes"]
    assert attributes["valid"] is True
    assert (attributes["discount-amount"], attributes["final-amount"]) == (18.75, 56.25)


def test_a_refused_validation_is_200_with_the_error_tables_code(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    create(client, tenant, usage_limit=1)
    create(client, tenant, code="GONE", expires_at="2026-01-01T00:00:00Z")
    assert redeem(client, tenant, user_id="someone-else", order_amount=75).status_code == 201

    used_up = validate(client, tenant)
    unknown = validate(client, tenant, code="NO-SUCH-CODE")
    expired = validate(client, tenant, code="GONE")

    assert used_up.status_code == unknown.status_code == expired.status_code == 200
    assert_conforms(used_up.json, VALIDATE["refusal"])
    assert used_up.json["data"]["attributes"]["valid"] is False
    assert used_up.json["data"]["attributes"]["error-code"] == "coupon_usage_limit"
    assert unknown.json["data"]["attributes"]["error-code"] == "invalid_coupon"
    assert expired.json["data"]["attributes"]["error-code"] == "coupon_expired"


def test_a_generated_code_used_once_validates_as_coupon_already_used(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    generated = send(
        client,
        "POST",
        "/v1/rewards/coupons/generate",
        tenant.admin(),
        with_attributes(GENERATE["request"], count=1, expires_at=None),
    )
    [code] = generated.json["data"]["attributes"]["sample-codes"]
    assert redeem(client, tenant, code=code, order_amount=20).status_code == 201

    response = validate(client, tenant, code=code, order_amount=20, items=None)

    assert response.json["data"]["attributes"]["error-code"] == "coupon_already_used"


def test_the_documented_redemption_is_recorded_once_per_order(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    # The documented redemption sends no order amount: a coupon with no minimum order.
    create(client, tenant, min_order_amount=None)

    first = send(
        client, "POST", "/v1/rewards/coupons/redeem", tenant.participant(), REDEEM["request"]
    )
    again = redeem(client, tenant)

    assert first.status_code == 201, first.json
    assert first.json["data"]["type"] == "coupon-redemption"
    attributes = first.json["data"]["attributes"]
    assert (attributes["code"], attributes["user-id"], attributes["order-id"]) == (
        "SUMMER25",
        "user-123",
        "order-456",
    )
    assert attributes["status"] == "redeemed"
    assert again.status_code == 201
    assert again.json["data"]["id"] == first.json["data"]["id"]
    coupon = send(client, "GET", "/v1/rewards/coupons/SUMMER25", tenant.admin())
    assert coupon.json["data"]["attributes"]["usage-count"] == 1


def test_a_refused_redemption_is_a_json_api_error_with_the_error_tables_code(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    create(client, tenant, usage_limit=1)
    assert redeem(client, tenant, order_amount=75).status_code == 201

    response = redeem(client, tenant, order_id="order-789", order_amount=75)
    unknown = redeem(client, tenant, code="NOPE", order_id="order-790")

    assert response.status_code == 400
    [error] = response.json["errors"]
    assert error["code"] == "coupon_usage_limit"
    assert error["title"] == "Coupon usage limit reached"
    assert unknown.json["errors"][0]["code"] == "invalid_coupon"


def test_the_documented_generation_makes_the_codes_and_its_download_url_lists_them(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    response = send(
        client, "POST", "/v1/rewards/coupons/generate", tenant.admin(), GENERATE["request"]
    )

    assert response.status_code == GENERATE["status"] == 201, response.json
    assert_conforms(response.json, GENERATE["response"])
    attributes = response.json["data"]["attributes"]
    assert attributes["campaign-id"] == "summer-2026"
    assert attributes["codes-generated"] == 1000
    assert len(attributes["sample-codes"]) == 3
    assert all(code.startswith("SUM26-") for code in attributes["sample-codes"])
    url = attributes["download-url"]
    assert url.endswith("/v1/rewards/coupons/download/summer-2026")

    download = client.get(url, headers=tenant.admin())
    assert download.status_code == 200
    assert download.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(download.get_data(as_text=True))))
    assert rows[0] == ["code", "used", "redemption_id"]
    assert len(rows) == 1001
    assert set(attributes["sample-codes"]) <= {row[0] for row in rows[1:]}


def test_a_campaign_downloads_the_codes_of_every_batch_generated_under_it(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    for count in (3, 4):
        body = with_attributes(GENERATE["request"], count=count)
        assert (
            send(client, "POST", "/v1/rewards/coupons/generate", tenant.admin(), body).status_code
            == 201
        )

    download = client.get("/v1/rewards/coupons/download/summer-2026", headers=tenant.admin())
    unknown = send(client, "GET", "/v1/rewards/coupons/download/no-campaign", tenant.admin())

    assert len(download.get_data(as_text=True).splitlines()) == 1 + 7
    assert unknown.status_code == 404
    assert unknown.json["errors"][0]["code"] == "campaign_not_found"


def test_a_generation_asked_async_is_202_and_its_operation_answers_the_document(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    body = with_attributes(GENERATE["request"], count=5)
    response = send(
        client, "POST", "/v1/rewards/coupons/generate", tenant.admin(), body, Prefer="respond-async"
    )

    assert response.status_code == 202, response.json
    location = response.headers["Location"]
    assert location.startswith("/v1/rewards/operations/")
    polled = worker_result(client, tenant, location)
    assert_conforms(polled, GENERATE["response"])
    assert polled["data"]["attributes"]["codes-generated"] == 5


def worker_result(client: FlaskClient, tenant: TenantKeys, location: str) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        polled = send(client, "GET", location, tenant.admin()).json
        if polled["data"]["attributes"]["status"] == "succeeded":
            return polled["data"]["attributes"]["result"]
        time.sleep(0.1)
    raise AssertionError("the generation did not finish")


def test_a_bad_attribute_is_a_422_pointing_at_it(client: FlaskClient, tenant: TenantKeys) -> None:
    response = send(
        client,
        "POST",
        "/v1/rewards/coupons",
        tenant.admin(),
        with_attributes(CREATE["request"], per_user_limit=0),
    )
    generation = send(
        client,
        "POST",
        "/v1/rewards/coupons/generate",
        tenant.admin(),
        with_attributes(GENERATE["request"], campaign_id="no/slashes"),
    )

    assert response.status_code == 422
    [error] = response.json["errors"]
    assert error["source"] == {"pointer": "/data/attributes/per-user-limit"}
    assert generation.status_code == 422
    assert generation.json["errors"][0]["source"] == {"pointer": "/data/attributes/campaign-id"}


def test_coupon_validations_are_capped_per_user_per_minute(
    make_app: Any, tenant: TenantKeys
) -> None:
    client = make_app(blocks_coupon_validations_per_minute=2).test_client()
    create(client, tenant)

    answers = [validate(client, tenant) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[2].json["errors"][0]["code"] == "rate_limit_exceeded"
