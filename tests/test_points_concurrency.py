"""Concurrent awards and deductions through several worker processes: no lost update,
no negative balance, one tier upgrade per crossing; the ledger verifies afterwards."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.models import LedgerEntry, OutboxEvent, Participant
from app.points.tiers import delete_tier
from tests.builders import (
    create_reward,
    fund_participant,
    run_ledger_verify,
    service_connections_waiting_on_a_lock,
    upload_codes,
    wait_for_operation,
    wait_until,
)
from tests.conftest import TenantKeys, WorkerProcess

BASE = "/api/v1/gamify"


def post_and_settle(
    flask_app: Flask, tenant: TenantKeys, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """The write's final answer, polling the operation if the sync wait ran out."""
    client = flask_app.test_client()
    response = client.post(f"{BASE}{path}", json=body, headers=tenant.participant())
    if response.status_code != 202:
        return response.status_code, response.json
    view = wait_for_operation(
        client, tenant.participant(), response.json["operation_id"], timeout=120
    )
    if view["status"] == "succeeded":
        return 200, view["result"]
    return view["error"]["status"], view["error"]


def test_1000_concurrent_awards_and_deductions_never_lose_an_update_or_go_below_zero(
    flask_app: Flask,
    tenant: TenantKeys,
    start_worker: Any,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    start_worker(concurrency=4)
    chooser = random.Random(20261123)
    participants = [f"racer_{n}" for n in range(20)]
    writes = [
        (
            "/points/award" if chooser.random() < 0.6 else "/points/deduct",
            {"participant_id": chooser.choice(participants), "amount": chooser.randint(1, 12)},
        )
        for _ in range(1000)
    ]
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda write: post_and_settle(flask_app, tenant, *write), writes))

    earned: Counter[str] = Counter()
    spent: Counter[str] = Counter()
    applied = 0
    for (path, body), (status, answer) in zip(writes, answers, strict=True):
        if status == 200:
            applied += 1
            assert answer["new_balance"] >= 0
            (earned if path == "/points/award" else spent)[body["participant_id"]] += body["amount"]
        else:
            assert (path, status, answer["code"]) == ("/points/deduct", 400, "insufficient_points")
    assert sum(spent.values()) > 0, "no deduction succeeded: the test proves nothing"
    assert applied < 1000, "no deduction was refused: the test proves nothing"

    with session_factory() as session:
        rows = session.execute(
            select(
                Participant.external_id,
                Participant.balance,
                Participant.total_earned,
                Participant.total_spent,
            ).where(Participant.tenant_id == tenant.tenant_id)
        ).all()
        entries = session.execute(
            select(func.count()).where(LedgerEntry.tenant_id == tenant.tenant_id)
        ).scalar_one()
    assert entries == applied
    for external_id, balance, total_earned, total_spent in rows:
        assert (balance, total_earned, total_spent) == (
            earned[external_id] - spent[external_id],
            earned[external_id],
            spent[external_id],
        ), external_id
    code, report = run_ledger_verify(service_env)
    assert (code, report["violations"]) == (0, [])


