"""Claims through a real worker: the documented answers, idempotency, sync and async."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.models import Claim, LedgerEntry, OutboxEvent, ParticipantMultiplier
from tests.builders import (
    GAMIFY,
    claim,
    create_reward,
    fund_participant,
    upload_codes,
    wait_for_operation,
)
from tests.conftest import TenantKeys

pytestmark = pytest.mark.usefixtures("worker")


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def test_claim_answers_201_with_the_allocated_code(client: FlaskClient, tenant: TenantKeys) -> None:
    reward = create_reward(client, tenant.admin())
    upload_codes(client, tenant.admin(), reward["id"], ["SAVE10-ABC123", "SAVE10-DEF456"])
    response = claim(client, tenant.participant(), reward["id"], "user_42")
    assert response.status_code == 201
    body = response.json
    uuid.UUID(body["claim_id"])
    assert body == {
        "claim_id": body["claim_id"],
        "participant_id": "user_42",
        "reward_name": "10% Off Coupon",
        "reward_type": "coupon",
        "code_value": "SAVE10-ABC123",  # oldest first
        "expires_at": None,
        "points_deducted": None,
        "new_balance": None,
        "status": "fulfilled",
        "metadata": None,
    }


def test_paid_claim_deducts_points_in_the_same_transaction(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    reward = create_reward(client, tenant.admin(), points_cost=500)
    fund_participant(session_factory, tenant.tenant_id, "user_42", 1500)
    response = claim(client, tenant.participant(), reward["id"], "user_42", points_deduction=True)
    assert response.status_code == 201
    assert response.json["points_deducted"] == 500
    assert response.json["new_balance"] == 1000
    with session_factory() as session:
        entry = session.execute(
            select(LedgerEntry).where(LedgerEntry.claim_id == uuid.UUID(response.json["claim_id"]))
        ).scalar_one()
    assert (entry.type, entry.amount, entry.balance_after) == ("claim", -500, 1000)


def test_claim_with_insufficient_points_deducts_nothing_and_allocates_nothing(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    reward = create_reward(client, tenant.admin(), points_cost=50)
    upload_codes(client, tenant.admin(), reward["id"], ["ONLY"])
    fund_participant(session_factory, tenant.tenant_id, "poor", 30)
    response = claim(client, tenant.participant(), reward["id"], "poor", points_deduction=True)
    assert response.status_code == 400
    assert response.json == {
        "code": "insufficient_points",
        "type": "insufficient_points",
        "detail": "Insufficient points. Available: 30, requested: 50",
        "status": 400,
    }
    admin_view = client.get(f"{GAMIFY}/admin/rewards/{reward['id']}", headers=tenant.admin()).json
    assert admin_view["available_codes"] == 1
    with session_factory() as session:
        claims = session.execute(
            select(func.count())
            .select_from(Claim)
            .where(Claim.reward_id == uuid.UUID(reward["id"]))
        ).scalar_one()
        # The funding award recorded its own points.awarded event; the claim none.
        events = session.execute(
            select(OutboxEvent.type).where(OutboxEvent.tenant_id == tenant.tenant_id)
        ).scalars()
        assert claims == 0
        assert list(events) == ["points.awarded"]


def test_claim_without_points_deduction_ignores_the_cost(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin(), points_cost=500)
    response = claim(client, tenant.participant(), reward["id"], "broke", points_deduction=False)
    assert response.status_code == 201
    assert response.json["points_deducted"] is None
    assert response.json["new_balance"] is None


@pytest.mark.parametrize(
    ("window", "code", "detail"),
    [
        ({"available_from": timedelta(days=1)}, "reward_not_available", "Reward not yet available"),
        ({"expires_at": timedelta(days=-1)}, "reward_expired", "Reward has expired"),
    ],
)
def test_claims_outside_the_window_are_refused(
    client: FlaskClient, tenant: TenantKeys, window: dict[str, timedelta], code: str, detail: str
) -> None:
    now = datetime.now(UTC)
    fields = {name: _iso(now + offset) for name, offset in window.items()}
    reward = create_reward(client, tenant.admin(), **fields)
    response = claim(client, tenant.participant(), reward["id"], "user_1")
    assert response.status_code == 400
    assert (response.json["code"], response.json["detail"]) == (code, detail)


def test_claim_when_no_codes_remain_answers_out_of_stock(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin(), max_claims_per_user=5)
    upload_codes(client, tenant.admin(), reward["id"], ["ONLY"])
    assert claim(client, tenant.participant(), reward["id"], "a").status_code == 201
    response = claim(client, tenant.participant(), reward["id"], "b")
    assert response.status_code == 400
    assert (response.json["code"], response.json["detail"]) == (
        "reward_out_of_stock",
        "Reward is out of stock",
    )


def test_claim_past_the_per_user_cap_answers_max_claims_reached(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin(), max_claims_per_user=2)
    assert claim(client, tenant.participant(), reward["id"], "u").status_code == 201
    assert claim(client, tenant.participant(), reward["id"], "u").status_code == 201
    response = claim(client, tenant.participant(), reward["id"], "u")
    assert response.status_code == 400
    assert (response.json["code"], response.json["detail"]) == (
        "max_claims_reached",
        "Maximum claims reached for this reward",
    )
    assert claim(client, tenant.participant(), reward["id"], "someone-else").status_code == 201


def test_claim_of_unknown_or_deactivated_reward_answers_reward_not_found(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin())
    client.delete(f"{GAMIFY}/admin/rewards/{reward['id']}", headers=tenant.admin())
    for reward_id in (reward["id"], str(uuid.uuid4()), "nope"):
        response = claim(client, tenant.participant(), reward_id, "u")
        assert response.status_code == 404
        assert (response.json["code"], response.json["detail"]) == (
            "reward_not_found",
            "Reward not found",
        )


def test_generated_codes_use_the_prefix_and_total_inventory_caps_claims(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(
        client,
        tenant.admin(),
        total_inventory=2,
        config={"code_prefix": "GEN-"},
        max_claims_per_user=9,
    )
    codes = {
        claim(client, tenant.participant(), reward["id"], "u").json["code_value"] for _ in range(2)
    }
    assert len(codes) == 2 and all(code.startswith("GEN-") and len(code) == 14 for code in codes)
    assert (
        claim(client, tenant.participant(), reward["id"], "u").json["code"] == "reward_out_of_stock"
    )
    catalog = client.get(f"{GAMIFY}/rewards", headers=tenant.participant()).json["rewards"]
    assert [entry["available_codes"] for entry in catalog if entry["id"] == reward["id"]] == [0]


def test_generate_when_exhausted_falls_back_to_generated_codes(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(
        client,
        tenant.admin(),
        max_claims_per_user=3,
        config={"code_prefix": "X-", "generate_when_exhausted": True},
    )
    upload_codes(client, tenant.admin(), reward["id"], ["PRELOADED"])
    first = claim(client, tenant.participant(), reward["id"], "u").json["code_value"]
    second = claim(client, tenant.participant(), reward["id"], "u").json["code_value"]
    assert first == "PRELOADED"
    assert second.startswith("X-") and second != "PRELOADED"


@pytest.mark.parametrize(
    ("reward_type", "prefix"), [("physical", "ORD-"), ("digital", "KEY-"), ("voucher", "")]
)
def test_each_code_type_gets_a_useful_code_value(
    client: FlaskClient, tenant: TenantKeys, reward_type: str, prefix: str
) -> None:
    reward = create_reward(client, tenant.admin(), type=reward_type)
    code = claim(client, tenant.participant(), reward["id"], "u").json["code_value"]
    assert code.startswith(prefix) and len(code) == len(prefix) + 10


def test_points_multiplier_claim_has_no_code_and_activates_the_multiplier(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    reward = create_reward(
        client,
        tenant.admin(),
        type="points_multiplier",
        config={"multiplier": 2, "duration_days": 7},
    )
    response = claim(client, tenant.participant(), reward["id"], "u")
    assert response.status_code == 201
    assert response.json["code_value"] is None
    with session_factory() as session:
        multiplier = session.execute(
            select(ParticipantMultiplier).where(
                ParticipantMultiplier.claim_id == uuid.UUID(response.json["claim_id"])
            )
        ).scalar_one()
    assert multiplier.multiplier == 2
    assert multiplier.expires_at is not None
    assert (
        timedelta(days=6, hours=23)
        < multiplier.expires_at - multiplier.starts_at
        <= timedelta(days=7)
    )


def test_code_expiry_days_sets_the_claims_expiry(client: FlaskClient, tenant: TenantKeys) -> None:
    reward_expiry = datetime.now(UTC) + timedelta(days=365)
    per_code = create_reward(
        client, tenant.admin(), code_expiry_days=30, expires_at=_iso(reward_expiry)
    )
    program = create_reward(client, tenant.admin(), expires_at=_iso(reward_expiry))
    before = datetime.now(UTC)
    per_code_expiry = datetime.fromisoformat(
        claim(client, tenant.participant(), per_code["id"], "u").json["expires_at"]
    )
    assert before + timedelta(days=30) <= per_code_expiry <= datetime.now(UTC) + timedelta(days=30)
    program_expiry = claim(client, tenant.participant(), program["id"], "u").json["expires_at"]
    assert datetime.fromisoformat(program_expiry) == reward_expiry


def test_successful_claim_records_one_reward_claimed_event(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    reward = create_reward(client, tenant.admin())
    body = claim(client, tenant.participant(), reward["id"], "u", idempotency_key="evt-1").json
    claim(client, tenant.participant(), reward["id"], "u", idempotency_key="evt-1")  # a replay
    with session_factory() as session:
        events = (
            session.execute(select(OutboxEvent).where(OutboxEvent.tenant_id == tenant.tenant_id))
            .scalars()
            .all()
        )
    assert [event.type for event in events] == ["reward.reward_claimed"]
    payload = events[0].payload
    assert payload["claim_id"] == body["claim_id"]
    assert payload["reward_id"] == reward["id"]
    assert payload["environment"] == "live"
    assert payload["code_value"] == body["code_value"]


def test_retry_with_the_same_idempotency_key_returns_the_original_claim(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    reward = create_reward(client, tenant.admin(), points_cost=100, max_claims_per_user=5)
    fund_participant(session_factory, tenant.tenant_id, "u", 1000)
    first = claim(
        client,
        tenant.participant(),
        reward["id"],
        "u",
        idempotency_key="order-1",
        points_deduction=True,
    )
    again = claim(
        client,
        tenant.participant(),
        reward["id"],
        "u",
        idempotency_key="order-1",
        points_deduction=True,
    )
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert first.json["new_balance"] == 900
    fresh = claim(
        client,
        tenant.participant(),
        reward["id"],
        "u",
        idempotency_key="order-2",
        points_deduction=True,
    )
    assert fresh.json["claim_id"] != first.json["claim_id"]
    assert fresh.json["new_balance"] == 800


def test_a_failed_claim_replays_its_error(client: FlaskClient, tenant: TenantKeys) -> None:
    reward = create_reward(
        client, tenant.admin(), expires_at=_iso(datetime.now(UTC) - timedelta(days=1))
    )
    first = claim(client, tenant.participant(), reward["id"], "u", idempotency_key="late")
    again = claim(client, tenant.participant(), reward["id"], "u", idempotency_key="late")
    assert first.status_code == again.status_code == 400
    assert again.json == first.json


def test_idempotency_key_in_the_body_works_like_the_header(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin(), max_claims_per_user=5)
    url = f"{GAMIFY}/rewards/{reward['id']}/claim"
    body = {"participant_id": "u", "idempotency_key": "body-key"}
    first = client.post(url, json=body, headers=tenant.participant())
    from_header = client.post(
        url,
        json={"participant_id": "u"},
        headers={**tenant.participant(), "Idempotency-Key": "body-key"},
    )
    assert first.json == from_header.json


@pytest.mark.parametrize("bad_key", ["", "x" * 256, "spaces are bad", "semi;colon", "ünïcode"])
def test_malformed_idempotency_key_answers_idempotency_key_invalid(
    client: FlaskClient, tenant: TenantKeys, bad_key: str
) -> None:
    reward = create_reward(client, tenant.admin())
    response = client.post(
        f"{GAMIFY}/rewards/{reward['id']}/claim",
        json={"participant_id": "u"},
        headers={**tenant.participant(), "Idempotency-Key": bad_key},
    )
    assert response.status_code == 400
    assert response.json["code"] == "IDEMPOTENCY_KEY_INVALID"


def test_idempotency_key_of_255_allowed_characters_is_accepted(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin())
    key = ("aZ0_-:." * 40)[:255]
    assert (
        claim(client, tenant.participant(), reward["id"], "u", idempotency_key=key).status_code
        == 201
    )


def test_header_and_body_keys_that_differ_answer_idempotency_key_mismatch(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin())
    response = client.post(
        f"{GAMIFY}/rewards/{reward['id']}/claim",
        json={"participant_id": "u", "idempotency_key": "one"},
        headers={**tenant.participant(), "Idempotency-Key": "two"},
    )
    assert response.status_code == 400
    assert response.json["code"] == "IDEMPOTENCY_KEY_MISMATCH"


def test_same_key_for_a_different_request_answers_idempotency_key_reused(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin())
    other = create_reward(client, tenant.admin(), name="Other")
    assert (
        claim(client, tenant.participant(), reward["id"], "u", idempotency_key="k").status_code
        == 201
    )
    for reward_id, participant in ((other["id"], "u"), (reward["id"], "someone-else")):
        response = claim(client, tenant.participant(), reward_id, participant, idempotency_key="k")
        assert response.status_code == 422
        assert response.json["code"] == "IDEMPOTENCY_KEY_REUSED"


def test_idempotency_keys_are_scoped_to_tenant_and_environment(
    client: FlaskClient, make_tenant: Any
) -> None:
    acme, other = make_tenant("Acme"), make_tenant("Other")
    acme_reward = create_reward(client, acme.admin())
    other_reward = create_reward(client, other.admin())
    first = claim(client, acme.participant(), acme_reward["id"], "u", idempotency_key="shared")
    second = claim(client, other.participant(), other_reward["id"], "u", idempotency_key="shared")
    assert first.status_code == second.status_code == 201
    assert first.json["claim_id"] != second.json["claim_id"]


def test_prefer_respond_async_answers_202_and_the_operation_can_be_polled(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin())
    response = claim(client, tenant.participant(), reward["id"], "u", prefer_async=True)
    assert response.status_code == 202
    assert response.headers["Preference-Applied"] == "respond-async"
    operation_id = response.json["operation_id"]
    assert response.headers["Location"] == f"{GAMIFY}/operations/{operation_id}"
    assert response.json["kind"] == "reward.claim"
    assert response.json["status"] in ("queued", "processing", "succeeded")
    finished = wait_for_operation(client, tenant.participant(), operation_id)
    assert finished["status"] == "succeeded"
    assert finished["result"]["participant_id"] == "u"
    assert finished["error"] is None


def test_failed_async_operation_carries_the_same_error_as_sync(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(
        client, tenant.admin(), available_from=_iso(datetime.now(UTC) + timedelta(days=2))
    )
    response = claim(client, tenant.participant(), reward["id"], "u", prefer_async=True)
    finished = wait_for_operation(client, tenant.participant(), response.json["operation_id"])
    assert finished["status"] == "failed"
    assert finished["error"] == {
        "code": "reward_not_available",
        "type": "reward_not_available",
        "detail": "Reward not yet available",
        "status": 400,
        "errors": None,
    }


def test_operations_are_scoped_to_tenant_and_environment(
    client: FlaskClient, make_tenant: Any
) -> None:
    acme, other = make_tenant("Acme"), make_tenant("Other")
    reward = create_reward(client, acme.admin())
    operation_id = claim(client, acme.participant(), reward["id"], "u", prefer_async=True).json[
        "operation_id"
    ]
    url = f"{GAMIFY}/operations/{operation_id}"
    assert client.get(url, headers=other.participant()).status_code == 404
    assert client.get(url, headers={"X-API-Key": acme.test_participant_key}).status_code == 404
    assert client.get(url, headers=acme.participant()).status_code == 200


def test_sync_claim_answers_202_when_the_worker_is_slower_than_the_wait(
    make_app: Any, tenant: TenantKeys, client: FlaskClient
) -> None:
    # Its own broker prefix: no worker listens there, so the claim cannot finish within the
    # (zero) wait; the sweeper finds it queued and republishes it where the workers are.
    impatient = make_app(sync_wait_timeout_seconds=0, redis_key_prefix="nobody-listens:")
    reward = create_reward(client, tenant.admin())
    response = claim(impatient.test_client(), tenant.participant(), reward["id"], "u")
    assert response.status_code == 202
    assert "Preference-Applied" not in response.headers
    finished = wait_for_operation(client, tenant.participant(), response.json["operation_id"])
    assert finished["status"] == "succeeded"


def test_catalog_lists_active_unexpired_rewards_with_live_inventory(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    coupon = create_reward(client, tenant.admin(), points_cost=500, description="10% discount")
    upload_codes(client, tenant.admin(), coupon["id"], ["A", "B"])
    voucher = create_reward(client, tenant.admin(), type="voucher")
    create_reward(client, tenant.admin(), expires_at=_iso(datetime.now(UTC) - timedelta(seconds=1)))
    claim(client, tenant.participant(), coupon["id"], "u")
    catalog = client.get(f"{GAMIFY}/rewards", headers=tenant.participant()).json
    assert catalog["total"] == 2
    by_id = {entry["id"]: entry for entry in catalog["rewards"]}
    assert set(by_id) == {coupon["id"], voucher["id"]}
    assert by_id[coupon["id"]]["available_codes"] == 1
    assert by_id[coupon["id"]]["points_cost"] == 500
    assert by_id[voucher["id"]]["available_codes"] is None
    only_vouchers = client.get(
        f"{GAMIFY}/rewards?reward_type=voucher", headers=tenant.participant()
    ).json
    assert [entry["id"] for entry in only_vouchers["rewards"]] == [voucher["id"]]


def test_catalog_for_a_participant_says_why_each_reward_cannot_be_claimed(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    fund_participant(session_factory, tenant.tenant_id, "alice", 100)
    affordable = create_reward(client, tenant.admin(), name="cheap", points_cost=100)
    too_dear = create_reward(client, tenant.admin(), name="dear", points_cost=1000)
    claimed = create_reward(client, tenant.admin(), name="once")
    upcoming = create_reward(
        client,
        tenant.admin(),
        name="later",
        available_from=_iso(datetime.now(UTC) + timedelta(days=1)),
    )
    claim(client, tenant.participant(), claimed["id"], "alice")
    catalog = client.get(
        f"{GAMIFY}/rewards?participant_id=alice", headers=tenant.participant()
    ).json
    verdicts = {entry["id"]: (entry["claimable"], entry["reason"]) for entry in catalog["rewards"]}
    assert verdicts == {
        affordable["id"]: (True, None),
        too_dear["id"]: (False, "insufficient_points"),
        claimed["id"]: (False, "max_claims_reached"),
        upcoming["id"]: (False, "reward_not_available"),
    }


def test_participant_rewards_lists_claims_newest_first(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    first = create_reward(client, tenant.admin(), name="first")
    second = create_reward(client, tenant.admin(), name="second")
    one = claim(client, tenant.participant(), first["id"], "user_42").json
    two = claim(client, tenant.participant(), second["id"], "user_42").json
    claim(client, tenant.participant(), first["id"], "someone-else")
    listing = client.get(
        f"{GAMIFY}/participants/user_42/rewards", headers=tenant.participant()
    ).json
    assert listing["participant_id"] == "user_42"
    assert listing["total"] == listing["total_claimed"] == 2
    assert [entry["claim_id"] for entry in listing["rewards"]] == [two["claim_id"], one["claim_id"]]
    assert listing["rewards"][1]["reward_name"] == "first"
    assert listing["rewards"][1]["code_value"] == one["code_value"]


def test_participant_ids_longer_than_255_characters_are_rejected(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin())
    assert claim(client, tenant.participant(), reward["id"], "p" * 256).status_code == 422
    assert claim(client, tenant.participant(), reward["id"], "").status_code == 422
    assert claim(client, tenant.participant(), reward["id"], "p" * 255).status_code == 201
    listing = client.get(f"{GAMIFY}/participants/{'p' * 256}/rewards", headers=tenant.participant())
    assert listing.status_code == 422
