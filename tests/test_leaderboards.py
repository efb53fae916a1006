"""Leaderboards: scores kept in PostgreSQL by the action pipeline, read from Redis sorted
sets rebuilt from PostgreSQL when missing; competition ranks, ties by who reached the
score first, periods in the leaderboard's time zone, rank-change events."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import redis
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.engagement.leaderboard_reads import LeaderboardReader, find_leaderboard
from app.models import (
    Environment,
    Leaderboard,
    LeaderboardScore,
    OutboxEvent,
    Participant,
    ParticipantBadge,
)
from tests.builders import GAMIFY, wait_for_operation
from tests.conftest import TenantKeys, WorkerProcess
from tests.test_actions import act, add_badge, add_rule
from tests.test_streaks_and_challenges import add_streak


def add_leaderboard(
    session_factory: sessionmaker[Session], tenant: TenantKeys, **fields: Any
) -> str:
    board = Leaderboard(
        tenant_id=tenant.tenant_id,
        env=Environment.LIVE,
        name=fields.pop("name", "Top earners"),
        metric=fields.pop("metric", "points_earned"),
        period=fields.pop("period", "all_time"),
        **fields,
    )
    with session_factory.begin() as session:
        session.add(board)
        session.flush()
        return str(board.id)


def award(client: FlaskClient, tenant: TenantKeys, participant_id: str, amount: int) -> None:
    response = client.post(
        f"{GAMIFY}/points/award",
        json={"participant_id": participant_id, "amount": amount},
        headers=tenant.participant(),
    )
    assert response.status_code == 200, response.json


def board_of(client: FlaskClient, tenant: TenantKeys, board: str, **query: Any) -> Any:
    response = client.get(
        f"{GAMIFY}/leaderboards/{board}", query_string=query, headers=tenant.participant()
    )
    assert response.status_code == 200, response.json
    return response.json


def entries(
    client: FlaskClient, tenant: TenantKeys, board: str, **query: Any
) -> list[tuple[int, str, int]]:
    return [
        (e["rank"], e["participant_id"], e["score"])
        for e in board_of(client, tenant, board, **query)["entries"]
    ]


def test_points_earned_ranks_every_credit_since_creation_with_ties_sharing_a_rank(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    award(client, tenant, "ann", 1000)  # before the leaderboard: not counted
    board = add_leaderboard(session_factory, tenant)
    add_rule(session_factory, tenant, formula="amount")
    add_streak(session_factory, tenant, milestones=[{"days": 1, "points": 5}])
    award(client, tenant, "bob", 30)
    act(client, tenant, "ann", "purchase", properties={"amount": 25})  # 25 + a 5-point milestone
    award(client, tenant, "cat", 30)
    award(client, tenant, "dan", 10)
    assert entries(client, tenant, board) == [
        (1, "bob", 30),
        (1, "ann", 30),
        (1, "cat", 30),
        (4, "dan", 10),
    ]
    assert entries(client, tenant, board, limit=2, offset=1) == [(1, "ann", 30), (1, "cat", 30)]
    assert entries(client, tenant, board, limit=2, offset=3) == [(4, "dan", 10)]
    standing = client.get(
        f"{GAMIFY}/leaderboards/{board}/participants/cat", headers=tenant.participant()
    ).json
    assert (standing["rank"], standing["score"]) == (1, 30)
    assert standing["above"] == {"rank": 1, "participant_id": "ann", "score": 30}
    assert standing["below"] == {"rank": 4, "participant_id": "dan", "score": 10}
    nobody = client.get(
        f"{GAMIFY}/leaderboards/{board}/participants/eve", headers=tenant.participant()
    ).json
    assert (nobody["rank"], nobody["score"], nobody["above"]) == (None, 0, None)
    award(client, tenant, "dan", 25)
    assert entries(client, tenant, board)[0] == (1, "dan", 35)


def test_a_daily_action_board_counts_in_its_time_zones_day(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    board = add_leaderboard(
        session_factory,
        tenant,
        name="Check-ins",
        metric="action_count",
        action="check_in",
        period="daily",
        timezone="Asia/Tokyo",
    )
    now = utcnow()
    today_tokyo = board_of(client, tenant, board)["period_start"]
    act(client, tenant, "fay", "check_in")
    act(client, tenant, "fay", "check_in")
    act(client, tenant, "gus", "check_in")
    act(client, tenant, "gus", "login")
    assert entries(client, tenant, board) == [(1, "fay", 2), (2, "gus", 1)]
    yesterday = (date.fromisoformat(today_tokyo) - timedelta(days=1)).isoformat()
    act(client, tenant, "hal", "check_in", occurred_at=(now - timedelta(days=1)).isoformat())
    assert entries(client, tenant, board, period_start=yesterday) == []  # before its creation
    with session_factory() as session:
        assert session.execute(select(LeaderboardScore.period_start)).scalars().all()
    unknown = client.get(f"{GAMIFY}/leaderboards/nope", headers=tenant.participant())
    assert unknown.status_code == 404 and unknown.json["code"] == "leaderboard_not_found"


def test_a_weekly_board_refuses_a_period_start_that_is_not_a_monday(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    board = add_leaderboard(session_factory, tenant, period="weekly")
    response = client.get(
        f"{GAMIFY}/leaderboards/{board}",
        query_string={"period_start": "2026-11-04"},
        headers=tenant.participant(),
    )
    assert response.status_code == 422 and response.json["code"] == "validation_error"
    for not_a_date in ("0", "1700000000", "yesterday"):
        response = client.get(
            f"{GAMIFY}/leaderboards/{board}",
            query_string={"period_start": not_a_date},
            headers=tenant.participant(),
        )
        assert response.status_code == 422, not_a_date
    assert board_of(client, tenant, board, period_start="2026-11-02")["entries"] == []


def test_reads_after_the_cache_is_lost_equal_what_postgresql_holds(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    board = add_leaderboard(session_factory, tenant)
    for index, amount in enumerate((5, 50, 20, 50, 1, 20, 7)):
        award(client, tenant, f"p{index}", amount)
    before = entries(client, tenant, board, limit=100)
    client_redis = redis.Redis.from_url(service_env["REDIS_URL"])
    prefix = service_env["REDIS_KEY_PREFIX"]
    lost = list(client_redis.scan_iter(f"{prefix}lb:{board}:*"))
    assert lost, "the first read built the cache"
    client_redis.delete(*lost)
    after = entries(client, tenant, board, limit=100)
    with session_factory() as session:
        held = session.execute(
            select(Participant.external_id, LeaderboardScore.score)
            .join(Participant, Participant.id == LeaderboardScore.participant_pk)
            .where(LeaderboardScore.leaderboard_id == board)
            .order_by(LeaderboardScore.score.desc(), LeaderboardScore.reached_at)
        ).all()
    assert [(pid, score) for _, pid, score in after] == [tuple(row) for row in held]
    assert after == before
    assert [rank for rank, _, _ in after] == [1, 1, 3, 3, 5, 6, 7]
    # Without Redis at all, PostgreSQL answers the same.
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    with session_factory() as session:
        definition = find_leaderboard(session, tenant.tenant_id, Environment.LIVE, board)
        reader = LeaderboardReader(session, unreachable, prefix, definition, date(1970, 1, 1))
        page, total = reader.page(100, 0)
        assert [(e.rank, e.participant_id, e.score) for e in page] == after and total == 7
        assert reader.standing("p2") == {
            "participant_id": "p2",
            "rank": 3,
            "score": 20,
            "above": {"rank": 1, "participant_id": "p3", "score": 50},
            "below": {"rank": 3, "participant_id": "p5", "score": 20},
        }


def test_entering_and_leaving_the_top_is_an_event(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    board = add_leaderboard(session_factory, tenant, notify_top=2)
    award(client, tenant, "ivy", 10)
    award(client, tenant, "jon", 20)
    award(client, tenant, "kai", 5)  # third: outside the top 2
    award(client, tenant, "kai", 30)  # enters first; ivy leaves
    with session_factory() as session:
        events = (
            session.execute(
                select(OutboxEvent.payload)
                .where(
                    OutboxEvent.tenant_id == tenant.tenant_id,
                    OutboxEvent.type == "leaderboard.rank_changed",
                )
                .order_by(OutboxEvent.created_at)
            )
            .scalars()
            .all()
        )
    assert [(e["participant_id"], e["change"], e["rank"], e["previous_rank"]) for e in events] == [
        ("ivy", "entered", 1, None),
        ("jon", "entered", 1, None),
        ("kai", "entered", 1, None),
        ("ivy", "left", None, 2),
    ]
    assert all(e["leaderboard_id"] == board for e in events)


def test_award_batches_and_bulk_uploads_count_toward_engagement(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    board = add_leaderboard(session_factory, tenant)
    badge = add_badge(
        session_factory, tenant, {"type": "points_earned", "points": 100}, points_reward=7
    )
    batch = client.post(
        f"{GAMIFY}/points/award-batch",
        json={
            "awards": [
                {"participant_id": "lia", "amount": 60},
                {"participant_id": "max", "amount": 150},
                {"participant_id": "lia", "amount": 0},
            ]
        },
        headers=tenant.participant(),
    )
    assert batch.status_code == 200, batch.json
    assert [r["amount"] for r in batch.json["results"]] == [60, 150, None]
    bulk = client.post(
        f"{GAMIFY}/points/award-bulk",
        data="participant_id,amount\nlia,40\nned,5\n",
        content_type="text/csv",
        headers=tenant.admin(),
    )
    assert bulk.status_code == 202, bulk.json
    view = wait_for_operation(client, tenant.admin(), bulk.json["operation_id"])
    assert view["status"] == "succeeded" and view["result"]["awarded"] == 2, view
    # max's 150 and lia's 60 + 40 reach the badge; its 7 points count on the board too.
    assert entries(client, tenant, board) == [(1, "max", 157), (2, "lia", 107), (3, "ned", 5)]
    with session_factory() as session:
        holders = (
            session.execute(
                select(Participant.external_id)
                .join(ParticipantBadge, ParticipantBadge.participant_pk == Participant.id)
                .where(ParticipantBadge.badge_id == uuid.UUID(badge))
                .order_by(Participant.external_id)
            )
            .scalars()
            .all()
        )
    assert holders == ["lia", "max"]