def test_two_concurrent_awards_crossing_a_tier_threshold_report_the_upgrade_once(
    flask_app: Flask,
    tenant: TenantKeys,
    start_worker: Any,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    start_worker(concurrency=4)
    client = flask_app.test_client()
    created = client.post(
        f"{BASE}/admin/tiers",
        json={"code": "silver", "name": "Silver", "level": 1, "points_required": 100},
        headers=tenant.admin(),
    )
    assert created.status_code == 201
    climbers = [f"climber_{n}" for n in range(10)]
    start = client.post(
        f"{BASE}/points/award-batch",
        json={"awards": [{"participant_id": name, "amount": 90} for name in climbers]},
        headers=tenant.participant(),
    )
    assert start.json["processed"] == 10
    crossings = [{"participant_id": name, "amount": 20} for name in climbers for _ in range(2)]
    ready = threading.Barrier(len(crossings))

    def cross(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ready.wait()
        return post_and_settle(flask_app, tenant, "/points/award", body)

    with ThreadPoolExecutor(max_workers=len(crossings)) as pool:
        answers = list(pool.map(cross, crossings))

    upgrades: Counter[str] = Counter()
    for body, (status, answer) in zip(crossings, answers, strict=True):
        assert status == 200, answer
        if answer["tier_upgrade"] is not None:
            assert answer["tier_upgrade"]["code"] == "silver"
            upgrades[body["participant_id"]] += 1
    assert upgrades == dict.fromkeys(climbers, 1)
    with session_factory() as session:
        events = session.execute(
            select(OutboxEvent.payload["participant_id"].as_string()).where(
                OutboxEvent.tenant_id == tenant.tenant_id, OutboxEvent.type == "tier.upgraded"
            )
        ).scalars()
        assert sorted(events) == sorted(climbers)
        tiers = session.execute(
            select(Participant.tier_code, func.count())
            .where(Participant.tenant_id == tenant.tenant_id)
            .group_by(Participant.tier_code)
        ).all()
    assert [tuple(row) for row in tiers] == [("silver", 10)]
    code, report = run_ledger_verify(service_env)
    assert (code, report["violations"]) == (0, [])


def test_a_tier_change_racing_its_deletion_answers_tier_not_found(
    flask_app: Flask, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    client = flask_app.test_client()
    created = client.post(
        f"{BASE}/admin/tiers",
        json={"code": "gold", "name": "Gold", "level": 2, "points_required": 500},
        headers=tenant.admin(),
    )
    assert created.status_code == 201
    with session_factory() as deleting:
        # The delete holds the row; the PATCH starts meanwhile and must wait for it.
        delete_tier(deleting, tenant.tenant_id, "live", "gold")
        with ThreadPoolExecutor(max_workers=1) as pool:
            patch = pool.submit(
                client.patch, f"{BASE}/admin/tiers/gold", json={"color": "#FFD700"},
                headers=tenant.admin(),
            )  # fmt: skip
            wait_until(
                lambda: service_connections_waiting_on_a_lock(deleting) > 0,
                30,
                "the PATCH to wait for the row the delete holds",
            )
            assert not patch.done()
            deleting.commit()
            response = patch.result(timeout=30)
    assert response.status_code == 404
    assert response.json["code"] == "tier_not_found"


def test_spread_awards_deductions_claims_and_award_batches_on_shared_participants_never_deadlock(
    flask_app: Flask,
    tenant: TenantKeys,
    worker: WorkerProcess,
    start_worker: Any,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    """Every kind of write that locks participants, at once, through several worker
    processes: balance lanes, claim batches (reward lock first) and award batches take
    their locks in the one order, so PostgreSQL never has to break a deadlock (a broken
    one would be retried, and only the workers' logs would tell)."""
    workers = [worker, start_worker(concurrency=4)]
    client = flask_app.test_client()
    chooser = random.Random(20261201)
    participants = [f"mixer_{n}" for n in range(10)]
    for participant_id in participants[:5]:
        fund_participant(session_factory, tenant.tenant_id, participant_id, 30)
    rewards = []
    for number in range(4):
        reward = create_reward(client, tenant.admin(), points_cost=7, max_claims_per_user=100)
        upload_codes(client, tenant.admin(), reward["id"], [f"MIX{number}-{n}" for n in range(60)])
        rewards.append(reward["id"])
    writes: list[tuple[str, dict[str, Any]]] = []
    for _ in range(600):
        roll, participant_id = chooser.random(), chooser.choice(participants)
        if roll < 0.35:
            writes.append(("/points/award", {"participant_id": participant_id, "amount": 9}))
        elif roll < 0.65:
            writes.append(("/points/deduct", {"participant_id": participant_id, "amount": 8}))
        elif roll < 0.9:
            path = f"/rewards/{chooser.choice(rewards)}/claim"
            writes.append((path, {"participant_id": participant_id, "points_deduction": True}))
        else:
            batch = [{"participant_id": p, "amount": 3} for p in chooser.sample(participants, 4)]
            writes.append(("/points/award-batch", {"awards": batch}))

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda write: post_and_settle(flask_app, tenant, *write), writes))

    refused: Counter[str] = Counter()
    for (path, _), (status, answer) in zip(writes, answers, strict=True):
        if status in (200, 201):
            continue
        assert (status, answer["code"]) == (400, "insufficient_points"), (path, answer)
        refused["claim" if "/claim" in path else path] += 1
    assert refused["/points/deduct"] and refused["claim"], "nothing was refused: proves nothing"
    assert len(refused) == 2  # awards and award batches are never refused
    for process in workers:
        assert "deadlock detected" not in process.log_path.read_text()
    code, report = run_ledger_verify(service_env)
    assert (code, report["violations"]) == (0, [])
