"""Streaks and challenges, fed by actions in the pipeline's transaction: periods in the
streak's time zone, grace, milestones paid once per run, the sweep that breaks runs past
their deadline; challenge windows, enrollment, completion paid once, engine claims."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.engagement.streak_sweeps import sweep_streaks
from app.engagement.streaks import Milestone, StreakDef, StreakState, record_activity
from app.models import (
    Challenge,
    Claim,
    Environment,
    OutboxEvent,
    ParticipantStreak,
    Streak,
)
from tests.builders import GAMIFY, create_reward, upload_codes, wait_for, wait_for_operation
from tests.conftest import TenantKeys, WorkerProcess
from tests.test_actions import ACTIONS, act, add_rule, balance

NEW_YORK = ZoneInfo("America/New_York")


def add_streak(session_factory: sessionmaker[Session], tenant: TenantKeys, **fields: Any) -> str:
    streak = Streak(
        tenant_id=tenant.tenant_id,
        env=Environment.LIVE,
        streak_type=fields.pop("streak_type", "daily-purchase"),
        name=fields.pop("name", "Daily purchase"),
        action=fields.pop("action", "purchase"),
        period=fields.pop("period", "daily"),
        milestones=fields.pop("milestones", []),
        **fields,
    )
    with session_factory.begin() as session:
        session.add(streak)
    return streak.streak_type


def add_challenge(session_factory: sessionmaker[Session], tenant: TenantKeys, **fields: Any) -> str:
    challenge = Challenge(
        tenant_id=tenant.tenant_id,
        env=Environment.LIVE,
        name=fields.pop("name", "Five purchases"),
        type=fields.pop("type", "action_count"),
        action=fields.pop("action", "purchase"),
        target=fields.pop("target", 5),
        **fields,
    )
    with session_factory.begin() as session:
        session.add(challenge)
        session.flush()
        return str(challenge.id)


def at(day: int, hour: int = 12) -> str:
    """2026-11-<day> <hour>:00 UTC as ISO 8601."""
    return datetime(2026, 11, day, hour, tzinfo=UTC).isoformat()


def act_in_batch(
    client: FlaskClient, tenant: TenantKeys, participant_id: str, *occurred: str
) -> list[Any]:
    """Purchases by one participant at these instants, in one batch; the results."""
    actions = [
        {"participant_id": participant_id, "action": "purchase", "occurred_at": instant}
        for instant in occurred
    ]
    response = client.post(
        f"{ACTIONS}/batch", json={"actions": actions}, headers=tenant.participant()
    )
    assert response.status_code == 200, response.json
    assert response.json["failed"] == 0, response.json
    return list(response.json["results"])


def streak_of(
    client: FlaskClient, tenant: TenantKeys, participant_id: str, streak_type: str
) -> Any:
    response = client.get(
        f"{GAMIFY}/participants/{participant_id}/streaks/{streak_type}",
        headers=tenant.participant(),
    )
    assert response.status_code == 200, response.json
    return response.json


# --- streaks, decided -------------------------------------------------------------------


def daily(grace_hours: int = 0, zone: str = "UTC", period: str = "daily") -> StreakDef:
    return StreakDef.of(
        {
            "id": "s1",
            "streak_type": "login",
            "name": "Login",
            "action": "login",
            "period": period,
            "timezone": zone,
            "grace_period_hours": grace_hours,
            "milestones": [{"days": 3, "points": 25}, {"days": 2, "points": 5}],
        }
    )


def test_a_run_counts_once_per_period_and_pays_each_milestone_once() -> None:
    streak, state = daily(), StreakState()
    steps = [
        record_activity(streak, state, datetime(2026, 11, day, hour, tzinfo=UTC))
        for day, hour in ((2, 9), (2, 18), (3, 1), (4, 23))
    ]
    assert [(s.counted, s.current) for s in steps] == [(True, 1), (False, 1), (True, 2), (True, 3)]
    assert [s.milestone for s in steps] == [None, None, Milestone(2, 5), Milestone(3, 25)]
    assert state.deadline == datetime(2026, 11, 6, tzinfo=UTC)  # the end of the 5th
    # Reported late: an action before the last counted day changes nothing.
    assert not record_activity(streak, state, datetime(2026, 11, 3, 5, tzinfo=UTC)).counted
    broken = record_activity(streak, state, datetime(2026, 11, 6, 0, 30, tzinfo=UTC))
    assert (broken.broken, broken.current, broken.milestone, state.run) == (3, 1, None, 2)
    assert state.longest == 3


def test_grace_hours_let_a_late_action_count_for_the_missed_period() -> None:
    streak, state = daily(grace_hours=6), StreakState()
    record_activity(streak, state, datetime(2026, 11, 2, 20, tzinfo=UTC))
    # The 3rd passed without an action; 04:00 on the 4th is within the 6 hours of grace.
    late = record_activity(streak, state, datetime(2026, 11, 4, 4, tzinfo=UTC))
    assert (late.counted, late.current, state.last_period) == (True, 2, date(2026, 11, 3))
    again = record_activity(streak, state, datetime(2026, 11, 4, 10, tzinfo=UTC))
    assert (again.counted, again.current) == (True, 3)
    assert state.deadline == datetime(2026, 11, 6, 6, tzinfo=UTC)


def test_periods_follow_the_streaks_time_zone_and_weeks_start_on_monday() -> None:
    streak, state = daily(zone="America/New_York"), StreakState()
    # 02:00 UTC on the 3rd is still the 2nd in New York: the same day as 15:00 UTC on the 2nd.
    record_activity(streak, state, datetime(2026, 11, 2, 15, tzinfo=UTC))
    assert not record_activity(streak, state, datetime(2026, 11, 3, 2, tzinfo=UTC)).counted
    assert state.deadline == datetime(2026, 11, 4, tzinfo=NEW_YORK)
    weekly, run = daily(period="weekly"), StreakState()
    record_activity(weekly, run, datetime(2026, 11, 8, 12, tzinfo=UTC))  # a Sunday
    assert record_activity(weekly, run, datetime(2026, 11, 9, 12, tzinfo=UTC)).current == 2
    assert run.last_period == date(2026, 11, 9)


# --- streaks, through the API -------------------------------------------------------------


def test_actions_extend_a_streak_and_its_milestone_pays_once_per_run(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    add_streak(session_factory, tenant, milestones=[{"days": 2, "points": 50}])
    # These days are long past, so the workers' sweep (every second here) may break a run
    # between two requests: each run is sent as one batch (one transaction) so that it
    # cannot come between the actions of a run, and the sweep may only do what the gap does.
    first_run = act_in_batch(client, tenant, "sam", at(2), at(3), at(3, 20))
    assert [r["streaks"] for r in first_run] == [
        [{"streak_type": "daily-purchase", "current_count": 1, "milestone_reached": None}],
        [{"streak_type": "daily-purchase", "current_count": 2, "milestone_reached": 2}],
        [{"streak_type": "daily-purchase", "current_count": 2, "milestone_reached": None}],
    ]
    assert [r["new_balance"] for r in first_run] == [0, 50, 50]
    # Broken by the gap (inline, or by the sweep first), the new run pays its milestone again.
    second_run = act_in_batch(client, tenant, "sam", at(6), at(7))
    assert [r["streaks"][0]["current_count"] for r in second_run] == [1, 2]
    assert balance(client, tenant, "sam") == 100
    with session_factory() as session:
        types = session.execute(
            select(OutboxEvent.type, OutboxEvent.payload)
            .where(
                OutboxEvent.tenant_id == tenant.tenant_id,
                OutboxEvent.type.in_(["streak.milestone", "streak.broken"]),
            )
            .order_by(OutboxEvent.created_at)
        ).all()
    kinds = [kind for kind, _ in types]
    assert kinds[:3] == ["streak.milestone", "streak.broken", "streak.milestone"]
    assert kinds[3:] in ([], ["streak.broken"])  # the sweep, once the second run's day passed
    assert types[1][1] == {
        "participant_id": "sam",
        "streak_type": "daily-purchase",
        "count": 2,
        "run": 1,
    }


def test_streaks_record_and_read(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    add_streak(
        session_factory,
        tenant,
        streak_type="daily-login",
        action="login",
        grace_period_hours=2,
        milestones=[{"days": 7, "points": 100}],
    )
    add_streak(session_factory, tenant, streak_type="retired", active=False)
    record = client.post(
        f"{GAMIFY}/streaks/record",
        json={"participant_id": "tia", "streak_type": "daily-login"},
        headers=tenant.participant(),
    )
    assert record.status_code == 200, record.json
    body = record.json
    assert (body["previous_count"], body["current_count"], body["counted"]) == (0, 1, True)
    today = utcnow().date()
    expected_deadline = datetime.combine(today + timedelta(days=2), datetime.min.time(), UTC)
    assert datetime.fromisoformat(body["next_deadline"]) == expected_deadline + timedelta(hours=2)
    view = streak_of(client, tenant, "tia", "daily-login")
    assert view["current_count"] == 1 and view["next_milestone"] == {"days": 7, "points": 100}
    listed = client.get(f"{GAMIFY}/participants/tia/streaks", headers=tenant.participant())
    assert [s["streak_type"] for s in listed.json["streaks"]] == ["daily-login"]
    for missing in ("retired", "unknown"):
        response = client.post(
            f"{GAMIFY}/streaks/record",
            json={"participant_id": "tia", "streak_type": missing},
            headers=tenant.participant(),
        )
        assert response.status_code == 404 and response.json["code"] == "streak_not_active"
        read = client.get(
            f"{GAMIFY}/participants/tia/streaks/{missing}", headers=tenant.participant()
        )
        assert read.status_code == 404 and read.json["code"] == "streak_not_active"


def test_the_sweep_breaks_a_run_at_the_streaks_midnight_not_utcs(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    add_streak(session_factory, tenant, streak_type="ny", timezone="America/New_York")
    # 23:00 in New York yesterday (New York's yesterday: already past) is 03:00 or 04:00 UTC
    # today: the run's last day is yesterday, and it breaks at the end of today in New York,
    # not at UTC's midnight. That is still to come, so the workers' own sweep leaves it be.
    yesterday = utcnow().astimezone(NEW_YORK).date() - timedelta(days=1)
    late_yesterday = datetime.combine(yesterday, time(23), NEW_YORK)
    response = act(client, tenant, "uma", "purchase", occurred_at=late_yesterday.isoformat())
    assert response.json["streaks"][0]["current_count"] == 1
    deadline = datetime.combine(yesterday + timedelta(days=2), time(0), NEW_YORK)
    assert deadline.astimezone(UTC).hour in (4, 5)  # New York's midnight, not UTC's

    def uma_after_sweep_at(instant: datetime) -> tuple[ParticipantStreak, list[Any]]:
        # The sweep is global: other tests' runs may break too, so read uma's alone.
        sweep_streaks(session_factory, now=lambda: instant)
        with session_factory() as session:
            run = session.execute(
                select(ParticipantStreak)
                .join(Streak, Streak.id == ParticipantStreak.streak_id)
                .where(Streak.tenant_id == tenant.tenant_id)
            ).scalar_one()
            events = session.execute(
                select(OutboxEvent.payload).where(
                    OutboxEvent.tenant_id == tenant.tenant_id, OutboxEvent.type == "streak.broken"
                )
            ).scalars()
            return run, list(events)

    run, events = uma_after_sweep_at(deadline - timedelta(minutes=1))
    assert (run.current_count, run.run, events) == (1, 1, [])
    run, events = uma_after_sweep_at(deadline + timedelta(seconds=1))
    assert (run.current_count, run.longest_count, run.run) == (0, 1, 2)
    assert events == [{"participant_id": "uma", "streak_type": "ny", "count": 1, "run": 1}]
    assert streak_of(client, tenant, "uma", "ny")["current_count"] == 0
    # Nothing more is due: a second sweep breaks nothing.
    run, events = uma_after_sweep_at(deadline + timedelta(days=1))
    assert (run.run, len(events)) == (2, 1)


def test_concurrent_actions_of_one_participant_pay_a_milestone_once(
    flask_app: Any,
    tenant: TenantKeys,
    start_worker: Any,
    session_factory: sessionmaker[Session],
) -> None:
    start_worker(concurrency=4)
    add_streak(session_factory, tenant, milestones=[{"days": 1, "points": 40}])
    challenge = add_challenge(
        session_factory, tenant, target=3, reward={"type": "points", "amount": 60}
    )

    def post(index: int) -> None:
        client = flask_app.test_client()
        response = client.post(
            f"{GAMIFY}/actions",
            json={"participant_id": "val", "action": "purchase"},
            headers={**tenant.participant(), "Prefer": "respond-async"},
        )
        view = wait_for_operation(
            client, tenant.participant(), response.json["operation_id"], timeout=60
        )
        assert view["status"] == "succeeded", view

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(post, range(16)))
    client = flask_app.test_client()
    assert balance(client, tenant, "val") == 40 + 60
    progress = client.get(
        f"{GAMIFY}/participants/val/challenges/{challenge}", headers=tenant.participant()
    ).json
    assert (progress["current"], progress["completed"]) == (3, True)


# --- challenges -------------------------------------------------------------------------


def test_a_challenge_counts_actions_in_its_window_and_pays_once(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    now = utcnow()
    challenge = add_challenge(
        session_factory,
        tenant,
        target=2,
        reward={"type": "points", "amount": 500},
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=1),
    )
    early = act(
        client, tenant, "wes", "purchase", occurred_at=(now - timedelta(days=2)).isoformat()
    )
    assert early.json["challenges"] == []
    first = act(client, tenant, "wes", "purchase")
    assert first.json["challenges"] == [
        {"challenge_id": challenge, "current": 1, "target": 2, "completed": False}
    ]
    second = act(client, tenant, "wes", "purchase")
    assert second.json["challenges"] == [
        {"challenge_id": challenge, "current": 2, "target": 2, "completed": True}
    ]
    assert second.json["new_balance"] == 500
    assert act(client, tenant, "wes", "purchase").json["challenges"] == []
    assert balance(client, tenant, "wes") == 500
    progress = client.get(
        f"{GAMIFY}/participants/wes/challenges/{challenge}", headers=tenant.participant()
    ).json
    assert progress["completed"] and progress["progress_percentage"] == 100.0
    assert 0 < progress["time_remaining_seconds"] <= 86_400
    listed = client.get(
        f"{GAMIFY}/challenges",
        query_string={"participant_id": "wes", "active": "true"},
        headers=tenant.participant(),
    ).json["challenges"]
    assert [
        (c["challenge_id"], c["participants_count"], c["completions_count"]) for c in listed
    ] == [(challenge, 1, 1)]
    assert listed[0]["progress"]["current"] == 2
    with session_factory() as session:
        [event] = session.execute(
            select(OutboxEvent.payload).where(
                OutboxEvent.tenant_id == tenant.tenant_id,
                OutboxEvent.type == "challenge.completed",
            )
        ).scalars()
    assert event["challenge_id"] == challenge and event["points"] == 500


def test_points_challenges_count_every_credit_and_enrollment_gates_counting(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    add_rule(session_factory, tenant, formula="amount")
    gated = add_challenge(
        session_factory,
        tenant,
        name="Earn 100",
        type="points_earned",
        action=None,
        target=100,
        requires_enrollment=True,
    )
    ended = add_challenge(
        session_factory, tenant, name="Over", ends_at=utcnow() - timedelta(hours=1)
    )
    not_enrolled = client.get(
        f"{GAMIFY}/participants/xia/challenges/{gated}", headers=tenant.participant()
    )
    assert not_enrolled.status_code == 404 and not_enrolled.json["code"] == "challenge_not_enrolled"
    act(client, tenant, "xia", "purchase", properties={"amount": 70})  # not enrolled yet
    join = client.post(
        f"{GAMIFY}/challenges/{gated}/join",
        json={"participant_id": "xia"},
        headers=tenant.participant(),
    )
    assert join.status_code == 200, join.json
    assert (join.json["current"], join.json["target"], join.json["completed"]) == (0, 100, False)
    act(client, tenant, "xia", "purchase", properties={"amount": 70})
    award = client.post(
        f"{GAMIFY}/points/award",
        json={"participant_id": "xia", "amount": 50},
        headers=tenant.participant(),
    )
    assert award.status_code == 200
    progress = client.get(
        f"{GAMIFY}/participants/xia/challenges/{gated}", headers=tenant.participant()
    ).json
    assert (progress["current"], progress["completed"]) == (100, True)
    over = client.post(
        f"{GAMIFY}/challenges/{ended}/join",
        json={"participant_id": "xia"},
        headers=tenant.participant(),
    )
    assert over.status_code == 400 and over.json["code"] == "challenge_ended"
    for unknown in (str(uuid.uuid4()), "nope"):
        missing = client.post(
            f"{GAMIFY}/challenges/{unknown}/join",
            json={"participant_id": "xia"},
            headers=tenant.participant(),
        )
        assert missing.status_code == 404 and missing.json["code"] == "challenge_not_found"


def test_a_reward_challenge_makes_one_claim_through_the_claim_path(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    reward = create_reward(client, tenant.admin(), name="Free coffee", points_cost=0)
    upload_codes(client, tenant.admin(), reward["id"], ["COFFEE-1", "COFFEE-2"])
    challenge = add_challenge(
        session_factory, tenant, target=1, reward={"type": "reward", "reward_id": reward["id"]}
    )
    assert act(client, tenant, "yan", "purchase").json["challenges"][0]["completed"]
    act(client, tenant, "yan", "purchase")

    def claims() -> list[Claim]:
        with session_factory() as session:
            return list(
                session.execute(
                    select(Claim).where(Claim.reward_id == uuid.UUID(reward["id"]))
                ).scalars()
            )

    [claim] = wait_for(claims, bool, timeout=20, what="the challenge's claim")
    assert claim.participant_id == "yan" and claim.code_value == "COFFEE-1"
    assert claim.idempotency_key == f"challenge:{challenge}:yan"
