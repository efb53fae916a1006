"""23blocks dialect, Referrals API: the reference's own examples, accepted and answered in
its shape, over the native referral program, codes, tracking and completion; the
configuration's minimum amount and expiration apply, and the referee's e-mail is kept."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, update
from sqlalchemy.orm import Session, sessionmaker

from app.models import Referral
from tests.blocks_contract import (
    MEDIA_TYPE,
    assert_conforms,
    endpoint_example,
    object_example,
    send,
    with_attributes,
)
from tests.conftest import TenantKeys, WorkerProcess

SECTION = "Referrals API"
CODE = endpoint_example(SECTION, "GET", "/v1/rewards/referrals/code/{user_id}")
TRACK = endpoint_example(SECTION, "POST", "/v1/rewards/referrals/track")
COMPLETE = endpoint_example(SECTION, "POST", "/v1/rewards/referrals/complete")
LIST = endpoint_example(SECTION, "GET", "/v1/rewards/referrals/user/{user_id}")
CONFIG = endpoint_example(SECTION, "POST", "/v1/rewards/referrals/config")
REFERRAL = object_example(SECTION, "Referral")


def configure(client: FlaskClient, tenant: TenantKeys, **changes: Any) -> Any:
    body = with_attributes(CONFIG["request"], **changes)
    response = send(client, "POST", "/v1/rewards/referrals/config", tenant.admin(), body)
    assert response.status_code == 200, response.json
    return response.json


def code_of(client: FlaskClient, tenant: TenantKeys, user_id: str) -> str:
    response = send(client, "GET", f"/v1/rewards/referrals/code/{user_id}", tenant.participant())
    return str(response.json["data"]["attributes"]["code"])


def track(client: FlaskClient, tenant: TenantKeys, **changes: Any) -> Any:
    body = with_attributes(TRACK["request"], **changes)
    return send(client, "POST", "/v1/rewards/referrals/track", tenant.participant(), body)


def complete(client: FlaskClient, tenant: TenantKeys, referral_id: str, **changes: Any) -> Any:
    body = with_attributes(COMPLETE["request"], referral_id=referral_id, **changes)
    return send(client, "POST", "/v1/rewards/referrals/complete", tenant.participant(), body)


def test_the_documented_configuration_is_accepted_and_answers_what_the_engine_applies(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    answer = configure(client, tenant)

    attributes = answer["data"]["attributes"]
    assert answer["data"]["type"] == "referral-config"
    assert attributes["referrer-reward"] == {"type": "points", "amount": 500}
    # The engine pays points only: the documented referee discount pays nothing.
    assert attributes["referee-reward"] == {"type": "points", "amount": 0}
    assert attributes["qualifying-action"] == "first_purchase"
    assert attributes["min-qualifying-amount"] == 25.0
    assert attributes["expiration-days"] == 30
    native = client.get("/api/v1/gamify/admin/referral-program", headers=tenant.admin()).json
    assert (native["min_qualifying_amount"], native["expiration_days"]) == (25.0, 30)
    points = configure(client, tenant, referee_reward={"type": "points", "amount": 100})
    assert points["data"]["attributes"]["referee-reward"] == {"type": "points", "amount": 100}
    one_sided = configure(
        client, tenant, referee_reward={"type": "points", "amount": 100}, double_sided=False
    )
    assert one_sided["data"]["attributes"]["referee-reward"]["amount"] == 0


def test_a_participant_key_cannot_configure_the_program(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = send(
        client, "POST", "/v1/rewards/referrals/config", tenant.participant(), CONFIG["request"]
    )

    assert response.status_code == 403


def test_a_users_code_is_made_once_and_answered_with_the_documented_fields(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    first = send(client, "GET", "/v1/rewards/referrals/code/user-123", tenant.participant())
    again = send(client, "GET", "/v1/rewards/referrals/code/user-123", tenant.participant())

    assert first.status_code == 200
    assert first.mimetype == MEDIA_TYPE
    # The engine keeps no invitation link.
    assert_conforms(first.json, CODE["response"], "/data/attributes/share-url")
    assert again.json == first.json
    assert first.json["data"]["attributes"]["total-referrals"] == 0


def test_the_documented_tracking_and_completion_pay_both_sides_once(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    configure(client, tenant, referee_reward={"type": "points", "amount": 100})
    code = code_of(client, tenant, "user-123")

    tracked = track(client, tenant, referral_code=code)
    assert tracked.status_code == 201, tracked.json
    referral_id = tracked.json["data"]["id"]
    assert tracked.json["data"]["attributes"]["status"] == "pending"
    assert tracked.json["data"]["attributes"]["referrer-reward"]["status"] == "pending"

    completed = complete(client, tenant, referral_id)
    again = complete(client, tenant, referral_id)

    assert completed.status_code == 200, completed.json
    assert_conforms(completed.json, REFERRAL)
    attributes = completed.json["data"]["attributes"]
    assert (attributes["referrer-id"], attributes["referee-id"]) == ("user-123", "user-789")
    assert attributes["referrer-reward"] == {
        "type": "points",
        "amount": 500,
        "value": 500,
        "status": "paid",
    }
    assert attributes["referee-reward"]["amount"] == 100
    assert attributes["qualifying-amount"] == 75.0
    assert again.status_code == 409
    assert again.json["errors"][0]["code"] == "referral_already_completed"
    totals = send(client, "GET", "/v1/rewards/referrals/code/user-123", tenant.participant())
    assert totals.json["data"]["attributes"]["successful-referrals"] == 1
    assert totals.json["data"]["attributes"]["total-rewards-earned"] == 500


def test_a_users_referrals_are_listed_with_the_documented_meta(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    configure(client, tenant)
    code = code_of(client, tenant, "user-123")
    referrals = [
        track(client, tenant, referral_code=code, referee_id=referee).json["data"]["id"]
        for referee in ("friend-1", "friend-2", "friend-3")
    ]
    assert complete(client, tenant, referrals[0]).status_code == 200
    path = "/v1/rewards/referrals/user/user-123"

    everything = send(client, "GET", path, tenant.participant())
    pending = send(client, "GET", path + "?filter[status]=pending", tenant.participant())
    expired = send(client, "GET", path + "?filter[status]=expired", tenant.participant())

    assert everything.status_code == 200
    # A pending referral has not completed.
    assert_conforms(everything.json, LIST["response"], "/data/*/attributes/completed-at")
    documented_email = TRACK["request"]["data"]["attributes"]["referee-email"]
    assert {item["attributes"]["referee-email"] for item in everything.json["data"]} == {
        documented_email
    }
    assert everything.json["meta"] == {
        "total-referrals": 3,
        "successful": 1,
        "pending": 2,
        "expired": 0,
        "total-rewards": 500,
        "page-count": 1,
    }
    assert [item["id"] for item in pending.json["data"]] == referrals[:0:-1]
    assert expired.json["data"] == []


def test_an_unknown_or_own_code_is_refused_with_the_error_tables_codes(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    configure(client, tenant)
    code = code_of(client, tenant, "user-123")

    unknown = track(client, tenant, referral_code="NOPE1234")
    own = track(client, tenant, referral_code=code, referee_id="user-123")
    missing = complete(client, tenant, "referral-abc123")

    assert unknown.status_code == own.status_code == 400
    assert unknown.json["errors"][0]["code"] == "referral_invalid"
    assert unknown.json["errors"][0]["title"] == "Invalid referral code"
    assert own.json["errors"][0]["code"] == "referral_self"
    assert missing.status_code == 404
    assert missing.json["errors"][0]["code"] == "referral_not_found"


def test_a_bad_attribute_is_a_422_pointing_at_it(client: FlaskClient, tenant: TenantKeys) -> None:
    response = send(
        client,
        "POST",
        "/v1/rewards/referrals/config",
        tenant.admin(),
        with_attributes(CONFIG["request"], referrer_reward={"type": "points", "amount": -5}),
    )

    assert response.status_code == 422
    [error] = response.json["errors"]
    assert error["source"] == {"pointer": "/data/attributes/referrer-reward/amount"}


def test_a_completion_under_the_configured_minimum_is_refused_as_not_qualified(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    configure(client, tenant)  # the documented min-qualifying-amount: 25.00
    tracked = track(client, tenant, referral_code=code_of(client, tenant, "user-123"))
    referral_id = tracked.json["data"]["id"]

    short = complete(client, tenant, referral_id, qualifying_amount=24.99)
    enough = complete(client, tenant, referral_id, qualifying_amount=25)

    assert short.status_code == 400
    assert short.json["errors"][0]["code"] == "referral_not_qualified"
    assert enough.status_code == 200, enough.json
    assert enough.json["data"]["attributes"]["status"] == "completed"


def test_a_referral_past_the_configured_expiration_is_listed_expired_and_not_completed(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    configure(client, tenant)  # the documented expiration-days: 30
    code = code_of(client, tenant, "user-123")
    expiring, staying = (
        track(client, tenant, referral_code=code, referee_id=referee).json["data"]["id"]
        for referee in ("friend-1", "friend-2")
    )
    with session_factory.begin() as session:
        session.execute(
            update(Referral)
            .where(Referral.id == uuid.UUID(expiring))
            .values(expires_at=func.now() - timedelta(seconds=1))
        )
    path = "/v1/rewards/referrals/user/user-123"

    expired = send(client, "GET", path + "?filter[status]=expired", tenant.participant())
    refused = complete(client, tenant, expiring)

    assert [item["id"] for item in expired.json["data"]] == [expiring]
    assert expired.json["data"][0]["attributes"]["status"] == "expired"
    assert expired.json["meta"] == {
        "total-referrals": 2,
        "successful": 0,
        "pending": 1,
        "expired": 1,
        "total-rewards": 0,
        "page-count": 1,
    }
    assert refused.status_code == 400
    assert refused.json["errors"][0]["code"] == "referral_expired"
    assert complete(client, tenant, staying).status_code == 200


def test_a_malformed_referee_email_is_a_422_pointing_at_it(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    response = track(client, tenant, referee_email="not an e-mail")

    assert response.status_code == 422
    assert response.json["errors"][0]["source"] == {"pointer": "/data/attributes/referee-email"}
