"""Tenant isolation across every endpoint, and secrets that never leak.

Tenant A builds one of everything; tenant B (and A's own test environment) then calls
every documented operation with A's ids. The only answers allowed are refusals (401, 403,
404, 422) or B's own, empty data: never anything of A's.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.models import Challenge, Environment, Leaderboard, Streak
from tests.builders import (
    GAMIFY,
    claim,
    create_badge,
    create_coupon,
    create_earning_rule,
    create_reward,
    redeem_coupon,
    upload_codes,
    wait_for_operation,
)
from tests.conftest import TenantKeys

pytestmark = pytest.mark.usefixtures("worker")


def _tenant_a_world(
    client: FlaskClient, acme: TenantKeys, session_factory: sessionmaker[Session]
) -> dict[str, str]:
    """One of everything for tenant A; returns the ids to try from outside."""
    reward = create_reward(client, acme.admin(), points_cost=0, max_claims_per_user=10)
    upload_codes(client, acme.admin(), reward["id"], ["SECRET-CODE-A"])
    award = client.post(
        f"{GAMIFY}/points/award",
        json={"participant_id": "alice", "amount": 500, "reason": "A-only"},
        headers=acme.participant(),
    )
    assert award.status_code == 200, award.json
    claimed = claim(client, acme.participant(), reward["id"], "alice")
    assert claimed.status_code == 201
    tier = client.post(
        f"{GAMIFY}/admin/tiers",
        json={"code": "gold-a", "name": "Gold A", "level": 1, "points_required": 100},
        headers=acme.admin(),
    )
    assert tier.status_code == 201, tier.json
    webhook = client.post(
        f"{GAMIFY}/admin/webhooks",
        json={"url": "http://127.0.0.1:9/a-hook", "events": ["reward.reward_claimed"]},
        headers=acme.admin(),
    )
    assert webhook.status_code == 201, webhook.json
    test_delivery = client.post(
        f"{GAMIFY}/admin/webhooks/{webhook.json['id']}/test", headers=acme.admin()
    )
    operation = claim(client, acme.participant(), reward["id"], "alice", prefer_async=True)
    wait_for_operation(client, acme.participant(), operation.json["operation_id"])
    bulk = client.post(
        f"{GAMIFY}/points/award-bulk",
        data="participant_id,amount\nalice,1\n",
        content_type="text/csv",
        headers=acme.admin(),
    )
    assert bulk.status_code == 202, bulk.json
    rule = create_earning_rule(client, acme.admin(), name="Rule A")
    program = client.put(
        f"{GAMIFY}/admin/referral-program",
        json={"referrer_points": 5, "referee_points": 5},
        headers=acme.admin(),
    )
    assert program.status_code == 200, program.json
    referral_code = client.get(
        f"{GAMIFY}/participants/alice/referral-code", headers=acme.participant()
    ).json["referral_code"]
    referral = client.post(
        f"{GAMIFY}/referrals/track",
        json={"referral_code": referral_code, "referee_id": "bob-a"},
        headers=acme.participant(),
    )
    assert referral.status_code == 201, referral.json
    badge = create_badge(client, acme.admin(), name="Badge A")
    with session_factory.begin() as session:
        streak = Streak(
            tenant_id=acme.tenant_id,
            env=Environment.LIVE,
            streak_type="streak-a",
            name="Streak A",
            action="purchase",
            period="daily",
            milestones=[],
        )
        challenge = Challenge(
            tenant_id=acme.tenant_id,
            env=Environment.LIVE,
            name="Challenge A",
            type="action_count",
            action="purchase",
            target=3,
        )
        board = Leaderboard(
            tenant_id=acme.tenant_id,
            env=Environment.LIVE,
            name="Board A",
            metric="points_earned",
            period="all_time",
        )
        session.add_all([streak, challenge, board])
        session.flush()
        challenge_id, leaderboard_id = str(challenge.id), str(board.id)
    coupon = create_coupon(client, acme.admin(), code="SECRET-COUPON-A", campaign="campaign-a")
    redeemed = redeem_coupon(client, acme.participant(), "SECRET-COUPON-A", "alice", "order-a")
    assert redeemed.status_code == 201, redeemed.json
    return {
        "coupon_id": coupon["id"],
        "campaign_id": "campaign-a",
        "id_or_code": "SECRET-COUPON-A",
        "redemption_id": redeemed.json["redemption_id"],
        "rule_id": rule["rule_id"],
        "badge_id": badge["badge_id"],
        "streak_type": "streak-a",
        "challenge_id": challenge_id,
        "leaderboard_id": leaderboard_id,
        "reward_id": reward["id"],
        "claim_id": claimed.json["claim_id"],
        "code": "gold-a",
        "webhook_id": webhook.json["id"],
        "delivery_id": test_delivery.json.get("id", test_delivery.json.get("delivery_id", "x")),
        "operation_id": bulk.json["operation_id"],
        "participant_id": "alice",
        "user_id": "alice",
        "referral_code": referral_code,
        "referral_id": referral.json["referral_id"],
    }


def _tenant_a_markers(ids: dict[str, str]) -> list[str]:
    """Strings only tenant A's data holds: none may reach another tenant."""
    return [
        ids["reward_id"],
        ids["webhook_id"],
        ids["rule_id"],
        ids["badge_id"],
        "SECRET-CODE-A",
        "A-only",
        "Gold A",
        "Rule A",
        "Badge A",
        "Streak A",
        "Challenge A",
        "Board A",
        ids["challenge_id"],
        ids["leaderboard_id"],
        ids["referral_code"],
        ids["referral_id"],
        ids["coupon_id"],
        "SECRET-COUPON-A",
    ]


