"""A participant's tier status, and a tier set by hand: `GET /participants/{id}/tier` and
`PATCH /admin/participants/{id}/tier`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.models import LedgerEntry, Participant
from app.points.tier_sweeps import evaluate_tier, sweep_tiers
from app.points.tiers import TierLadder, TierRung
from tests.builders import wait_for
from tests.conftest import TenantKeys, WorkerProcess
from tests.test_points_api import BASE, award, create_tier, events_of


def ladder(client: FlaskClient, tenant: TenantKeys) -> None:
    for code, level, required in (("silver", 1, 1000), ("gold", 2, 5000), ("platinum", 3, 15000)):
        response = create_tier(
            client, tenant, code=code, name=code.title(), level=level, points_required=required
        )
        assert response.status_code == 201, response.json


def status_of(client: FlaskClient, tenant: TenantKeys, participant_id: str) -> Any:
    response = client.get(
        f"{BASE}/participants/{participant_id}/tier", headers=tenant.participant()
    )
    assert response.status_code == 200, response.json
    return response.json


def set_tier(client: FlaskClient, tenant: TenantKeys, participant_id: str, **body: Any) -> Any:
    return client.patch(
        f"{BASE}/admin/participants/{participant_id}/tier", json=body, headers=tenant.admin()
    )


def test_the_tier_status_shows_progress_towards_the_next_tier_as_the_vendors_do(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    ladder(client, tenant)
    assert award(client, tenant, "ana", 8500).status_code == 200

    status = status_of(client, tenant, "ana")

    assert status["current_tier"] == {"code": "gold", "name": "Gold", "level": 2}
    assert status["next_tier"] == {
        "code": "platinum",
        "name": "Platinum",
        "level": 3,
        "points_required": 15000,
    }
    assert (status["qualifying_points"], status["points_to_next_tier"]) == (8500, 6500)
    assert status["progress_percentage"] == 56.67
    assert abs(datetime.fromisoformat(status["tier_since"]) - utcnow()) < timedelta(minutes=1)
    assert (status["tier_expires_at"], status["points_to_maintain"]) == (None, None)


def test_below_every_tier_and_at_the_top(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    ladder(client, tenant)
    nobody = status_of(client, tenant, "nobody")
    assert award(client, tenant, "top", 20000).status_code == 200
    top = status_of(client, tenant, "top")

    assert nobody["current_tier"] is None and nobody["next_tier"]["code"] == "silver"
    assert (nobody["qualifying_points"], nobody["progress_percentage"]) == (0, 0.0)
    assert top["current_tier"]["code"] == "platinum" and top["next_tier"] is None
    assert (top["points_to_next_tier"], top["progress_percentage"]) == (None, 100.0)


def test_an_admin_sets_a_tier_by_hand_and_a_locked_tier_does_not_climb(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    ladder(client, tenant)
    assert award(client, tenant, "ben", 6000).status_code == 200  # gold
    locked_until = utcnow() + timedelta(days=30)

    response = set_tier(
        client,
        tenant,
        "ben",
        tier_code="silver",
        reason="fraud review",
        locked_until=locked_until.isoformat(),
    )

    assert response.status_code == 200, response.json
    assert response.json["current_tier"]["code"] == "silver"
    assert datetime.fromisoformat(response.json["tier_locked_until"]) == locked_until
    [downgraded] = events_of(session_factory, tenant, "tier.downgraded")
    assert downgraded["previous_tier"] == {"code": "gold", "name": "Gold", "level": 2}
    assert downgraded["new_tier"]["code"] == "silver" and downgraded["reason"] == "fraud review"
    # Locked: an award that would climb past gold leaves the tier where the admin put it.
    crossing = award(client, tenant, "ben", 10000)
    assert crossing.status_code == 200 and crossing.json["tier_upgrade"] is None
    assert status_of(client, tenant, "ben")["current_tier"]["code"] == "silver"
    audit = client.get(f"{BASE}/admin/audit-log", headers=tenant.admin()).json
    assert audit["entries"][0]["action"] == "participant.tier_set"


def test_an_unlocked_tier_set_by_hand_climbs_again_with_the_next_award(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    ladder(client, tenant)
    assert award(client, tenant, "cal", 1200).status_code == 200  # silver

    raised = set_tier(client, tenant, "cal", tier_code="gold", reason="vip_promotion")
    assert raised.status_code == 200, raised.json
    [upgraded] = events_of(session_factory, tenant, "tier.upgraded")[-1:]
    assert upgraded["new_tier"]["code"] == "gold" and upgraded["reason"] == "vip_promotion"

    assert award(client, tenant, "cal", 20000).json["tier_upgrade"]["code"] == "platinum"


def test_setting_a_tier_refuses_unknown_tiers_participants_and_past_locks(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    ladder(client, tenant)
    assert award(client, tenant, "dee", 10).status_code == 200

    unknown_tier = set_tier(client, tenant, "dee", tier_code="diamond", reason="x")
    unknown_participant = set_tier(client, tenant, "ghost", tier_code="gold", reason="x")
    past = set_tier(
        client,
        tenant,
        "dee",
        tier_code="gold",
        reason="x",
        locked_until=(utcnow() - timedelta(days=1)).isoformat(),
    )
    participant_key = client.patch(
        f"{BASE}/admin/participants/dee/tier",
        json={"tier_code": "gold", "reason": "x"},
        headers=tenant.participant(),
    )

    assert (unknown_tier.status_code, unknown_tier.json["code"]) == (404, "tier_not_found")
    assert (unknown_participant.status_code, unknown_participant.json["code"]) == (
        404,
        "participant_not_found",
    )
    assert past.status_code == 422 and "locked_until must be in the future" in str(past.json)
    assert participant_key.status_code == 403
    assert status_of(client, tenant, "dee")["current_tier"] is None


# --- rolling qualification ---------------------------------------------------------------


def rolling(client: FlaskClient, tenant: TenantKeys, window_days: int = 30) -> None:
    response = client.patch(
        f"{BASE}/admin/program",
        json={"tier_qualification": {"basis": "rolling", "window_days": window_days}},
        headers=tenant.admin(),
    )
    assert response.status_code == 200, response.json


def days_ahead(days: float) -> Callable[[], datetime]:
    return lambda: utcnow() + timedelta(days=days)


def tier_code_of(
    session_factory: sessionmaker[Session], tenant: TenantKeys, participant_id: str
) -> str | None:
    with session_factory() as session:
        return session.execute(
            select(Participant.tier_code).where(
                Participant.tenant_id == tenant.tenant_id,
                Participant.external_id == participant_id,
            )
        ).scalar_one()


def age_awards(
    session_factory: sessionmaker[Session], tenant: TenantKeys, participant_id: str, days: int
) -> None:
    """Make a participant's awards so far `days` older, as if awarded then."""
    with session_factory.begin() as session:
        session.execute(
            update(LedgerEntry)
            .where(
                LedgerEntry.participant_pk
                == select(Participant.id)
                .where(
                    Participant.tenant_id == tenant.tenant_id,
                    Participant.external_id == participant_id,
                )
                .scalar_subquery()
            )
            .values(created_at=LedgerEntry.created_at - timedelta(days=days))
        )


