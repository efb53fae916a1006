"""Coupon redemptions under contention across several worker processes: usage is counted
exactly once per redemption, whatever lanes the codes fall in."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.coupons.redemption_batches import execute_redemptions
from app.errors import DomainError
from app.models import CouponRedemption, Operation
from tests.builders import (
    GAMIFY,
    create_coupon,
    final_answer,
    redeem_coupon,
    wait_for_operation,
)
from tests.conftest import TenantKeys

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("worker")]


def _redeem_at_once(
    flask_app: Flask, headers: dict[str, str], redemptions: list[tuple[str, str, str]]
) -> list[tuple[int, dict[str, Any]]]:
    """Each (code, participant, order) redeemed from its own client, 32 at a time; their
    answers, in order."""

    def redeem(code: str, participant: str, order: str) -> tuple[int, dict[str, Any]]:
        client = flask_app.test_client()
        response = redeem_coupon(client, headers, code, participant, order, order_amount=20)
        return final_answer(client, headers, response)

    with ThreadPoolExecutor(max_workers=32) as pool:
        return list(pool.map(lambda redemption: redeem(*redemption), redemptions))


def _live_redemptions(session_factory: sessionmaker[Session], coupon_id: str) -> int:
    with session_factory() as session:
        return session.execute(
            select(func.count())
            .select_from(CouponRedemption)
            .where(
                CouponRedemption.coupon_id == uuid.UUID(coupon_id),
                CouponRedemption.status == "redeemed",
            )
        ).scalar_one()


def _assert_counted_once(
    flask_app: Flask,
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
    coupon_id: str,
    answers: list[tuple[int, dict[str, Any]]],
    *,
    accepted: int,
    refusal: str,
) -> None:
    """`accepted` redemptions answered 201, each its own, the others refused with
    `refusal`; the coupon's usage_count and its live redemption rows both say `accepted`."""
    statuses = Counter(status for status, _ in answers)
    assert statuses == {201: accepted, 400: len(answers) - accepted}
    assert {body["code"] for status, body in answers if status == 400} == {refusal}
    assert len({body["redemption_id"] for status, body in answers if status == 201}) == accepted
    response = flask_app.test_client().get(
        f"{GAMIFY}/admin/coupons/{coupon_id}", headers=tenant.admin()
    )
    assert response.json["usage_count"] == accepted
    assert _live_redemptions(session_factory, coupon_id) == accepted


def test_500_concurrent_redemptions_of_a_100_use_coupon_succeed_exactly_100_times(
    flask_app: Flask,
    tenant: TenantKeys,
    start_worker: Any,
    session_factory: sessionmaker[Session],
) -> None:
    start_worker(concurrency=4)
    coupon = create_coupon(flask_app.test_client(), tenant.admin(), code="DROP", usage_limit=100)

    answers = _redeem_at_once(
        flask_app, tenant.participant(), [("DROP", f"p{n}", f"order-{n}") for n in range(500)]
    )

    _assert_counted_once(
        flask_app,
        tenant,
        session_factory,
        coupon["id"],
        answers,
        accepted=100,
        refusal="coupon_usage_limit",
    )


def test_concurrent_redemptions_by_one_participant_stop_at_the_per_user_limit(
    flask_app: Flask,
    tenant: TenantKeys,
    start_worker: Any,
    session_factory: sessionmaker[Session],
) -> None:
    start_worker(concurrency=4)
    coupon = create_coupon(
        flask_app.test_client(), tenant.admin(), code="THRICE", usage_limit_per_user=3
    )

    answers = _redeem_at_once(
        flask_app, tenant.participant(), [("THRICE", "greedy", f"order-{n}") for n in range(50)]
    )

    _assert_counted_once(
        flask_app,
        tenant,
        session_factory,
        coupon["id"],
        answers,
        accepted=3,
        refusal="coupon_already_used",
    )


def test_generated_codes_in_every_lane_share_the_coupons_usage_limit(
    flask_app: Flask,
    tenant: TenantKeys,
    start_worker: Any,
    session_factory: sessionmaker[Session],
) -> None:
    """Codes of one coupon fall in different lanes, drained side by side; the coupon's
    row lock still counts each use once."""
    start_worker(concurrency=4)
    client = flask_app.test_client()
    coupon = create_coupon(client, tenant.admin(), usage_limit=60)
    generated = client.post(
        f"{GAMIFY}/admin/coupons/{coupon['id']}/generate",
        json={"count": 200},
        headers=tenant.admin(),
    )
    wait_for_operation(client, tenant.admin(), generated.json["operation_id"])
    codes = [
        code["code"]
        for page in (1, 2)
        for code in client.get(
            f"{GAMIFY}/admin/coupons/{coupon['id']}/codes?page_size=100&page={page}",
            headers=tenant.admin(),
        ).json["codes"]
    ]
    assert len(codes) == 200

    answers = _redeem_at_once(
        flask_app, tenant.participant(), [(codes[n], f"p{n}", f"order-{n}") for n in range(200)]
    )

    _assert_counted_once(
        flask_app,
        tenant,
        session_factory,
        coupon["id"],
        answers,
        accepted=60,
        refusal="coupon_usage_limit",
    )


def test_a_first_redemption_waits_for_another_lanes_first_redemption_of_the_participant(
    flask_app: Flask, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    """Two batches, as two lanes' drains would run them, each redeeming a different
    new_customers_only coupon for the same new participant: the second waits for the
    first to commit, then sees a returning customer."""
    client = flask_app.test_client()
    for code in ("FIRST-A", "FIRST-B"):
        create_coupon(client, tenant.admin(), code=code, conditions={"new_customers_only": True})

    def batch(code: str) -> list[Operation]:
        payload = {"code": code, "participant_id": "newbie", "order_id": code}
        return [Operation(id=uuid.uuid4(), tenant_id=tenant.tenant_id, env="live", payload=payload)]

    with session_factory.begin() as first:
        [first_answer] = execute_redemptions(first, batch("FIRST-A")).values()
        with ThreadPoolExecutor(max_workers=1) as pool:

            def second_batch() -> Any:
                with session_factory.begin() as second:
                    return next(iter(execute_redemptions(second, batch("FIRST-B")).values()))

            second = pool.submit(second_batch)
            time.sleep(0.5)
            assert not second.done(), "the second batch decided before the first committed"
            first.commit()
            second_answer = second.result(timeout=10)
    assert first_answer["status"] == "redeemed"
    assert isinstance(second_answer, DomainError) and second_answer.code == "coupon_not_eligible"
