"""Coupons end to end through the API and a real worker: admin management, validate,
redeem with every refusal, order replays, voids, generated codes and their listing, and
the coupon events as webhooks."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.models import OutboxEvent
from app.text import CODE_ALPHABET
from tests.builders import (
    GAMIFY,
    claim,
    create_coupon,
    create_reward,
    redeem_coupon,
    wait_for_operation,
)
from tests.conftest import TenantKeys
from tests.webhook_receiver import WebhookReceiver, create_webhook, verified_event

pytestmark = pytest.mark.usefixtures("worker")


def _validate(client: FlaskClient, tenant: TenantKeys, **body: Any) -> dict[str, Any]:
    response = client.post(f"{GAMIFY}/coupons/validate", json=body, headers=tenant.participant())
    assert response.status_code == 200, response.json
    return dict(response.json)


def _coupon(client: FlaskClient, tenant: TenantKeys, id_or_code: str) -> dict[str, Any]:
    response = client.get(f"{GAMIFY}/admin/coupons/{id_or_code}", headers=tenant.admin())
    assert response.status_code == 200, response.json
    return dict(response.json)


def _redeemed(
    client: FlaskClient, tenant: TenantKeys, code: str, participant: str, order: str, **fields: Any
) -> dict[str, Any]:
    response = redeem_coupon(client, tenant.participant(), code, participant, order, **fields)
    assert response.status_code == 201, response.json
    return dict(response.json)


def _refused(
    client: FlaskClient, tenant: TenantKeys, code: str, participant: str, order: str, **fields: Any
) -> tuple[str, str]:
    """The refusal code of a redemption, checked to be what validate says beforehand."""
    validated = _validate(client, tenant, code=code, participant_id=participant, **fields)
    response = redeem_coupon(client, tenant.participant(), code, participant, order, **fields)
    assert response.status_code == 400, response.json
    assert validated["valid"] is False and validated["error_code"] == response.json["code"]
    assert validated["message"] == response.json["detail"]
    return response.json["code"], response.json["detail"]


# Admin -------------------------------------------------------------------------------


def test_a_coupon_is_created_read_by_id_or_code_changed_and_deactivated(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    created = create_coupon(
        client,
        tenant.admin(),
        code="summer25",
        campaign="summer-2026",
        discount_value=25,
        currency="EUR",
        min_order_amount=50,
        max_discount_amount=100,
        usage_limit=1000,
        usage_limit_per_user=1,
        conditions={"new_customers_only": False},
        applicable_to=["summer-collection"],
        metadata={"channel": "email"},
    )
    assert created["code"] == "SUMMER25"
    assert (created["discount_value"], created["min_order_amount"]) == (25.0, 50.0)
    assert (created["usage_count"], created["active"]) == (0, True)
    assert created["metadata"] == {"channel": "email"}
    assert _coupon(client, tenant, created["id"]) == created
    assert _coupon(client, tenant, " Summer25 ") == created

    patched = client.patch(
        f"{GAMIFY}/admin/coupons/{created['id']}",
        json={"discount_value": 30, "usage_limit": None},
        headers=tenant.admin(),
    )
    assert patched.status_code == 200, patched.json
    assert (patched.json["discount_value"], patched.json["usage_limit"]) == (30.0, None)

    deleted = client.delete(f"{GAMIFY}/admin/coupons/SUMMER25", headers=tenant.admin())
    assert deleted.status_code == 204
    assert _coupon(client, tenant, created["id"])["active"] is False
    assert _validate(client, tenant, code="SUMMER25")["error_code"] == "invalid_coupon"


def test_coupons_are_listed_newest_first_with_their_filters(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    first = create_coupon(client, tenant.admin(), campaign="spring")
    second = create_coupon(client, tenant.admin(), campaign="summer")
    third = create_coupon(client, tenant.admin(), campaign="summer", active=False)

    def listed(query: str) -> list[str]:
        response = client.get(f"{GAMIFY}/admin/coupons{query}", headers=tenant.admin())
        assert response.status_code == 200, response.json
        return [coupon["id"] for coupon in response.json["coupons"]]

    assert listed("") == [third["id"], second["id"], first["id"]]
    assert listed("?campaign=summer") == [third["id"], second["id"]]
    assert listed("?campaign=summer&active=true") == [second["id"]]
    assert listed("?active=false") == [third["id"]]
    assert listed("?page=2&page_size=2") == [first["id"]]


def test_a_code_is_unique_across_coupons_and_generated_from_the_prefix_when_absent(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    create_coupon(client, tenant.admin(), code="WELCOME")
    taken = client.post(
        f"{GAMIFY}/admin/coupons",
        json={"code": "welcome", "discount_type": "fixed", "discount_value": 5},
        headers=tenant.admin(),
    )
    assert taken.status_code == 409 and taken.json["code"] == "code_taken"
    generated = create_coupon(client, tenant.admin(), code_prefix="vip-")
    assert generated["code"].startswith("VIP-") and len(generated["code"]) == 14
    assert set(generated["code"][4:]) <= set(CODE_ALPHABET)
    # Codes are per tenant: another tenant may have its own WELCOME.
    other = client.post(
        f"{GAMIFY}/admin/coupons",
        json={"code": "WELCOME", "discount_type": "free_shipping"},
        headers={"X-API-Key": tenant.test_admin_key},
    )
    assert other.status_code == 201, other.json


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"discount_type": "percentage", "discount_value": 150}, "at most 100"),
        ({"discount_type": "fixed"}, "discount_value above 0"),
        ({"discount_type": "buy_x_get_y", "buy_quantity": 2}, "buy_quantity and get_quantity"),
        (
            {
                "discount_type": "free_shipping",
                "starts_at": "2026-08-01T00:00:00Z",
                "expires_at": "2026-07-01T00:00:00Z",
            },
            "later than starts_at",
        ),
    ],
)
def test_a_coupon_that_makes_no_discount_is_refused(
    client: FlaskClient, tenant: TenantKeys, body: dict[str, Any], message: str
) -> None:
    response = client.post(f"{GAMIFY}/admin/coupons", json=body, headers=tenant.admin())
    assert response.status_code == 422 and message in response.json["detail"]


def test_unknown_coupons_and_redemptions_are_404(client: FlaskClient, tenant: TenantKeys) -> None:
    for method, path in (
        ("GET", "/admin/coupons/NOPE"),
        ("PATCH", f"/admin/coupons/{uuid.uuid4()}"),
        ("DELETE", "/admin/coupons/NOPE"),
        ("GET", f"/admin/coupons/{uuid.uuid4()}/codes"),
    ):
        response = client.open(
            f"{GAMIFY}{path}",
            method=method,
            json={} if method == "PATCH" else None,
            headers=tenant.admin(),
        )
        assert response.status_code == 404 and response.json["code"] == "coupon_not_found", path
    for redemption_id in (str(uuid.uuid4()), "not-an-id"):
        response = client.post(
            f"{GAMIFY}/coupons/redemptions/{redemption_id}/void", headers=tenant.participant()
        )
        assert response.status_code == 404 and response.json["code"] == "redemption_not_found"


# Validate and redeem -------------------------------------------------------------------


def test_validate_computes_the_discount_and_changes_nothing(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    create_coupon(client, tenant.admin(), code="SUMMER25", discount_value=25, currency="EUR")
    answer = _validate(client, tenant, code="summer25", participant_id="u1", order_amount=75)
    assert answer == {
        "valid": True,
        "coupon_code": "SUMMER25",
        "discount_type": "percentage",
        "discount_value": 25.0,
        "discount_amount": 18.75,
        "final_amount": 56.25,
        "currency": "EUR",
        "error_code": None,
        "message": "Coupon applied successfully",
    }
    assert _coupon(client, tenant, "SUMMER25")["usage_count"] == 0
    unknown = _validate(client, tenant, code="NOPE")
    assert (unknown["valid"], unknown["error_code"], unknown["message"]) == (
        False,
        "invalid_coupon",
        "Coupon code is invalid",
    )


def test_buy_x_get_y_discounts_the_cheapest_units_of_the_items(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    create_coupon(
        client,
        tenant.admin(),
        code="B2G1",
        discount_type="buy_x_get_y",
        buy_quantity=2,
        get_quantity=1,
        discount_value=None,
    )
    items = [
        {"product_id": "shirt", "quantity": 2, "price": 20},
        {"product_id": "socks", "category": "accessories", "quantity": 1, "price": 4.5},
    ]
    answer = _validate(client, tenant, code="B2G1", items=items)
    assert (answer["discount_amount"], answer["final_amount"]) == (4.5, 40.0)
    redeemed = _redeemed(client, tenant, "B2G1", "u1", "order-1", items=items)
    assert (redeemed["discount_amount"], redeemed["final_amount"]) == (4.5, 40.0)


def test_a_redemption_counts_one_use_and_answers_the_redemption(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    coupon = create_coupon(
        client,
        tenant.admin(),
        code="TENOFF",
        discount_type="fixed",
        discount_value=10,
        currency="USD",
    )
    redeemed = _redeemed(client, tenant, "tenoff", "u1", "order-1", order_amount=35.5)
    assert redeemed["redemption_id"]
    assert {
        key: redeemed[key] for key in ("coupon_id", "coupon_code", "participant_id", "order_id")
    } == {
        "coupon_id": coupon["id"],
        "coupon_code": "TENOFF",
        "participant_id": "u1",
        "order_id": "order-1",
    }
    assert (redeemed["order_amount"], redeemed["discount_amount"], redeemed["final_amount"]) == (
        35.5,
        10.0,
        25.5,
    )
    assert (redeemed["status"], redeemed["voided_at"], redeemed["currency"]) == (
        "redeemed",
        None,
        "USD",
    )
    assert _coupon(client, tenant, "TENOFF")["usage_count"] == 1


def test_every_refusal_is_answered_400_with_its_code(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    now = datetime.now(UTC)
    assert _refused(client, tenant, "NO-SUCH-CODE", "u1", "o1") == (
        "invalid_coupon",
        "Coupon code is invalid",
    )
    create_coupon(
        client, tenant.admin(), code="OLD", expires_at=(now - timedelta(days=1)).isoformat()
    )
    assert _refused(client, tenant, "OLD", "u1", "o2")[0] == "coupon_expired"
    create_coupon(
        client, tenant.admin(), code="SOON", starts_at=(now + timedelta(days=1)).isoformat()
    )
    assert _refused(client, tenant, "SOON", "u1", "o3")[0] == "coupon_not_started"
    create_coupon(client, tenant.admin(), code="ONCE", usage_limit=1)
    _redeemed(client, tenant, "ONCE", "u1", "o4")
    assert _refused(client, tenant, "ONCE", "u2", "o5")[0] == "coupon_usage_limit"
    create_coupon(client, tenant.admin(), code="NEWBIE", conditions={"new_customers_only": True})
    assert (
        _refused(client, tenant, "NEWBIE", "u1", "o6")[0] == "coupon_not_eligible"
    )  # redeemed ONCE
    reward = create_reward(client, tenant.admin())
    assert claim(client, tenant.participant(), reward["id"], "claimer").status_code == 201
    assert _refused(client, tenant, "NEWBIE", "claimer", "o7")[0] == "coupon_not_eligible"
    _redeemed(client, tenant, "NEWBIE", "newcomer", "o8")
    create_coupon(client, tenant.admin(), code="PERUSER", usage_limit_per_user=2)
    _redeemed(client, tenant, "PERUSER", "u1", "o9")
    _redeemed(client, tenant, "PERUSER", "u1", "o10")
    assert _refused(client, tenant, "PERUSER", "u1", "o11") == (
        "coupon_already_used",
        "User already used this coupon",
    )
    _redeemed(client, tenant, "PERUSER", "u2", "o12")
    create_coupon(client, tenant.admin(), code="BIGSPEND", min_order_amount=50, currency="EUR")
    assert _refused(client, tenant, "BIGSPEND", "u1", "o13", order_amount=49.99) == (
        "coupon_min_order",
        "This coupon needs an order of at least 50.00 EUR",
    )
    _redeemed(client, tenant, "BIGSPEND", "u1", "o14", order_amount=50)
    listed = client.get(f"{GAMIFY}/admin/coupons?page_size=100", headers=tenant.admin())
    uses = {coupon["code"]: coupon["usage_count"] for coupon in listed.json["coupons"]}
    assert uses == {"OLD": 0, "SOON": 0, "ONCE": 1, "NEWBIE": 1, "PERUSER": 3, "BIGSPEND": 1}


def test_the_same_order_replays_its_redemption_and_another_body_is_refused(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    create_coupon(client, tenant.admin(), code="REPLAY", usage_limit=1)
    first = _redeemed(client, tenant, "REPLAY", "u1", "order-9", order_amount=20)
    # 20 and 20.00 are one amount; the code's case does not matter.
    again = _redeemed(client, tenant, "replay", "u1", "order-9", order_amount=20.0)
    assert again == first
    other = redeem_coupon(client, tenant.participant(), "REPLAY", "u1", "order-9", order_amount=25)
    assert other.status_code == 422 and other.json["code"] == "IDEMPOTENCY_KEY_REUSED"
    keyed = {**tenant.participant(), "Idempotency-Key": "checkout-1"}
    first_keyed = redeem_coupon(client, keyed, "REPLAY", "u2", "order-10")
    assert first_keyed.status_code == 400 and first_keyed.json["code"] == "coupon_usage_limit"
    assert redeem_coupon(client, keyed, "REPLAY", "u2", "order-10").json == first_keyed.json
    assert _coupon(client, tenant, "REPLAY")["usage_count"] == 1


def test_an_async_redemption_is_polled_to_its_answer(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    create_coupon(client, tenant.admin(), code="LATER")
    headers = {**tenant.participant(), "Prefer": "respond-async"}
    accepted = redeem_coupon(client, headers, "LATER", "u1", "o1", order_amount=10)
    assert accepted.status_code == 202 and accepted.json["kind"] == "coupons.redeem"
    finished = wait_for_operation(client, tenant.participant(), accepted.json["operation_id"])
    assert finished["status"] == "succeeded"
    assert finished["result"]["discount_amount"] == 1.0


def test_a_void_gives_the_use_back_and_the_code_can_be_redeemed_again(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    create_coupon(client, tenant.admin(), code="VOIDME", usage_limit=1, usage_limit_per_user=1)
    redeemed = _redeemed(client, tenant, "VOIDME", "u1", "order-1", order_amount=10)
    void_path = f"{GAMIFY}/coupons/redemptions/{redeemed['redemption_id']}/void"
    voided = client.post(void_path, headers=tenant.participant())
    assert voided.status_code == 200, voided.json
    assert voided.json["status"] == "voided" and voided.json["voided_at"]
    assert {k: v for k, v in voided.json.items() if k not in ("status", "voided_at")} == {
        k: v for k, v in redeemed.items() if k not in ("status", "voided_at")
    }
    assert client.post(void_path, headers=tenant.participant()).json == voided.json
    assert _coupon(client, tenant, "VOIDME")["usage_count"] == 0
    # The order was cancelled: the same order (or another) may redeem the coupon again.
    again = _redeemed(client, tenant, "VOIDME", "u1", "order-1", order_amount=10)
    assert again["redemption_id"] != redeemed["redemption_id"]
    assert _refused(client, tenant, "VOIDME", "u1", "order-2")[0] == "coupon_usage_limit"


# Generated codes ---------------------------------------------------------------------


def _generate(
    client: FlaskClient, tenant: TenantKeys, coupon_id: str, **body: Any
) -> dict[str, Any]:
    response = client.post(
        f"{GAMIFY}/admin/coupons/{coupon_id}/generate", json=body, headers=tenant.admin()
    )
    assert response.status_code == 202, response.json
    assert response.json["kind"] == "coupons.generate"
    finished = wait_for_operation(client, tenant.admin(), response.json["operation_id"])
    assert finished["status"] == "succeeded", finished
    return finished


def test_generated_codes_are_unique_single_use_and_listed(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    coupon = create_coupon(client, tenant.admin(), code="CAMPAIGN", usage_limit=10_000)
    finished = _generate(client, tenant, coupon["id"], count=3000, prefix="sum26-", length=8)
    assert finished["result"] == {"coupon_id": coupon["id"], "generated": 3000}
    assert finished["progress"] == {"total": 3000, "generated": 3000}

    page = client.get(
        f"{GAMIFY}/admin/coupons/{coupon['id']}/codes?page=2&page_size=100", headers=tenant.admin()
    )
    assert page.status_code == 200 and page.json["total"] == 3000
    assert len(page.json["codes"]) == 100
    exported = client.get(
        f"{GAMIFY}/admin/coupons/{coupon['id']}/codes",
        headers={**tenant.admin(), "Accept": "text/csv"},
    )
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(exported.get_data(as_text=True))))
    assert rows[0] == ["code", "used", "redemption_id"]
    codes = [row[0] for row in rows[1:]]
    assert len(codes) == len(set(codes)) == 3000
    assert all(code.startswith("SUM26-") and len(code) == 14 for code in codes)
    assert set("".join(code[6:] for code in codes)) <= set(CODE_ALPHABET)
    assert [code["code"] for code in page.json["codes"]] == codes[100:200]

    # A generated code names its coupon, and is used once.
    assert _coupon(client, tenant, codes[0].lower())["id"] == coupon["id"]
    redeemed = _redeemed(client, tenant, codes[0], "u1", "o1")
    assert redeemed["coupon_code"] == codes[0]
    assert _refused(client, tenant, codes[0], "u2", "o2") == (
        "coupon_already_used",
        "This code has already been used",
    )
    first = client.get(
        f"{GAMIFY}/admin/coupons/{coupon['id']}/codes?page_size=1", headers=tenant.admin()
    ).json["codes"][0]
    assert first == {"code": codes[0], "used": True, "redemption_id": redeemed["redemption_id"]}
    # Voided, the code is free again.
    void = client.post(
        f"{GAMIFY}/coupons/redemptions/{redeemed['redemption_id']}/void",
        headers=tenant.participant(),
    )
    assert void.status_code == 200
    _redeemed(client, tenant, codes[0], "u2", "o3")


def test_generation_skips_codes_any_coupon_holds_and_replays_its_key(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    coupon = create_coupon(client, tenant.admin())
    other = create_coupon(client, tenant.admin())
    # Length 6 under one prefix: some draws clash with the other coupon's codes, and the
    # shortfall is drawn again.
    _generate(client, tenant, other["id"], count=2000, prefix="X", length=6)
    headers = {**tenant.admin(), "Idempotency-Key": "generate-1"}
    body = {"count": 2000, "prefix": "X", "length": 6}
    first = client.post(
        f"{GAMIFY}/admin/coupons/{coupon['id']}/generate", json=body, headers=headers
    )
    assert first.status_code == 202
    wait_for_operation(client, tenant.admin(), first.json["operation_id"])
    again = client.post(
        f"{GAMIFY}/admin/coupons/{coupon['id']}/generate", json=body, headers=headers
    )
    assert again.json["operation_id"] == first.json["operation_id"]
    totals = [
        client.get(f"{GAMIFY}/admin/coupons/{c['id']}/codes", headers=tenant.admin()).json["total"]
        for c in (coupon, other)
    ]
    assert totals == [2000, 2000]


# Events ------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


def test_coupon_events_are_delivered_signed_and_expiry_is_announced_once(
    client: FlaskClient,
    tenant: TenantKeys,
    receiver: WebhookReceiver,
    session_factory: sessionmaker[Session],
) -> None:
    webhook = create_webhook(
        client, tenant.admin(), receiver.url, ["coupon.redeemed", "coupon.expired"]
    )
    create_coupon(client, tenant.admin(), code="EVENTFUL", campaign="launch")
    redeemed = _redeemed(client, tenant, "EVENTFUL", "u1", "o1", order_amount=100)
    # Created already past its expiry: the workers' next sweep (every second) announces it.
    expired = create_coupon(
        client,
        tenant.admin(),
        code="GONE",
        expires_at=(datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
    )

    requests = receiver.wait_for_requests(2)
    delivered = [verified_event(webhook["secret"], r) for r in requests]
    by_type = {payload["type"]: payload["data"] for payload in delivered}
    assert set(by_type) == {"coupon.redeemed", "coupon.expired"}
    assert by_type["coupon.redeemed"]["redemption_id"] == redeemed["redemption_id"]
    assert by_type["coupon.redeemed"]["campaign"] == "launch"
    assert by_type["coupon.redeemed"]["discount_amount"] == 10.0
    assert by_type["coupon.expired"]["coupon_id"] == expired["id"]
    assert by_type["coupon.expired"]["code"] == "GONE"

    # Later sweeps do not announce it again.
    with session_factory() as session:
        count = (
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.tenant_id == tenant.tenant_id, OutboxEvent.type == "coupon.expired")
        )
        before = session.execute(count).scalar_one()
    time.sleep(2.5)  # two more sweeps
    with session_factory() as session:
        assert session.execute(count).scalar_one() == before == 1


def test_an_order_beyond_the_amounts_bound_is_refused_before_it_is_recorded(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    create_coupon(client, tenant.admin(), code="BOUNDS")
    items = [{"product_id": "yacht", "quantity": 1_000_000, "price": 10**12}]
    for path, body in (
        ("/coupons/validate", {"code": "BOUNDS", "items": items}),
        (
            "/coupons/redeem",
            {"code": "BOUNDS", "participant_id": "u1", "order_id": "o1", "items": items},
        ),
    ):
        response = client.post(f"{GAMIFY}{path}", json=body, headers=tenant.participant())
        assert response.status_code == 422 and response.json["code"] == "validation_error"