def _documented_operations(client: FlaskClient) -> list[tuple[str, str]]:
    spec = client.get("/openapi.json").json
    return [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if path.startswith(GAMIFY)
    ]


def test_another_tenant_or_environment_gets_nothing_of_tenant_a_from_any_endpoint(
    flask_app: Flask, make_tenant: Any, session_factory: sessionmaker[Session]
) -> None:
    client = flask_app.test_client()
    acme, other = make_tenant("Acme"), make_tenant("Other")
    ids = _tenant_a_world(client, acme, session_factory)
    a_markers = _tenant_a_markers(ids)
    outsiders = {
        "other tenant admin": other.admin(),
        "other tenant participant": other.participant(),
        "own test environment": {"X-API-Key": acme.test_admin_key},
    }
    bodies = {
        "/api/v1/gamify/rewards/{reward_id}/claim": {"participant_id": "alice"},
        "/api/v1/gamify/admin/tiers/{code}": {"name": "stolen"},
        "/api/v1/gamify/admin/rewards/{reward_id}": {"name": "stolen"},
        "/api/v1/gamify/admin/rewards/{reward_id}/codes": {"codes": ["X"]},
        "/api/v1/gamify/admin/webhooks/{webhook_id}": {"enabled": True},
        "/api/v1/gamify/admin/earning-rules/{rule_id}": {"name": "stolen"},
        "/api/v1/gamify/admin/badges/{badge_id}": {"name": "stolen"},
        "/api/v1/gamify/admin/coupons/{id_or_code}": {"campaign": "stolen"},
        "/api/v1/gamify/admin/coupons/{coupon_id}/generate": {"count": 1},
        "/api/v1/gamify/challenges/{challenge_id}/join": {"participant_id": "alice"},
        "/api/v1/gamify/admin/webhooks/{webhook_id}/redeliver": {"since": "2000-01-01T00:00:00Z"},
        "/api/v1/gamify/admin/participants/{participant_id}/tier": {
            "tier_code": "gold-a",
            "reason": "stolen",
        },
    }
    tried = 0
    for method, path in _documented_operations(client):
        if "{" not in path:
            continue  # collection endpoints answer with the caller's own data
        url = re.sub(r"\{(\w+)\}", lambda match: ids[match.group(1)], path)
        for who, headers in outsiders.items():
            response = client.open(url, method=method, json=bodies.get(path), headers=headers)
            tried += 1
            leaked = [marker for marker in a_markers if marker in response.get_data(as_text=True)]
            assert not leaked, f"{who} {method} {path} -> {response.status_code} leaked {leaked}"
            owned = set(re.findall(r"\{(\w+)\}", path)) - {"participant_id"}
            if "{participant_id}" in path and owned:
                # A's badge, streak, challenge or leaderboard does not exist for B.
                assert response.status_code in (403, 404), (who, method, path)
            elif "{participant_id}" in path and method == "PATCH":
                # B's admin cannot place A's alice: B has no alice (nor A's tier).
                assert response.status_code in (403, 404), (who, method, path)
            elif "{participant_id}" in path:
                # Participant ids are each tenant's own namespace: B's "alice" has nothing.
                assert response.status_code in (200, 403), (who, method, path)
                if response.status_code == 200:
                    body = response.json
                    assert body.get("total", 0) == 0 and body.get("balance", 0) == 0, (
                        who,
                        path,
                        body,
                    )
            else:
                assert response.status_code in (403, 404), (who, method, path, response.json)
    assert tried >= 40

    # And tenant A still sees its own things, untouched.
    reward = client.get(f"{GAMIFY}/admin/rewards/{ids['reward_id']}", headers=acme.admin())
    assert reward.status_code == 200 and reward.json["name"] == "10% Off Coupon"
    rule = client.get(f"{GAMIFY}/admin/earning-rules/{ids['rule_id']}", headers=acme.admin())
    assert rule.status_code == 200 and rule.json["name"] == "Rule A"
    badge = client.get(f"{GAMIFY}/admin/badges/{ids['badge_id']}", headers=acme.admin())
    assert badge.status_code == 200 and badge.json["active"] and badge.json["name"] == "Badge A"