def test_a_rolling_tier_lapses_when_its_points_leave_the_window(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    ladder(client, tenant)
    rolling(client, tenant, window_days=30)
    assert award(client, tenant, "eva", 6000).json["tier_upgrade"]["code"] == "gold"

    status = status_of(client, tenant, "eva")
    assert (status["current_tier"]["code"], status["qualifying_points"]) == ("gold", 6000)
    assert status["points_to_maintain"] == 0
    lapse = datetime.fromisoformat(status["tier_expires_at"]) - utcnow()
    assert timedelta(days=29, hours=23) < lapse <= timedelta(days=30)

    sweep_tiers(session_factory, now=days_ahead(29))
    assert tier_code_of(session_factory, tenant, "eva") == "gold"
    sweep_tiers(session_factory, now=days_ahead(31))

    assert tier_code_of(session_factory, tenant, "eva") is None
    [downgraded] = events_of(session_factory, tenant, "tier.downgraded")
    assert downgraded["previous_tier"] == {"code": "gold", "name": "Gold", "level": 2}
    assert (downgraded["new_tier"], downgraded["qualifying_points"]) == (None, 0)


def test_a_rolling_tier_falls_to_the_tier_the_points_left_in_the_window_reach(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    ladder(client, tenant)
    rolling(client, tenant, window_days=30)
    assert award(client, tenant, "fin", 4000).status_code == 200
    age_awards(session_factory, tenant, "fin", days=20)  # 4,000 earned 20 days ago
    assert award(client, tenant, "fin", 2000).json["tier_upgrade"]["code"] == "gold"

    sweep_tiers(session_factory, now=days_ahead(15))  # the 4,000 left the window

    assert tier_code_of(session_factory, tenant, "fin") == "silver"
    [downgraded] = events_of(session_factory, tenant, "tier.downgraded")
    assert downgraded["new_tier"]["code"] == "silver"
    assert downgraded["qualifying_points"] == 2000


def test_the_workers_tier_sweep_moves_down_a_participant_whose_points_aged_out(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    """On the real clock: the worker runs the tier sweep every SWEEP_INTERVAL_SECONDS."""
    ladder(client, tenant)
    rolling(client, tenant, window_days=30)
    assert award(client, tenant, "hal", 1500).json["tier_upgrade"]["code"] == "silver"
    age_awards(session_factory, tenant, "hal", days=40)

    wait_for(
        lambda: tier_code_of(session_factory, tenant, "hal"),
        lambda code: code is None,
        15,
        "the workers' tier sweep",
    )

    balance = client.get(f"{BASE}/participants/hal/points", headers=tenant.participant()).json
    status = status_of(client, tenant, "hal")
    assert (balance["total_earned"], balance["tier"]["qualifying_points"]) == (1500, 0)
    assert (status["current_tier"], status["qualifying_points"]) == (None, 0)
    # A new award climbs on the window's points only: 900 reach no tier.
    assert award(client, tenant, "hal", 900).json["tier_upgrade"] is None


def test_a_locked_tier_and_a_lifetime_program_are_left_alone_by_the_tier_sweep(
    client: FlaskClient,
    make_tenant: Any,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    locked_program, lifetime_program = make_tenant("Locked"), make_tenant("Lifetime")
    for tenant in (locked_program, lifetime_program):
        ladder(client, tenant)
        assert award(client, tenant, "gia", 6000).status_code == 200
    rolling(client, locked_program, window_days=30)
    kept = set_tier(
        client,
        locked_program,
        "gia",
        tier_code="gold",
        reason="vip",
        locked_until=(utcnow() + timedelta(days=60)).isoformat(),
    )
    assert kept.status_code == 200, kept.json

    sweep_tiers(session_factory, now=days_ahead(40))

    assert tier_code_of(session_factory, locked_program, "gia") == "gold"
    assert tier_code_of(session_factory, lifetime_program, "gia") == "gold"
    sweep_tiers(session_factory, now=days_ahead(61))  # the lock has ended
    assert tier_code_of(session_factory, locked_program, "gia") is None


def test_evaluating_a_rolling_tier_is_a_rule_of_the_credits_in_the_window() -> None:
    now = utcnow()
    silver = TierRung("silver", "Silver", 1, 1000, Decimal(1))
    gold = TierRung("gold", "Gold", 2, 5000, Decimal(1))
    rungs = TierLadder([silver, gold])
    newest_first = [(now - timedelta(days=2), 3000), (now - timedelta(days=10), 2500)]

    kept = evaluate_tier(rungs, gold, newest_first, 30, now)
    fallen = evaluate_tier(rungs, gold, newest_first[:1], 30, now)

    assert (kept.tier, kept.downgraded, kept.qualifying_points) == (gold, False, 5500)
    assert kept.expires_at == now - timedelta(days=10) + timedelta(days=30)  # both needed
    assert (fallen.tier, fallen.downgraded) == (silver, True)
    assert fallen.expires_at == now - timedelta(days=2) + timedelta(days=30)
    assert evaluate_tier(rungs, silver, [], 30, now).tier is None
