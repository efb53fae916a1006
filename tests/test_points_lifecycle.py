"""Points lifecycle: lots that expire or wait, the order points are spent in, the sweeps
that expire and release them, and what a participant's balance shows of it all.

Awards and spending go through the API and a worker, like a client's; the sweeps run as
the worker's periodic task runs them (app.points.sweeps.sweep_lots), here with an
injected clock days ahead instead of waiting, or after a short real window where the
rule is about real time (points past their expiry that no sweep has reached).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.errors import DomainError
from app.models import LedgerEntry, Participant, PointLot, ProgramSettings
from app.points.awards import award_points
from app.points.balance_changes import Applied, BalanceWrite, apply_changes
from app.points.items import AwardItem
from app.points.lots import LotTerms
from app.points.sweeps import sweep_lots
from tests.builders import (
    claim,
    create_reward,
    run_ledger_verify,
    wait_for,
    wait_for_operation,
)
from tests.conftest import TenantKeys, WorkerProcess
from tests.test_points_api import BASE, award, balance_of, create_tier, deduct, events_of


def days_ahead(days: float) -> Callable[[], datetime]:
    return lambda: utcnow() + timedelta(days=days)


def rows_of(
    session_factory: sessionmaker[Session],
    tenant: TenantKeys,
    participant_id: str,
    *columns: Any,
) -> list[tuple[Any, ...]]:
    """`columns` of a participant's lots or ledger lines (one table), oldest first."""
    table = columns[0].class_
    with session_factory() as session:
        rows = session.execute(
            select(*columns)
            .join(Participant, Participant.id == table.participant_pk)
            .where(
                Participant.tenant_id == tenant.tenant_id,
                Participant.external_id == participant_id,
            )
            .order_by(table.seq)
        )
        return [tuple(row) for row in rows]


def lots_of(
    session_factory: sessionmaker[Session], tenant: TenantKeys, participant_id: str
) -> list[tuple[Any, ...]]:
    """(amount, remaining, pending) of each of a participant's lots, oldest first."""
    return rows_of(
        session_factory,
        tenant,
        participant_id,
        PointLot.amount,
        PointLot.remaining,
        PointLot.pending,
    )


def ledger_types(
    session_factory: sessionmaker[Session], tenant: TenantKeys, participant_id: str
) -> list[tuple[Any, ...]]:
    """(type, amount, balance_after) of a participant's ledger lines, in order."""
    return rows_of(
        session_factory,
        tenant,
        participant_id,
        LedgerEntry.type,
        LedgerEntry.amount,
        LedgerEntry.balance_after,
    )


def awarded(client: FlaskClient, tenant: TenantKeys, pid: str, amount: int, **terms: Any) -> Any:
    response = award(client, tenant, pid, amount, **terms)
    assert response.status_code == 200, response.json
    return response.json


