"""Actions: the one way in for what participants do. A worker applies an action in one
transaction: earning rules credit points (through the ledger, lots and multipliers),
badges count and are earned; the answer lists what it caused."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.engagement.pipeline import ActionWrite
from app.models import (
    Action,
    Badge,
    BadgeProgress,
    Challenge,
    ChallengeProgress,
    EarningRule,
    EarningRuleUsage,
    Environment,
    Leaderboard,
    LeaderboardScore,
    LedgerEntry,
    OutboxEvent,
    Participant,
    ParticipantBadge,
    ParticipantStreak,
    Streak,
)
from app.points.balance_changes import apply_changes
from tests.builders import GAMIFY, wait_for_operation
from tests.conftest import TenantKeys, WorkerProcess

ACTIONS = f"{GAMIFY}/actions"


def add_rule(session_factory: sessionmaker[Session], tenant: TenantKeys, **fields: Any) -> str:
    rule = EarningRule(
        tenant_id=tenant.tenant_id,
        env=Environment.LIVE,
        name=fields.pop("name", "Purchase points"),
        action=fields.pop("action", "purchase"),
        formula=fields.pop("formula", "amount"),
        **fields,
    )
    with session_factory.begin() as session:
        session.add(rule)
        session.flush()
        return str(rule.id)


def add_badge(
    session_factory: sessionmaker[Session],
    tenant: TenantKeys,
    criteria: dict[str, Any],
    **fields: Any,
) -> str:
    badge = Badge(
        tenant_id=tenant.tenant_id,
        env=Environment.LIVE,
        name=fields.pop("name", "Regular"),
        criteria=criteria,
        **fields,
    )
    with session_factory.begin() as session:
        session.add(badge)
        session.flush()
        return str(badge.id)


def act(
    client: FlaskClient, tenant: TenantKeys, participant_id: str, action: str, **fields: Any
) -> Any:
    body = {"participant_id": participant_id, "action": action, **fields}
    return client.post(ACTIONS, json=body, headers=tenant.participant())


def balance(client: FlaskClient, tenant: TenantKeys, participant_id: str) -> int:
    response = client.get(
        f"{GAMIFY}/participants/{participant_id}/points", headers=tenant.participant()
    )
    assert response.status_code == 200, response.json
    return int(response.json["balance"])


def test_an_action_earns_its_rules_points_and_lists_them(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    double = add_rule(session_factory, tenant, name="Double", formula="amount * 2")
    bonus = add_rule(session_factory, tenant, name="Bonus", formula="5")
    add_rule(session_factory, tenant, name="Signup", action="signup", formula="100")
    response = act(client, tenant, "ann", "purchase", properties={"amount": 10.7})
    assert response.status_code == 201, response.json
    body = response.json
    assert body["participant_id"] == "ann" and body["action"] == "purchase"
    assert [(p["rule_id"], p["points"]) for p in body["points_awarded"]] == [
        (double, 21),
        (bonus, 5),
    ]
    assert body["new_balance"] == 26 == balance(client, tenant, "ann")
    assert body["badges_awarded"] == [] and body["tier_upgrade"] is None
    with session_factory() as session:
        lines = session.execute(
            select(LedgerEntry.rule_id, LedgerEntry.amount, LedgerEntry.action)
            .where(LedgerEntry.tenant_id == tenant.tenant_id)
            .order_by(LedgerEntry.seq)
        ).all()
        assert [(str(r), a, act_) for r, a, act_ in lines] == [
            (double, 21, "purchase"),
            (bonus, 5, "purchase"),
        ]
        [stored] = session.execute(
            select(Action).where(Action.tenant_id == tenant.tenant_id)
        ).scalars()
        assert str(stored.id) == body["action_id"] and stored.properties == {"amount": 10.7}


def rule_points(response: Any) -> list[int]:
    assert response.status_code == 201, response.json
    return [each["points"] for each in response.json["points_awarded"]]


def test_conditions_max_points_and_missing_properties_decide_whether_a_rule_pays(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    add_rule(
        session_factory,
        tenant,
        formula="floor(amount / 10)",
        conditions={"min_amount": 50, "equals": {"channel": "web"}},
        max_points=20,
    )
    assert (
        rule_points(
            act(client, tenant, "bo", "purchase", properties={"amount": 49, "channel": "web"})
        )
        == []
    )
    assert (
        rule_points(
            act(client, tenant, "bo", "purchase", properties={"amount": 75, "channel": "shop"})
        )
        == []
    )
    assert rule_points(act(client, tenant, "bo", "purchase", properties={"channel": "web"})) == []
    assert rule_points(
        act(client, tenant, "bo", "purchase", properties={"amount": 75, "channel": "web"})
    ) == [7]
    assert rule_points(
        act(client, tenant, "bo", "purchase", properties={"amount": 990, "channel": "web"})
    ) == [20]
    # A property the formula reads that is not a number: the rule does not apply.
    assert (
        rule_points(
            act(client, tenant, "bo", "purchase", properties={"amount": "990", "channel": "web"})
        )
        == []
    )
    assert balance(client, tenant, "bo") == 27


def test_weekend_and_dated_multipliers_go_by_the_rules_time_zone(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    add_rule(
        session_factory,
        tenant,
        formula="10",
        timezone="America/New_York",
        multipliers={
            "weekend": 2,
            "dates": [{"from": "2026-11-27", "to": "2026-11-27", "factor": 3}],
        },
    )
    # Saturday 2026-11-21 01:00 UTC is still Friday evening in New York.
    friday_night = "2026-11-21T01:00:00+00:00"
    saturday = "2026-11-21T15:00:00+00:00"
    black_friday = "2026-11-27T12:00:00-05:00"
    assert rule_points(act(client, tenant, "cy", "purchase", occurred_at=friday_night)) == [10]
    assert rule_points(act(client, tenant, "cy", "purchase", occurred_at=saturday)) == [20]
    assert rule_points(act(client, tenant, "cy", "purchase", occurred_at=black_friday)) == [30]


def test_a_holiday_multiplier_applies_on_the_programs_holidays_in_the_rules_time_zone(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    program = client.patch(
        f"{GAMIFY}/admin/program",
        json={"holidays": ["2026-11-28", "2026-11-26"]},  # Thanksgiving, a Saturday
        headers=tenant.admin(),
    )
    assert program.status_code == 200, program.json
    created = client.post(
        f"{GAMIFY}/admin/earning-rules",
        json={
            "name": "Holiday purchases",
            "action": "purchase",
            "formula": "10",
            "multipliers": {"weekend": 2, "holiday": 3},
            "timezone": "America/New_York",
        },
        headers=tenant.admin(),
    )
    assert created.status_code == 201, created.json
    assert created.json["multipliers"] == {"weekend": 2, "holiday": 3}
    # 27 November 02:00 UTC is still Thanksgiving evening in New York; 12:00 UTC is not.
    thanksgiving_night = "2026-11-27T02:00:00+00:00"
    friday = "2026-11-27T12:00:00+00:00"
    holiday_saturday = "2026-11-28T15:00:00+00:00"
    plain_sunday = "2026-11-29T15:00:00+00:00"
    assert rule_points(act(client, tenant, "hal", "purchase", occurred_at=thanksgiving_night)) == [
        30
    ]
    assert rule_points(act(client, tenant, "hal", "purchase", occurred_at=friday)) == [10]
    # Weekend and holiday both apply: multiplied.
    assert rule_points(act(client, tenant, "hal", "purchase", occurred_at=holiday_saturday)) == [60]
    assert rule_points(act(client, tenant, "hal", "purchase", occurred_at=plain_sunday)) == [20]


def test_caps_cut_an_award_to_what_remains_per_day_and_in_total(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    add_rule(session_factory, tenant, formula="amount", caps={"per_day": 50, "total": 120})
    day_one = "2026-11-02T10:00:00+00:00"
    day_two = "2026-11-03T10:00:00+00:00"
    day_three = "2026-11-04T10:00:00+00:00"
    assert rule_points(
        act(client, tenant, "di", "purchase", properties={"amount": 30}, occurred_at=day_one)
    ) == [30]
    assert rule_points(
        act(client, tenant, "di", "purchase", properties={"amount": 30}, occurred_at=day_one)
    ) == [20]
    assert (
        rule_points(
            act(client, tenant, "di", "purchase", properties={"amount": 30}, occurred_at=day_one)
        )
        == []
    )
    assert rule_points(
        act(client, tenant, "di", "purchase", properties={"amount": 60}, occurred_at=day_two)
    ) == [50]
    assert rule_points(
        act(client, tenant, "di", "purchase", properties={"amount": 60}, occurred_at=day_three)
    ) == [20]
    assert (
        rule_points(
            act(client, tenant, "di", "purchase", properties={"amount": 60}, occurred_at=day_three)
        )
        == []
    )
    # Caps are per participant.
    assert rule_points(
        act(client, tenant, "eve", "purchase", properties={"amount": 60}, occurred_at=day_three)
    ) == [50]
    assert balance(client, tenant, "di") == 120


def test_a_rule_counts_only_inside_its_window_and_while_active(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    now = utcnow()
    add_rule(
        session_factory,
        tenant,
        name="Launch",
        formula="7",
        starts_at=now - timedelta(days=2),
        ends_at=now - timedelta(days=1),
    )
    add_rule(session_factory, tenant, name="Retired", formula="9", active=False)
    add_rule(session_factory, tenant, name="Always", formula="1")
    during = (now - timedelta(days=1, hours=12)).isoformat()
    assert rule_points(act(client, tenant, "fay", "purchase", occurred_at=during)) == [7, 1]
    assert rule_points(act(client, tenant, "fay", "purchase")) == [1]


def test_rule_points_are_multiplied_by_the_participants_tier(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    add_rule(session_factory, tenant, formula="amount")
    for tier in (
        {"code": "bronze", "name": "Bronze", "level": 1, "points_required": 0},
        {
            "code": "gold",
            "name": "Gold",
            "level": 2,
            "points_required": 100,
            "points_multiplier": 1.5,
        },
    ):
        assert (
            client.post(f"{GAMIFY}/admin/tiers", json=tier, headers=tenant.admin()).status_code
            == 201
        )
    first = act(client, tenant, "gus", "purchase", properties={"amount": 100})
    assert first.json["tier_upgrade"]["code"] == "gold"
    assert rule_points(first) == [100]
    assert rule_points(act(client, tenant, "gus", "purchase", properties={"amount": 10})) == [15]


def test_bad_actions_are_refused_with_422(client: FlaskClient, tenant: TenantKeys) -> None:
    future = (utcnow() + timedelta(hours=1)).isoformat()
    for body in (
        {"participant_id": "hal"},
        {"participant_id": "hal", "action": ""},
        {"participant_id": "hal", "action": "purchase", "properties": {"cart": {"total": 5}}},
        {"participant_id": "hal", "action": "purchase", "properties": {"items": [1, 2]}},
        {"participant_id": "hal", "action": "purchase", "properties": {"note": "x" * 5000}},
        {"participant_id": "hal", "action": "purchase", "occurred_at": future},
        {"participant_id": "hal", "action": "purchase", "occurred_at": "2026-11-02T10:00:00"},
        {"participant_id": "hal", "action": "purchase", "surprise": 1},
    ):
        response = client.post(ACTIONS, json=body, headers=tenant.participant())
        assert response.status_code == 422, (body, response.json)
        assert response.json["code"] == "validation_error"


def test_a_batch_applies_each_action_on_its_own_and_answers_in_order(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    add_rule(session_factory, tenant, formula="amount")
    actions = [
        {"participant_id": "ida", "action": "purchase", "properties": {"amount": 5}},
        {"participant_id": "ida", "action": "purchase", "properties": {"nested": {"a": 1}}},
        {"participant_id": "jo", "action": "purchase", "properties": {"amount": 7}},
        {"participant_id": "ida", "action": "purchase", "properties": {"amount": 6}},
        "not an object",
        {"participant_id": "jo", "action": "login"},
    ]
    response = client.post(
        f"{ACTIONS}/batch", json={"actions": actions}, headers=tenant.participant()
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["processed"], body["failed"]) == (4, 2)
    results = body["results"]
    assert [r["error"]["code"] if r["error"] else None for r in results] == [
        None,
        "invalid_action",
        None,
        None,
        "invalid_action",
        None,
    ]
    assert results[1]["participant_id"] == "ida" and "properties" in results[1]["error"]["detail"]
    assert [r["new_balance"] for r in results if not r["error"]] == [5, 7, 11, 7]
    assert results[5]["points_awarded"] == [] and results[5]["action_id"]
    with session_factory() as session:
        stored = session.execute(
            select(func.count()).select_from(Action).where(Action.tenant_id == tenant.tenant_id)
        ).scalar_one()
    assert stored == 4


def test_a_replayed_action_is_applied_once(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    add_rule(session_factory, tenant, formula="3")
    first = act(client, tenant, "kim", "purchase", idempotency_key="order-1")
    again = act(client, tenant, "kim", "purchase", idempotency_key="order-1")
    assert first.status_code == again.status_code == 201
    assert first.json == again.json
    assert balance(client, tenant, "kim") == 3


def test_an_action_answers_202_and_polls_when_asked_async(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    response = client.post(
        ACTIONS,
        json={"participant_id": "lea", "action": "login"},
        headers={**tenant.participant(), "Prefer": "respond-async"},
    )
    assert response.status_code == 202, response.json
    view = wait_for_operation(client, tenant.participant(), response.json["operation_id"])
    assert view["status"] == "succeeded" and view["result"]["action"] == "login"


# --- badges ------------------------------------------------------------------------------


def badges_of(client: FlaskClient, tenant: TenantKeys, participant_id: str) -> list[str]:
    response = client.get(
        f"{GAMIFY}/participants/{participant_id}/badges", headers=tenant.participant()
    )
    assert response.status_code == 200, response.json
    return [badge["badge_id"] for badge in response.json["badges"]]


def progress_of(client: FlaskClient, tenant: TenantKeys, participant_id: str, badge_id: str) -> Any:
    response = client.get(
        f"{GAMIFY}/participants/{participant_id}/badges/{badge_id}/progress",
        headers=tenant.participant(),
    )
    assert response.status_code == 200, response.json
    return response.json


def test_an_action_count_badge_is_earned_once_at_its_count_with_its_points_reward(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    regular = add_badge(
        session_factory,
        tenant,
        {"type": "action_count", "action": "login", "count": 3},
        points_reward=50,
    )
    for expected in (0, 1, 2):
        assert progress_of(client, tenant, "max", regular)["current"] == expected
        response = act(client, tenant, "max", "login")
        assert response.status_code == 201, response.json
        earned = response.json["badges_awarded"]
        if expected < 2:
            assert earned == []
    assert [(b["badge_id"], b["name"], b["points"]) for b in earned] == [(regular, "Regular", 50)]
    assert response.json["new_balance"] == 50
    assert act(client, tenant, "max", "login").json["badges_awarded"] == []
    assert badges_of(client, tenant, "max") == [regular]
    progress = progress_of(client, tenant, "max", regular)
    assert (
        progress["current"],
        progress["target"],
        progress["progress_percentage"],
        progress["earned"],
    ) == (3, 3, 100.0, True)
    assert balance(client, tenant, "max") == 50
    with session_factory() as session:
        [event] = session.execute(
            select(OutboxEvent.payload).where(
                OutboxEvent.tenant_id == tenant.tenant_id, OutboxEvent.type == "badge.awarded"
            )
        ).scalars()
    assert event["badge_id"] == regular and event["participant_id"] == "max"
    assert event["source"] == "criteria" and event["points_reward"] == 50


def test_points_badges_count_every_credit_from_their_creation(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    add_rule(session_factory, tenant, formula="amount")
    before = client.post(
        f"{GAMIFY}/points/award",
        json={"participant_id": "ned", "amount": 500},
        headers=tenant.participant(),
    )
    assert before.status_code == 200
    hundred = add_badge(
        session_factory, tenant, {"type": "points_earned", "points": 100}, name="Hundred"
    )
    # Its reward counts toward the next one.
    add_badge(session_factory, tenant, {"type": "points_earned", "points": 1000}, name="Thousand")
    assert rule_points(act(client, tenant, "ned", "purchase", properties={"amount": 60})) == [60]
    assert progress_of(client, tenant, "ned", hundred)["current"] == 60
    award = client.post(
        f"{GAMIFY}/points/award",
        json={"participant_id": "ned", "amount": 40},
        headers=tenant.participant(),
    )
    assert award.status_code == 200, award.json
    assert badges_of(client, tenant, "ned") == [hundred]
    # A plain award with an action counts as that action, without rule points.
    counter = add_badge(
        session_factory,
        tenant,
        {"type": "action_count", "action": "purchase", "count": 1},
        name="First order",
    )
    award = client.post(
        f"{GAMIFY}/points/award",
        json={"participant_id": "ned", "amount": 5, "action": "purchase"},
        headers=tenant.participant(),
    )
    assert award.status_code == 200 and award.json["amount"] == 5
    assert set(badges_of(client, tenant, "ned")) == {hundred, counter}


def test_a_badge_awarded_by_hand_then_again_is_a_conflict(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    vip = add_badge(session_factory, tenant, {"type": "manual"}, name="VIP", points_reward=10)
    retired = add_badge(session_factory, tenant, {"type": "manual"}, name="Old", active=False)
    path = f"{GAMIFY}/badges/award"
    first = client.post(
        path, json={"participant_id": "oli", "badge_id": vip}, headers=tenant.participant()
    )
    assert first.status_code == 201, first.json
    assert (first.json["badge_id"], first.json["name"], first.json["points_awarded"]) == (
        vip,
        "VIP",
        10,
    )
    assert first.json["new_balance"] == 10
    again = client.post(
        path, json={"participant_id": "oli", "badge_id": vip}, headers=tenant.participant()
    )
    assert again.status_code == 409 and again.json["code"] == "badge_already_awarded"
    for unknown in (str(uuid.uuid4()), "not-a-uuid", retired):
        response = client.post(
            path, json={"participant_id": "oli", "badge_id": unknown}, headers=tenant.participant()
        )
        assert response.status_code == 404 and response.json["code"] == "badge_not_found", unknown
    assert badges_of(client, tenant, "oli") == [vip]
    assert balance(client, tenant, "oli") == 10
    missing = client.get(
        f"{GAMIFY}/participants/oli/badges/{uuid.uuid4()}/progress", headers=tenant.participant()
    )
    assert missing.status_code == 404 and missing.json["code"] == "badge_not_found"


def test_another_tenants_badge_is_not_found(
    client: FlaskClient,
    make_tenant: Any,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    ours, theirs = make_tenant("Ours"), make_tenant("Theirs")
    badge = add_badge(session_factory, theirs, {"type": "manual"})
    response = client.post(
        f"{GAMIFY}/badges/award",
        json={"participant_id": "pia", "badge_id": badge},
        headers=ours.participant(),
    )
    assert response.status_code == 404 and response.json["code"] == "badge_not_found"
    progress = client.get(
        f"{GAMIFY}/participants/pia/badges/{badge}/progress", headers=ours.participant()
    )
    assert progress.status_code == 404


def test_concurrent_actions_of_one_participant_earn_a_badge_once(
    flask_app: Any,
    tenant: TenantKeys,
    start_worker: Any,
    session_factory: sessionmaker[Session],
) -> None:
    start_worker(concurrency=4)
    add_rule(session_factory, tenant, formula="1")
    badge = add_badge(
        session_factory,
        tenant,
        {"type": "action_count", "action": "purchase", "count": 5},
        points_reward=100,
    )

    def post(index: int) -> int:
        response = flask_app.test_client().post(
            ACTIONS,
            json={"participant_id": "quin", "action": "purchase"},
            headers={**tenant.participant(), "Prefer": "respond-async"},
        )
        assert response.status_code == 202, response.json
        view = wait_for_operation(
            flask_app.test_client(), tenant.participant(), response.json["operation_id"], timeout=60
        )
        assert view["status"] == "succeeded", view
        return len(view["result"]["badges_awarded"])

    with ThreadPoolExecutor(8) as pool:
        earned = list(pool.map(post, range(24)))
    assert sum(earned) == 1
    with session_factory() as session:
        holders = session.execute(
            select(func.count())
            .select_from(ParticipantBadge)
            .where(ParticipantBadge.badge_id == uuid.UUID(badge))
        ).scalar_one()
    assert holders == 1
    client = flask_app.test_client()
    assert balance(client, tenant, "quin") == 24 + 100
    assert progress_of(client, tenant, "quin", badge)["current"] == 5


def test_everything_an_action_causes_is_written_in_one_transaction_or_not_at_all(
    session_factory: sessionmaker[Session], tenant: TenantKeys
) -> None:
    """One action that earns rule points, reaches a streak milestone, completes a challenge,
    earns a badge and scores on a leaderboard: a failure while writing the badge (the last
    statement of the pass) leaves none of it behind."""
    rule = uuid.UUID(add_rule(session_factory, tenant, formula="10", caps={"per_day": 100}))
    badge = uuid.UUID(
        add_badge(
            session_factory, tenant, {"type": "action_count", "action": "purchase", "count": 1}
        )
    )
    with session_factory.begin() as session:
        streak = Streak(
            tenant_id=tenant.tenant_id,
            env=Environment.LIVE,
            streak_type="daily",
            name="Daily",
            action="purchase",
            period="daily",
            milestones=[{"days": 1, "points": 5}],
        )
        challenge = Challenge(
            tenant_id=tenant.tenant_id,
            env=Environment.LIVE,
            name="First purchase",
            type="action_count",
            action="purchase",
            target=1,
            reward={"type": "points", "amount": 50},
        )
        board = Leaderboard(
            tenant_id=tenant.tenant_id,
            env=Environment.LIVE,
            name="Top",
            metric="points_earned",
            period="all_time",
        )
        session.add_all([streak, challenge, board])
        session.flush()
        streak_id, challenge_id, board_id = streak.id, challenge.id, board.id
        session.execute(text(FAIL_ON_BADGE))
    try:
        with pytest.raises(DBAPIError, match="badge writes refused"):
            with session_factory.begin() as session:
                apply_changes(
                    session,
                    tenant.tenant_id,
                    Environment.LIVE,
                    [ActionWrite(uuid.uuid4(), "rae", "purchase", {}, utcnow())],
                )
    finally:
        with session_factory.begin() as session:
            session.execute(text("DROP TRIGGER refuse_badges ON participant_badges"))
    left_behind = {
        "ledger lines": select(LedgerEntry.id).where(LedgerEntry.tenant_id == tenant.tenant_id),
        "actions": select(Action.id).where(Action.tenant_id == tenant.tenant_id),
        "participants": select(Participant.id).where(Participant.tenant_id == tenant.tenant_id),
        "rule usage": select(EarningRuleUsage.day).where(EarningRuleUsage.rule_id == rule),
        "badge progress": select(BadgeProgress.current).where(BadgeProgress.badge_id == badge),
        "streak": select(ParticipantStreak.run).where(ParticipantStreak.streak_id == streak_id),
        "challenge": select(ChallengeProgress.current).where(
            ChallengeProgress.challenge_id == challenge_id
        ),
        "leaderboard": select(LeaderboardScore.score).where(
            LeaderboardScore.leaderboard_id == board_id
        ),
        "events": select(OutboxEvent.id).where(OutboxEvent.tenant_id == tenant.tenant_id),
    }
    with session_factory() as session:
        for what, query in left_behind.items():
            assert session.execute(query).first() is None, what
    # Without the fault, the same action writes all of it.
    with session_factory.begin() as session:
        apply_changes(
            session,
            tenant.tenant_id,
            Environment.LIVE,
            [ActionWrite(uuid.uuid4(), "rae", "purchase", {}, utcnow())],
        )
    with session_factory() as session:
        for what, query in left_behind.items():
            assert session.execute(query).first() is not None, what
        [balance] = session.execute(
            select(Participant.balance).where(Participant.tenant_id == tenant.tenant_id)
        ).scalars()
    assert balance == 10 + 5 + 50  # the rule, the milestone, the challenge


FAIL_ON_BADGE = """
    CREATE OR REPLACE FUNCTION refuse_badge_writes() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'badge writes refused'; END $$;
    CREATE TRIGGER refuse_badges BEFORE INSERT ON participant_badges
    FOR EACH ROW EXECUTE FUNCTION refuse_badge_writes();
"""


def test_action_names_are_any_text(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    """Names travel to PostgreSQL as array elements: quotes, backslashes and accents too."""
    names = ("café", 'say "hi"', "back\\slash", "a,b")
    for points, name in enumerate(names, start=1):
        add_rule(session_factory, tenant, name=name, action=name, formula=str(points))
    for points, name in enumerate(names, start=1):
        assert rule_points(act(client, tenant, "uli", name)) == [points], name
