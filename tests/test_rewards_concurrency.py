"""Claims under contention across several worker processes, and a worker killed mid-run.

Correctness comes from the database (row locks, conditional updates, unique constraints),
so these hold with any number of workers.
"""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.models import Claim, Operation, Reward, RewardCode
from tests.builders import (
    GAMIFY,
    claim,
    create_reward,
    final_answer,
    fund_participant,
    run_ledger_verify,
    service_connections_waiting_on_a_lock,
    upload_codes,
    wait_for_operation,
    wait_until,
)
from tests.conftest import TenantKeys

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("worker")]


def _claim_answer(
    flask_app: Flask, headers: dict[str, str], reward_id: str, participant: str, **options: Any
) -> tuple[int, dict[str, Any]]:
    """One claim from its own client; a 202 (worker slower than the wait) is polled to the end."""
    client = flask_app.test_client()
    return final_answer(client, headers, claim(client, headers, reward_id, participant, **options))


def test_200_concurrent_claims_on_50_codes_succeed_exactly_50_times(
    flask_app: Flask,
    tenant: TenantKeys,
    start_worker: Any,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    start_worker(concurrency=4)
    client = flask_app.test_client()
    reward = create_reward(client, tenant.admin())
    upload_codes(client, tenant.admin(), reward["id"], [f"CODE-{index:03d}" for index in range(50)])

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(
            pool.map(
                lambda index: _claim_answer(
                    flask_app, tenant.participant(), reward["id"], f"p{index}"
                ),
                range(200),
            )
        )

    statuses = Counter(status for status, _ in answers)
    assert statuses == {201: 50, 400: 150}
    assert {body["code"] for status, body in answers if status == 400} == {"reward_out_of_stock"}
    codes = [body["code_value"] for status, body in answers if status == 201]
    assert len(set(codes)) == 50
    with session_factory() as session:
        allocated = session.execute(
            select(func.count(), func.count(func.distinct(RewardCode.claim_id))).where(
                RewardCode.reward_id == uuid.UUID(reward["id"]), RewardCode.claim_id.is_not(None)
            )
        ).one()
    assert tuple(allocated) == (50, 50)
    admin_view = client.get(f"{GAMIFY}/admin/rewards/{reward['id']}", headers=tenant.admin()).json
    assert admin_view["available_codes"] == 0
    assert run_ledger_verify(service_env)[0] == 0


def test_50_concurrent_paid_claims_by_one_participant_stop_at_the_balance(
    flask_app: Flask,
    tenant: TenantKeys,
    start_worker: Any,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    start_worker(concurrency=4)
    client = flask_app.test_client()
    reward = create_reward(client, tenant.admin(), points_cost=10, max_claims_per_user=1000)
    fund_participant(session_factory, tenant.tenant_id, "spender", 100)

    with ThreadPoolExecutor(max_workers=25) as pool:
        answers = list(
            pool.map(
                lambda _: _claim_answer(
                    flask_app, tenant.participant(), reward["id"], "spender", points_deduction=True
                ),
                range(50),
            )
        )

    statuses = Counter(status for status, _ in answers)
    assert statuses == {201: 10, 400: 40}
    assert {body["code"] for status, body in answers if status == 400} == {"insufficient_points"}
    assert sorted(body["new_balance"] for status, body in answers if status == 201) == list(
        range(0, 100, 10)
    )
    points = client.get(f"{GAMIFY}/participants/spender/points", headers=tenant.participant())
    assert points.json["balance"] == 0
    assert run_ledger_verify(service_env)[0] == 0


def test_100_concurrent_retries_of_one_idempotency_key_make_one_claim(
    flask_app: Flask,
    tenant: TenantKeys,
    start_worker: Any,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    start_worker(concurrency=4)
    client = flask_app.test_client()
    reward = create_reward(client, tenant.admin(), max_claims_per_user=1000)

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(
            pool.map(
                lambda _: _claim_answer(
                    flask_app, tenant.participant(), reward["id"], "u", idempotency_key="checkout-7"
                ),
                range(100),
            )
        )

    assert {status for status, _ in answers} == {201}
    assert len({body["claim_id"] for _, body in answers}) == 1
    with session_factory() as session:
        claims = session.execute(
            select(func.count())
            .select_from(Claim)
            .where(Claim.reward_id == uuid.UUID(reward["id"]))
        ).scalar_one()
    assert claims == 1
    assert run_ledger_verify(service_env)[0] == 0


@pytest.mark.faults
def test_worker_killed_mid_claims_loses_no_accepted_claim_and_doubles_none(
    make_app: Any,
    tenant: TenantKeys,
    start_worker: Any,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    # A queue of its own, so the worker killed is the one running the claims.
    prefix = f"rewards-test-killed-{uuid.uuid4().hex[:8]}:"
    doomed = start_worker(concurrency=4, REDIS_KEY_PREFIX=prefix)
    client = make_app(redis_key_prefix=prefix).test_client()
    reward = create_reward(client, tenant.admin(), max_claims_per_user=10_000)
    upload_codes(client, tenant.admin(), reward["id"], [f"K-{index:04d}" for index in range(1000)])

    def claim_async(count: int) -> list[str]:
        return [
            claim(client, tenant.participant(), reward["id"], f"p{i % 50}", prefer_async=True).json[
                "operation_id"
            ]
            for i in range(count)
        ]

    def succeeded(operation_ids: list[str]) -> int:
        with session_factory() as session:
            return int(
                session.execute(
                    select(func.count())
                    .select_from(Operation)
                    .where(
                        Operation.id.in_([uuid.UUID(op) for op in operation_ids]),
                        Operation.status == "succeeded",
                    )
                ).scalar_one()
            )

    committed_before = claim_async(150)
    wait_until(lambda: succeeded(committed_before) == 150, 30, "the first claims to finish")
    # Kill the worker (parent and pool children, no goodbye) inside a claim transaction:
    # its drain has locked the next claims and waits for the reward row, held here.
    with session_factory.begin() as blocker:
        blocker.execute(
            select(Reward.id).where(Reward.id == uuid.UUID(reward["id"])).with_for_update()
        )
        in_flight = claim_async(150)
        wait_until(
            lambda: service_connections_waiting_on_a_lock(blocker) > 0, 30, "the drain to block"
        )
        doomed.kill()
        assert succeeded(in_flight) == 0
    operation_ids = committed_before + in_flight
    start_worker(concurrency=2, REDIS_KEY_PREFIX=prefix)

    results = [
        wait_for_operation(client, tenant.participant(), op, timeout=120) for op in operation_ids
    ]

    assert {result["status"] for result in results} == {"succeeded"}
    claim_ids = [result["result"]["claim_id"] for result in results]
    assert len(set(claim_ids)) == 300
    with session_factory() as session:
        rows = session.execute(
            select(Claim.operation_id, Claim.code_value).where(
                Claim.reward_id == uuid.UUID(reward["id"])
            )
        ).all()
    assert len(rows) == 300
    assert {str(operation_id) for operation_id, _ in rows} == set(operation_ids)
    assert len({code for _, code in rows}) == 300
    assert run_ledger_verify(service_env)[0] == 0