def test_secrets_never_appear_in_the_openapi_document_errors_or_logs(
    client: FlaskClient,
    tenant: TenantKeys,
    caplog: pytest.LogCaptureFixture,
    session_factory: sessionmaker[Session],
) -> None:
    caplog.set_level(logging.DEBUG)
    webhook = client.post(
        f"{GAMIFY}/admin/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["reward.reward_claimed"]},
        headers=tenant.admin(),
    )
    secret = webhook.json["secret"]
    assert secret.startswith("whsec_")
    near_miss = tenant.admin_key[:-1] + ("A" if tenant.admin_key[-1] != "A" else "B")
    refused = client.get(f"{GAMIFY}/admin/rewards", headers={"X-API-Key": near_miss})
    listed = client.get(f"{GAMIFY}/admin/webhooks", headers=tenant.admin())
    fetched = client.get(f"{GAMIFY}/admin/webhooks/{webhook.json['id']}", headers=tenant.admin())
    spec = client.get("/openapi.json").get_data(as_text=True)

    for text_seen in (
        refused.get_data(as_text=True),
        listed.get_data(as_text=True),
        fetched.get_data(as_text=True),
        spec,
        caplog.text,
    ):
        assert secret not in text_seen
        assert tenant.admin_key not in text_seen
        assert near_miss not in text_seen
    with session_factory() as session:
        stored = session.execute(
            text("SELECT count(*) FROM api_keys WHERE key_hash = :k OR key_hint = :k"),
            {"k": tenant.admin_key},
        ).scalar_one()
    assert stored == 0  # keys are stored as a hash (and a short hint), never whole


def test_injection_attempts_are_inert(client: FlaskClient, tenant: TenantKeys) -> None:
    reward = create_reward(client, tenant.admin(), name="'; DROP TABLE rewards; --")
    hostile = "x' OR '1'='1"
    response = claim(client, tenant.participant(), reward["id"], hostile)
    assert response.status_code == 201
    assert response.json["participant_id"] == hostile
    listing = client.get(
        f"{GAMIFY}/participants/{hostile}/rewards", headers=tenant.participant()
    ).json
    assert listing["total"] == 1
    nested = client.post(
        f"{GAMIFY}/admin/rewards",
        json={"name": "json", "type": "coupon", "config": {"$where": "1", "__proto__": {"a": 1}}},
        headers=tenant.admin(),
    )
    assert nested.status_code == 201
    assert nested.json["config"] == {"$where": "1", "__proto__": {"a": 1}}
    assert client.get(f"{GAMIFY}/admin/rewards", headers=tenant.admin()).json["total"] == 2


def test_another_tenant_or_environment_gets_nothing_of_tenant_a_through_the_23blocks_dialect(
    flask_app: Flask, make_tenant: Any, session_factory: sessionmaker[Session]
) -> None:
    client = flask_app.test_client()
    acme, other = make_tenant("Acme"), make_tenant("Other")
    ids = _tenant_a_world(client, acme, session_factory)
    markers = _tenant_a_markers(ids)
    outsiders = {
        "other tenant admin": other.admin(),
        "other tenant participant": other.participant(),
        "own test environment": {"X-API-Key": acme.test_admin_key},
    }
    spec = client.get("/v1/rewards/openapi.json").json
    tried = 0
    for path, operations in spec["paths"].items():
        if "{" not in path:
            continue  # collection endpoints answer with the caller's own data
        url = re.sub(r"\{(\w+)\}", lambda match: ids[match.group(1)], path)
        owned = set(re.findall(r"\{(\w+)\}", path)) - {"user_id", "streak_type"}
        for method in operations:
            for who, headers in outsiders.items():
                response = client.open(url, method=method.upper(), headers=headers)
                tried += 1
                body = response.get_data(as_text=True)
                leaked = [marker for marker in markers if marker in body]
                assert not leaked, f"{who} {method} {path} -> {response.status_code} {leaked}"
                assert response.status_code < 500, (who, method, path, body)
                if owned:
                    # 422: the empty body is refused before anything is looked up.
                    assert response.status_code in (403, 404, 422), (who, method, path, body)
    assert tried >= 20
