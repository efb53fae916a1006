"""The `actions` scenario: `POST /actions/batch` with the program's engagement active.

Active while the actions flow: three earning rules on `purchase` (one per point of
`amount`; one point capped at 5 a day; a tenth of `amount` from 20 up) and two badges (ten
purchases, with a 100-point reward; 1,000 points earned). Streaks, challenges and
leaderboards join the scenario as they are built (issue 15).
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text
from sqlalchemy.engine import Engine

from bench.load import Request, run_load
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


def action_flow(
    engine: Engine, api_url: str, *, actions: int, per_request: int, concurrency: int
) -> ScenarioResult:
    """`actions` purchases through /actions/batch, `per_request` per call, over 100k
    participants (each request's actions for different participants)."""
    tenant = make_tenant(engine)
    program_with_engagement(engine, tenant)
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
    load = run_load(api_url, requests, concurrency)
    result = ScenarioResult(
        f"actions ({per_request} per /actions/batch request; 3 rules, 2 badges)"
    )
    _load_figures(result, load)
    result.figures["actions_per_s"] = round(actions / load.elapsed_seconds, 1)
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