def test_a_deduction_spends_the_soonest_expiring_lot_first_and_open_points_last(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    awarded(client, tenant, "ann", 100)  # open points: available at once, never expire
    awarded(client, tenant, "ann", 50, expires_in_days=30)
    awarded(client, tenant, "ann", 40, expires_in_days=10)
    awarded(client, tenant, "ann", 30, expires_in_days=365)

    spent = deduct(client, tenant, "ann", 70)

    assert spent.status_code == 200, spent.json
    assert spent.json["new_balance"] == 150
    # The 10-day lot is spent (and gone), the 30-day one gave 30; the yearly one and the
    # open points wait.
    assert lots_of(session_factory, tenant, "ann") == [(50, 20, False), (30, 30, False)]
    assert deduct(client, tenant, "ann", 100).status_code == 200
    assert lots_of(session_factory, tenant, "ann") == []
    assert balance_of(client, tenant, "ann")["balance"] == 50  # open points, spent last
    assert run_ledger_verify(service_env, "--tenant", str(tenant.tenant_id))[0] == 0


def test_the_expiry_sweep_expires_what_is_left_of_each_lot_with_a_ledger_line_and_an_event(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    first = awarded(client, tenant, "bea", 80, expires_in_days=7, action="purchase")
    awarded(client, tenant, "bea", 20)
    assert first["expires_at"] is not None and first["available_at"] is None
    assert deduct(client, tenant, "bea", 30).status_code == 200  # 30 of the lot's 80

    report = sweep_lots(session_factory, now=days_ahead(8))

    assert report.expired == 1
    points = balance_of(client, tenant, "bea")
    assert (points["balance"], points["total_earned"], points["total_spent"]) == (20, 100, 30)
    assert points["total_expired"] == 50 and points["lifetime_value"] == 100
    assert ledger_types(session_factory, tenant, "bea")[-1] == ("expire", -50, 20)
    [expired] = events_of(session_factory, tenant, "points.expired")
    assert expired["participant_id"] == "bea"
    assert (expired["amount"], expired["new_balance"]) == (50, 20)
    assert datetime.fromisoformat(expired["expired_at"]) == datetime.fromisoformat(
        first["expires_at"]
    )
    # Sweeping again finds nothing: a lot expires once.
    assert sweep_lots(session_factory, now=days_ahead(9)).expired == 0
    assert run_ledger_verify(service_env, "--tenant", str(tenant.tenant_id))[0] == 0


def test_points_past_their_expiry_are_not_spendable_before_any_sweep_reaches_them(
    db_session: Session, make_tenant: Any
) -> None:
    """In one uncommitted transaction, so that no worker's sweep can reach the lot."""
    tenant = make_tenant()
    an_hour_ago = utcnow() - timedelta(hours=1)
    award_points(
        db_session,
        tenant.tenant_id,
        "live",
        [AwardItem("cat", 60, terms=LotTerms(expires_at=an_hour_ago)), AwardItem("cat", 10)],
        operation_id=None,
    )

    [refused, spent] = apply_changes(
        db_session,
        tenant.tenant_id,
        "live",
        [
            BalanceWrite(uuid.uuid4(), "cat", 20, debit=True),
            BalanceWrite(uuid.uuid4(), "cat", 10, debit=True),
        ],
    )

    assert isinstance(refused, DomainError)
    assert refused.detail == "Insufficient points. Available: 10, requested: 20"
    assert isinstance(spent, Applied) and spent.as_body()["new_balance"] == 60  # not swept yet


def test_a_pending_award_cannot_pay_for_a_claim_until_the_sweep_releases_it(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    reward = create_reward(client, tenant.admin(), points_cost=100)
    answer = awarded(client, tenant, "dan", 150, pending_days=14, reason="Order #1")
    assert answer["new_balance"] == 0 and answer["available_at"] is not None
    points = balance_of(client, tenant, "dan")
    assert (points["balance"], points["pending"], points["total_earned"]) == (0, 150, 0)

    refused = claim(client, tenant.participant(), reward["id"], "dan", points_deduction=True)
    assert refused.status_code == 400, refused.json
    assert refused.json["code"] == "insufficient_points"

    assert sweep_lots(session_factory, now=days_ahead(13)).released == 0
    report = sweep_lots(session_factory, now=days_ahead(15))

    assert report.released == 1
    points = balance_of(client, tenant, "dan")
    assert (points["balance"], points["pending"], points["total_earned"]) == (150, 0, 150)
    assert ledger_types(session_factory, tenant, "dan") == [
        ("award", 150, 0),
        ("release", 150, 150),
    ]
    [released] = events_of(session_factory, tenant, "points.released")
    assert (released["participant_id"], released["amount"], released["new_balance"]) == (
        "dan",
        150,
        150,
    )
    paid = claim(client, tenant.participant(), reward["id"], "dan", points_deduction=True)
    assert paid.status_code == 201, paid.json
    assert paid.json["new_balance"] == 50
    assert run_ledger_verify(service_env, "--tenant", str(tenant.tenant_id))[0] == 0


def test_released_points_count_towards_the_tier_when_they_become_available(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    tier = create_tier(client, tenant, code="silver", name="Silver", level=1, points_required=100)
    assert tier.status_code == 201, tier.json
    answer = awarded(client, tenant, "eve", 120, pending_days=1)
    assert answer["tier_upgrade"] is None

    sweep_lots(session_factory, now=days_ahead(2))

    points = balance_of(client, tenant, "eve")
    assert points["tier"]["current"]["code"] == "silver"
    [upgrade] = events_of(session_factory, tenant, "tier.upgraded")
    assert upgrade["new_tier"]["code"] == "silver" and upgrade["qualifying_points"] == 120


def test_the_programs_default_expiry_counts_from_when_the_points_become_available(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        session.add(ProgramSettings(tenant_id=tenant.tenant_id, env="live", points_expiry_days=30))
    plain = awarded(client, tenant, "fay", 10)
    waiting = awarded(client, tenant, "fay", 20, pending_days=10)
    own = awarded(client, tenant, "fay", 30, expires_in_days=400)

    def days_from_now(instant: str) -> float:
        return (datetime.fromisoformat(instant) - utcnow()) / timedelta(days=1)

    assert 29.9 < days_from_now(plain["expires_at"]) <= 30
    assert 39.9 < days_from_now(waiting["expires_at"]) <= 40
    assert 399.9 < days_from_now(own["expires_at"]) <= 400  # an award's own value wins


def test_the_workers_periodic_sweep_expires_points_on_the_clock(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    """The worker runs the sweeps every SWEEP_INTERVAL_SECONDS (1 s in the tests)."""
    soon = utcnow() + timedelta(seconds=1)
    awarded(client, tenant, "joy", 25, expires_at=soon.isoformat())
    awarded(client, tenant, "joy", 5)

    points = wait_for(
        lambda: balance_of(client, tenant, "joy"),
        lambda points: points["total_expired"] == 25,
        15,
        "the periodic sweep",
    )

    assert points["balance"] == 5


def test_lot_terms_are_checked_when_the_award_is_accepted(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    later = (utcnow() + timedelta(days=3)).isoformat()
    for terms, problem in (
        ({"expires_in_days": 5, "expires_at": later}, "not both"),
        ({"pending_days": 2, "available_at": later}, "not both"),
        ({"expires_in_days": 0}, "greater than or equal to 1"),
        ({"pending_days": 3651}, "less than or equal to 3650"),
        ({"expires_at": (utcnow() - timedelta(minutes=1)).isoformat()}, "in the future"),
        ({"expires_in_days": 2, "pending_days": 2}, "expire after they become available"),
        ({"expires_at": "2030-01-01T00:00:00"}, "timezone"),
    ):
        response = award(client, tenant, "gus", 10, **terms)
        assert response.status_code == 422, (terms, response.json)
        assert problem in str(response.json), (terms, response.json)


def test_award_batch_items_carry_their_own_terms_and_answer_their_own_errors(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    response = client.post(
        f"{BASE}/points/award-batch",
        json={
            "awards": [
                {"participant_id": "hal", "amount": 10, "expires_in_days": 3, "action": "review"},
                {"participant_id": "hal", "amount": 5, "pending_days": 2},
                {"participant_id": "hal", "amount": 7, "expires_in_days": 3, "expires_at": "x"},
                {"participant_id": "hal", "amount": 8, "expires_in_days": True},
                {"participant_id": "hal", "amount": 9, "expires_in_days": [3]},
                {"participant_id": "hal", "amount": 1, "expires_in_days": 1},
            ]
        },
        headers=tenant.participant(),
    )

    assert response.status_code == 200, response.json
    results = response.json["results"]
    assert results[0]["expires_at"] is not None and results[0]["new_balance"] == 10
    assert results[1]["available_at"] is not None and results[1]["new_balance"] == 10
    assert [result["error"]["detail"] for result in results[2:5]] == [
        "expires_at must be an ISO 8601 date-time",
        "expires_in_days must be an integer",  # true is not 1
        "expires_in_days must be an integer",
    ]
    assert results[5]["error"] is None
    assert lots_of(session_factory, tenant, "hal") == [(10, 10, False), (5, 5, True), (1, 1, False)]
    assert balance_of(client, tenant, "hal")["pending"] == 5


def test_a_bulk_upload_takes_expiry_pending_and_action_columns(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    csv_text = (
        "participant_id,amount,action,expires_in_days,pending_days\n"
        "ivy,10,purchase,30,\n"
        "ivy,20,,,5\n"
        "ivy,30,,,\n"
        "ivy,40,,zero,\n"
    )
    response = client.post(
        f"{BASE}/points/award-bulk",
        data=csv_text.encode(),
        content_type="text/csv",
        headers=tenant.admin(),
    )
    assert response.status_code == 202, response.json
    view = wait_for_operation(client, tenant.admin(), response.json["operation_id"])

    assert view["status"] == "succeeded", view
    assert view["result"]["awarded"] == 3 and view["result"]["failed"] == 1
    assert lots_of(session_factory, tenant, "ivy") == [(10, 10, False), (20, 20, True)]
    points = balance_of(client, tenant, "ivy")
    assert (points["balance"], points["pending"], points["expiring_soon"]) == (40, 20, 10)


def test_a_deduction_racing_the_expiry_sweep_never_overdraws_nor_expires_spent_points(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    participants = [f"race-{n}" for n in range(12)]
    soon = utcnow() + timedelta(seconds=2)
    for pid in participants:
        awarded(client, tenant, pid, 50, expires_at=soon.isoformat())
        awarded(client, tenant, pid, 30, expires_in_days=30)
    wait_for(utcnow, lambda now: now > soon - timedelta(milliseconds=300), 5, "near the expiry")

    answers = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        for pid in participants:
            answers.append(deduct(client, tenant, pid, 20).status_code)
        sweep_lots(session_factory)

    sweep_lots(session_factory)
    assert set(answers) <= {200, 400}
    with session_factory() as session:
        rows = session.execute(
            select(Participant.balance, Participant.total_spent, Participant.total_expired).where(
                Participant.tenant_id == tenant.tenant_id
            )
        ).all()
    for balance, spent, expired in rows:
        assert balance >= 0
        assert balance + spent + expired == 80  # nothing expired twice or spent twice
        assert expired <= 50  # only the short lot can have expired
    assert run_ledger_verify(service_env, "--tenant", str(tenant.tenant_id))[0] == 0


# A sweeping process that commits three batches, then dies by SIGKILL in the middle of the
# fourth: its writes made, its transaction not committed.
_SWEEP_KILLED_MID_BATCH = """
import os, signal, sys
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from datetime import timedelta
from app.clock import utcnow
from app.points.sweeps import EXPIRY, sweep_batch
sessions = sessionmaker(bind=create_engine(sys.argv[1]))
later = utcnow() + timedelta(days=2)
for _ in range(3):
    with sessions.begin() as session:
        sweep_batch(session, EXPIRY, later, limit=10)
with sessions.begin() as session:
    sweep_batch(session, EXPIRY, later, limit=10)
    session.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_an_expiry_sweep_killed_mid_run_loses_and_doubles_nothing(
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    with session_factory.begin() as session:
        session.execute(
            Participant.__table__.insert(),
            [
                {
                    "id": uuid.uuid4(),
                    "tenant_id": tenant.tenant_id,
                    "env": "live",
                    "external_id": f"k-{n}",
                    "balance": 0,
                    "total_earned": 0,
                    "total_spent": 0,
                }
                for n in range(1000)
            ],
        )
    # Due for the sweeps below (a clock two days ahead), not for the workers' own sweeps.
    tomorrow = utcnow() + timedelta(days=1)
    with session_factory.begin() as session:
        award_points(
            session,
            tenant.tenant_id,
            "live",
            [
                AwardItem(f"k-{n % 1000}", 5, terms=LotTerms(expires_at=tomorrow))
                for n in range(10_000)
            ],
            operation_id=None,
        )

    killed = subprocess.run(
        [sys.executable, "-c", _SWEEP_KILLED_MID_BATCH, service_env["DATABASE_URL"]],
        env={**os.environ, **service_env},
        timeout=60,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    committed = _expire_lines(session_factory, tenant)
    assert 3 * 10 <= committed < 10_000  # three whole batches (a batch takes whole participants)

    sweep_lots(session_factory, now=days_ahead(2))

    assert _expire_lines(session_factory, tenant) == 10_000
    code, report = run_ledger_verify(service_env, "--tenant", str(tenant.tenant_id))
    assert code == 0, report


def _expire_lines(session_factory: sessionmaker[Session], tenant: TenantKeys) -> int:
    with session_factory() as session:
        return session.execute(
            select(func.count()).where(
                LedgerEntry.tenant_id == tenant.tenant_id, LedgerEntry.type == "expire"
            )
        ).scalar_one()
