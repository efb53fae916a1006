"""The `actions` scenario: `POST /actions/batch` with the program's engagement active.

Active while the actions flow: three earning rules on `purchase` (one per point of
`amount`; one point capped at 5 a day; a tenth of `amount` from 20 up), two streaks (a
daily one with milestones at 3 and 7, a weekly one), two challenges (5 purchases for 50
points; 500 points earned), two badges (ten purchases, with a 100-point reward; 1,000
points earned) and one all-time points leaderboard, read at a steady rate meanwhile
(`--leaderboard-reads-per-s`, default 500) for its latencies.
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text
from sqlalchemy.engine import Engine

from bench.load import Request, percentile, run_load
from bench.paced import PacedReads
from bench.scenarios import (
    GAMIFY,
    ScenarioResult,
    Tenant,
    _load_figures,
    check_balances,
    make_tenant,
)

ACTION_PARTICIPANTS = 100_000
RULES = (
    ("Points per euro", "amount", None, None),
    ("A point a visit", "1", None, {"per_day": 5}),
    ("Big basket bonus", "floor(amount / 10)", {"min_amount": 20}, None),
)
STREAKS = (
    ("daily-purchase", "daily", [{"days": 3, "points": 25}, {"days": 7, "points": 100}]),
    ("weekly-purchase", "weekly", []),
)
CHALLENGES = (
    ("Five purchases", "action_count", "purchase", 5, {"type": "points", "amount": 50}),
    ("Earn 500", "points_earned", None, 500, None),
)
BADGES = (
    ("Regular", {"type": "action_count", "action": "purchase", "count": 10}, 100),
    ("Thousand", {"type": "points_earned", "points": 1000}, None),
)


def program_with_engagement(engine: Engine, tenant: Tenant) -> None:
    with engine.begin() as connection:
        for name, formula, conditions, caps in RULES:
            connection.execute(
                text(
                    """
                    INSERT INTO earning_rules (id, tenant_id, env, name, action, formula,
                        conditions, caps, timezone, active, created_at)
                    VALUES (:id, :t, 'live', :name, 'purchase', :formula,
                        CAST(:conditions AS jsonb), CAST(:caps AS jsonb), 'UTC', true, now())
                    """
                ),
                {
                    "id": uuid.uuid4(),
                    "t": tenant.tenant_id,
                    "name": name,
                    "formula": formula,
                    "conditions": json.dumps(conditions) if conditions else None,
                    "caps": json.dumps(caps) if caps else None,
                },
            )
        for streak_type, period, milestones in STREAKS:
            connection.execute(
                text(
                    """
                    INSERT INTO streaks (id, tenant_id, env, streak_type, name, action, period,
                        timezone, grace_period_hours, milestones, active, created_at)
                    VALUES (:id, :t, 'live', :type, :type, 'purchase', :period, 'UTC', 0,
                        CAST(:milestones AS jsonb), true, now())
                    """
                ),
                {
                    "id": uuid.uuid4(),
                    "t": tenant.tenant_id,
                    "type": streak_type,
                    "period": period,
                    "milestones": json.dumps(milestones),
                },
            )
        for name, kind, action, target, reward in CHALLENGES:
            connection.execute(
                text(
                    """
                    INSERT INTO challenges (id, tenant_id, env, name, type, action, target,
                        reward, requires_enrollment, active, created_at)
                    VALUES (:id, :t, 'live', :name, :kind, :action, :target,
                        CAST(:reward AS jsonb), false, true, now())
                    """
                ),
                {
                    "id": uuid.uuid4(),
                    "t": tenant.tenant_id,
                    "name": name,
                    "kind": kind,
                    "action": action,
                    "target": target,
                    "reward": json.dumps(reward) if reward else None,
                },
            )
        for name, criteria, reward in BADGES:
            connection.execute(
                text(
                    """
                    INSERT INTO badges (id, tenant_id, env, name, criteria, points_reward,
                        active, created_at)
                    VALUES (:id, :t, 'live', :name, CAST(:criteria AS jsonb), :reward, true,
                        now())
                    """
                ),
                {
                    "id": uuid.uuid4(),
                    "t": tenant.tenant_id,
                    "name": name,
                    "criteria": json.dumps(criteria),
                    "reward": reward,
                },
            )


def add_leaderboard(engine: Engine, tenant: Tenant) -> str:
    board_id = str(uuid.uuid4())
    with engine.begin() as connection:
        connection.execute(
            text(
                """
                INSERT INTO leaderboards (id, tenant_id, env, name, metric, period, timezone,
                    size, notify_top, active, created_at)
                VALUES (:id, :t, 'live', 'Top earners', 'points_earned', 'all_time', 'UTC',
                    100, 10, true, now())
                """
            ),
            {"id": board_id, "t": tenant.tenant_id},
        )
    return board_id


def action_flow(
    engine: Engine,
    api_url: str,
    *,
    actions: int,
    per_request: int,
    concurrency: int,
    reads_per_s: float = 500,
) -> ScenarioResult:
    """`actions` purchases through /actions/batch, `per_request` per call, over 100k
    participants (each request's actions for different participants), with the
    leaderboard read `reads_per_s` times a second meanwhile (0: not read)."""
    tenant = make_tenant(engine)
    program_with_engagement(engine, tenant)
    board = add_leaderboard(engine, tenant)
    headers = {"X-API-Key": tenant.participant_key, "Content-Type": "application/json"}
    requests = [
        Request(
            "POST",
            f"{GAMIFY}/actions/batch",
            headers,
            json.dumps(
                {
                    "actions": [
                        {
                            "participant_id": f"a{(start + n) % ACTION_PARTICIPANTS}",
                            "action": "purchase",
                            "properties": {"amount": 10 + (start + n) % 50},
                        }
                        for n in range(per_request)
                    ]
                }
            ).encode(),
        )
        for start in range(0, actions, per_request)
    ]
    reads = (
        PacedReads(
            api_url,
            f"{GAMIFY}/leaderboards/{board}?limit=10",
            {"X-API-Key": tenant.participant_key},
            reads_per_s,
        )
        if reads_per_s
        else None
    )
    if reads is not None:
        reads.start()
    load = run_load(api_url, requests, concurrency)
    result = ScenarioResult(
        f"actions ({per_request} per /actions/batch request; 3 rules, 2 streaks, "
        "2 challenges, 2 badges, 1 leaderboard)"
    )
    _load_figures(result, load)
    result.figures["actions_per_s"] = round(actions / load.elapsed_seconds, 1)
    if reads is not None:
        latencies, statuses = reads.stop()
        result.figures["leaderboard_reads"] = len(latencies)
        result.figures["leaderboard_reads_per_s"] = round(len(latencies) / load.elapsed_seconds, 1)
        result.figures["leaderboard_p50_ms"] = round(percentile(latencies, 0.50), 1)
        result.figures["leaderboard_p99_ms"] = round(percentile(latencies, 0.99), 1)
        if set(statuses) != {200}:
            result.violations.append(f"leaderboard read statuses {statuses}")
    with engine.connect() as connection:
        recorded = connection.execute(
            text("SELECT count(*) FROM actions WHERE tenant_id = :t"), {"t": tenant.tenant_id}
        ).scalar_one()
    if recorded != actions:
        result.violations.append(f"{recorded} actions recorded, expected {actions}")
    if load.statuses.get(200, 0) != len(requests):
        result.violations.append(f"statuses {dict(load.statuses)} {dict(load.error_codes)}")
    result.violations.extend(check_balances(engine, tenant))
    return result
