"""The richer catalog: a reward's category, image, slug, custom attributes and media; the
catalog's filters, sorts and pages; a claim's metadata, use and cancel (refunded once,
its code back in stock once), through real workers."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.models import LedgerEntry, Participant, ParticipantMultiplier, Reward, RewardCode
from app.points.verify import verify_ledger
from tests.builders import (
    GAMIFY,
    claim,
    create_reward,
    fund_participant,
    upload_codes,
    wait_for_operation,
)
from tests.conftest import TenantKeys

pytestmark = pytest.mark.usefixtures("worker")

ATTRIBUTES = {"size_chart": "EU", "weight_g": 180, "rating": 4.5, "organic": True, "note": None}
MEDIA = {"type": "video", "value": "https://cdn.example.test/rewards/mug.mp4"}


def _answer(client: FlaskClient, headers: dict[str, str], response: Any) -> tuple[int, Any]:
    """A write's final answer: a 202 (worker slower than the wait) is polled to the end."""
    if response.status_code != 202:
        return response.status_code, response.json
    finished = wait_for_operation(client, headers, response.json["operation_id"])
    if finished["status"] == "succeeded":
        return 200, finished["result"]
    return finished["error"]["status"], finished["error"]


def _use(client: FlaskClient, tenant: TenantKeys, claim_id: str, key: str | None = None) -> Any:
    headers = {**tenant.participant(), **({"Idempotency-Key": key} if key else {})}
    return client.post(f"{GAMIFY}/claims/{claim_id}/use", json={}, headers=headers)


def _cancel(client: FlaskClient, tenant: TenantKeys, claim_id: str, key: str | None = None) -> Any:
    headers = {**tenant.admin(), **({"Idempotency-Key": key} if key else {})}
    return client.post(f"{GAMIFY}/admin/claims/{claim_id}/cancel", json={}, headers=headers)


def _catalog(client: FlaskClient, tenant: TenantKeys, **params: Any) -> Any:
    response = client.get(f"{GAMIFY}/rewards", query_string=params, headers=tenant.participant())
    assert response.status_code == 200, response.json
    return response.json


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _names(catalog: Any) -> list[str]:
    return [entry["name"] for entry in catalog["rewards"]]


def _claimed(client: FlaskClient, tenant: TenantKeys, reward_id: str, participant: str) -> Any:
    response = claim(client, tenant.participant(), reward_id, participant, points_deduction=True)
    assert response.status_code == 201, response.json
    return response.json


def test_category_image_slug_attributes_and_media_round_trip_in_admin_and_catalog(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    fields = {
        "category": "merchandise",
        "image_url": "https://cdn.example.test/rewards/mug.png",
        "slug": "branded-mug",
        "custom_attributes": ATTRIBUTES,
        "media": MEDIA,
    }
    created = create_reward(client, tenant.admin(), name="Branded mug", **fields)
    fetched = client.get(f"{GAMIFY}/admin/rewards/{created['id']}", headers=tenant.admin()).json
    [listed] = _catalog(client, tenant)["rewards"]
    for shown in (created, fetched, listed):
        assert {name: shown[name] for name in fields} == fields
        # As given: the keys in the order sent, each value of the type sent.
        assert list(shown["custom_attributes"]) == list(ATTRIBUTES)
        assert shown["redemption_count"] == 0
    raw = client.get(f"{GAMIFY}/rewards", headers=tenant.participant()).get_data(as_text=True)
    assert '"rating":4.5' in raw.replace(" ", "") and '"weight_g":180' in raw.replace(" ", "")

    changed = client.patch(
        f"{GAMIFY}/admin/rewards/{created['id']}",
        json={"custom_attributes": {"colour": "blue"}, "media": None, "category": "kitchen"},
        headers=tenant.admin(),
    ).json
    assert changed["custom_attributes"] == {"colour": "blue"}
    assert (changed["media"], changed["category"], changed["slug"]) == (
        None,
        "kitchen",
        "branded-mug",
    )


def test_a_slug_taken_in_the_environment_is_refused_409_on_create_and_update(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    create_reward(client, tenant.admin(), slug="free-shipping")
    taken = client.post(
        f"{GAMIFY}/admin/rewards",
        json={"name": "Other", "type": "coupon", "slug": "free-shipping"},
        headers=tenant.admin(),
    )
    assert taken.status_code == 409 and taken.json["code"] == "slug_taken"
    other = create_reward(client, tenant.admin(), slug="vip-event")
    renamed = client.patch(
        f"{GAMIFY}/admin/rewards/{other['id']}",
        json={"slug": "free-shipping"},
        headers=tenant.admin(),
    )
    assert renamed.status_code == 409 and renamed.json["code"] == "slug_taken"
    assert (
        client.get(f"{GAMIFY}/admin/rewards/{other['id']}", headers=tenant.admin()).json["slug"]
        == "vip-event"
    )
    # Unique per environment: the test environment has its own slugs.
    test_admin = {"X-API-Key": tenant.test_admin_key}
    assert create_reward(client, test_admin, slug="free-shipping")["slug"] == "free-shipping"
    # Rewards without a slug are many.
    create_reward(client, tenant.admin())
    create_reward(client, tenant.admin())


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"custom_attributes": {"sizes": {"eu": 42}}}, "flat object"),
        ({"custom_attributes": {"sizes": ["S", "M"]}}, "flat object"),
        ({"media": {"type": "audio", "value": "https://cdn.example.test/a.mp3"}}, "type"),
        ({"media": {"type": "image", "value": "ftp://cdn.example.test/a.png"}}, "value"),
        ({"image_url": "not a url"}, "image_url"),
        ({"slug": "Not A Slug"}, "slug"),
    ],
)
def test_nested_attributes_and_malformed_media_are_refused_422(
    client: FlaskClient, tenant: TenantKeys, fields: dict[str, Any], problem: str
) -> None:
    response = client.post(
        f"{GAMIFY}/admin/rewards",
        json={"name": "Mug", "type": "physical", **fields},
        headers=tenant.admin(),
    )
    assert response.status_code == 422, response.json
    assert response.json["code"] == "validation_error"
    assert problem in json.dumps(response.json["errors"])


def test_catalog_filters_by_category_max_points_and_stock_counting_free_rewards_as_0(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    admin = tenant.admin()
    create_reward(client, admin, name="Free shipping", category="discounts")
    create_reward(client, admin, name="5 off", category="discounts", points_cost=500)
    create_reward(client, admin, name="T-shirt", category="merchandise", points_cost=2500)
    sold_out = create_reward(client, admin, name="Mug", category="merchandise", points_cost=50)
    upload_codes(client, admin, sold_out["id"], ["MUG-1"])
    assert claim(client, tenant.participant(), sold_out["id"], "ann").status_code == 201
    capped = create_reward(client, admin, name="Poster", points_cost=10, total_inventory=0)
    generated = create_reward(
        client, admin, name="Key", type="digital", config={"generate_when_exhausted": True}
    )
    upload_codes(client, admin, generated["id"], ["KEY-1"])
    assert claim(client, tenant.participant(), generated["id"], "ann").status_code == 201

    assert set(_names(_catalog(client, tenant, category="discounts"))) == {"Free shipping", "5 off"}
    assert set(_names(_catalog(client, tenant, max_points=500))) == {
        "Free shipping",
        "5 off",
        "Mug",
        "Poster",
        "Key",
    }
    assert set(_names(_catalog(client, tenant, max_points=0))) == {"Free shipping", "Key"}
    in_stock = _catalog(client, tenant, available="true")
    assert set(_names(in_stock)) == {"Free shipping", "5 off", "T-shirt", "Key"}
    assert all(entry["available_codes"] != 0 for entry in in_stock["rewards"])
    assert set(_names(_catalog(client, tenant, available="false"))) == {"Mug", capped["name"]}
    both = _catalog(client, tenant, category="merchandise", available="true", max_points=3000)
    assert _names(both) == ["T-shirt"] and both["total"] == 1


def test_catalog_sorts_by_cost_either_way_and_pages_with_the_total(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    admin = tenant.admin()
    for name, cost in (("B", 300), ("Free", None), ("C", 700), ("A", 100)):
        create_reward(client, admin, name=name, points_cost=cost)
    assert _names(_catalog(client, tenant, sort="points_cost")) == ["Free", "A", "B", "C"]
    assert _names(_catalog(client, tenant, sort="-points_cost")) == ["C", "B", "A", "Free"]
    # Default: newest first.
    assert _names(_catalog(client, tenant)) == ["A", "C", "Free", "B"]
    first = _catalog(client, tenant, sort="points_cost", page=1, page_size=3)
    second = _catalog(client, tenant, sort="points_cost", page=2, page_size=3)
    beyond = _catalog(client, tenant, sort="points_cost", page=3, page_size=3)
    assert (_names(first), _names(second), _names(beyond)) == (["Free", "A", "B"], ["C"], [])
    assert [page["total"] for page in (first, second, beyond)] == [4, 4, 4]
    assert (second["page"], second["page_size"]) == (2, 3)
    refused = client.get(
        f"{GAMIFY}/rewards", query_string={"sort": "name"}, headers=tenant.participant()
    )
    assert refused.status_code == 422


def _set_recent_claims(
    session_factory: sessionmaker[Session], reward: dict[str, Any], days_ago: int, per_day: int
) -> None:
    """As if the reward had `per_day` claims on each of the 30 days through `days_ago`."""
    with session_factory.begin() as session:
        row = session.get(Reward, uuid.UUID(reward["id"]))
        assert row is not None
        row.recent_claims = [per_day] * 30
        row.recent_claims_through = (utcnow() - timedelta(days=days_ago)).date()


def test_popular_sorts_by_claims_of_the_last_30_days_net_of_cancels(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    admin = tenant.admin()
    few = create_reward(client, admin, name="Few", max_claims_per_user=10)
    many = create_reward(client, admin, name="Many", max_claims_per_user=10)
    old = create_reward(client, admin, name="Old favourite", max_claims_per_user=10)
    cancelled = create_reward(client, admin, name="Cancelled", max_claims_per_user=10)
    quiet = create_reward(client, admin, name="Quiet")
    stale = create_reward(client, admin, name="Last month's hit")
    # 50 a day over the 30 days through 30 days ago: all out of the window by now.
    _set_recent_claims(session_factory, old, days_ago=30, per_day=50)
    # 50 a day through 10 days ago, none since: 20 of those days are in the window.
    _set_recent_claims(session_factory, stale, days_ago=10, per_day=50)
    for reward, times in ((few, 1), (many, 3), (old, 1), (cancelled, 2)):
        for _ in range(times):
            assert claim(client, tenant.participant(), reward["id"], "ann").status_code == 201
    for row in client.get(f"{GAMIFY}/participants/ann/rewards", headers=tenant.participant()).json[
        "rewards"
    ]:
        if row["reward_id"] == cancelled["id"]:
            assert _cancel(client, tenant, row["claim_id"]).status_code == 200
    popular = _catalog(client, tenant, sort="popular")
    # Ties (1 claim, 0 claims) in catalog order: newest first.
    assert _names(popular) == [
        "Last month's hit",
        "Many",
        "Old favourite",
        "Few",
        quiet["name"],
        "Cancelled",
    ]
    counts = {entry["name"]: entry["redemption_count"] for entry in popular["rewards"]}
    assert counts == {
        "Last month's hit": 0,
        "Many": 3,
        "Old favourite": 1,
        "Few": 1,
        quiet["name"]: 0,
        "Cancelled": 0,
    }


def test_claim_metadata_is_kept_and_returned_as_sent(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin(), type="physical")
    metadata = {"size": "L", "colour": "blue", "quantity": 1, "gift": False}
    response = client.post(
        f"{GAMIFY}/rewards/{reward['id']}/claim",
        json={"participant_id": "ann", "metadata": metadata},
        headers=tenant.participant(),
    )
    assert response.status_code == 201, response.json
    assert response.json["metadata"] == metadata and response.json["status"] == "fulfilled"
    [listed] = client.get(f"{GAMIFY}/participants/ann/rewards", headers=tenant.participant()).json[
        "rewards"
    ]
    # Its values as sent (the operation carries it as jsonb: key order is not kept).
    assert listed["metadata"] == metadata
    assert (listed["status"], listed["used_at"], listed["cancelled_at"]) == (
        "fulfilled",
        None,
        None,
    )
    nested = client.post(
        f"{GAMIFY}/rewards/{reward['id']}/claim",
        json={"participant_id": "bob", "metadata": {"size": {"eu": 42}}},
        headers=tenant.participant(),
    )
    assert nested.status_code == 422 and "flat object" in json.dumps(nested.json["errors"])


def test_a_used_claim_cannot_be_used_again_nor_cancelled(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    reward = create_reward(client, tenant.admin())
    upload_codes(client, tenant.admin(), reward["id"], ["USE-1"])
    claim_id = claim(client, tenant.participant(), reward["id"], "ann").json["claim_id"]
    used = _use(client, tenant, claim_id, key="use-1")
    assert used.status_code == 200, used.json
    assert used.json["status"] == "used" and used.json["used_at"] is not None
    assert used.json["code_returned"] is False
    # A replay of the same key answers the first use; another use is refused.
    assert _use(client, tenant, claim_id, key="use-1").json == used.json
    again = _use(client, tenant, claim_id)
    assert again.status_code == 409 and again.json["code"] == "claim_already_used"
    cancel = _cancel(client, tenant, claim_id)
    assert cancel.status_code == 409 and cancel.json["code"] == "claim_already_used"
    [listed] = client.get(f"{GAMIFY}/participants/ann/rewards", headers=tenant.participant()).json[
        "rewards"
    ]
    assert listed["status"] == "used"
    assert _instant(listed["used_at"]) == _instant(used.json["used_at"])


def test_a_cancel_refunds_through_the_ledger_returns_the_code_and_blocks_use(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    reward = create_reward(client, tenant.admin(), points_cost=300, max_claims_per_user=1)
    upload_codes(client, tenant.admin(), reward["id"], ["SHIRT-1"])
    fund_participant(session_factory, tenant.tenant_id, "ann", 1000)
    claimed = _claimed(client, tenant, reward["id"], "ann")
    assert (claimed["code_value"], claimed["new_balance"]) == ("SHIRT-1", 700)

    cancelled = _cancel(client, tenant, claimed["claim_id"])
    assert cancelled.status_code == 200, cancelled.json
    body = cancelled.json
    assert (body["status"], body["points_refunded"], body["new_balance"]) == (
        "cancelled",
        300,
        1000,
    )
    assert body["code_returned"] is True and body["cancelled_at"] is not None
    balance = client.get(f"{GAMIFY}/participants/ann/points", headers=tenant.participant()).json
    assert balance["balance"] == 1000
    reward_now = client.get(f"{GAMIFY}/admin/rewards/{reward['id']}", headers=tenant.admin()).json
    assert (reward_now["available_codes"], reward_now["redemption_count"]) == (1, 0)
    with session_factory() as session:
        lines = session.execute(
            select(LedgerEntry.type, LedgerEntry.amount, LedgerEntry.balance_after)
            .join(Participant, Participant.id == LedgerEntry.participant_pk)
            .where(Participant.tenant_id == tenant.tenant_id, Participant.external_id == "ann")
            .order_by(LedgerEntry.seq)
        ).all()
        assert [tuple(line) for line in lines][-2:] == [("claim", -300, 700), ("refund", 300, 1000)]
        assert verify_ledger(session, tenant.tenant_id).ok

    used = _use(client, tenant, claimed["claim_id"])
    assert used.status_code == 409 and used.json["code"] == "claim_cancelled"
    again = _cancel(client, tenant, claimed["claim_id"])
    assert again.status_code == 409 and again.json["code"] == "claim_already_cancelled"
    # The cap is freed (the catalog says so too) and the code is handed out again.
    [entry] = _catalog(client, tenant, participant_id="ann")["rewards"]
    assert (entry["claimable"], entry["available_codes"]) == (True, 1)
    reclaimed = _claimed(client, tenant, reward["id"], "ann")
    assert reclaimed["code_value"] == "SHIRT-1"
    listing = client.get(f"{GAMIFY}/participants/ann/rewards", headers=tenant.participant()).json
    assert [row["status"] for row in listing["rewards"]] == ["fulfilled", "cancelled"]
    assert (listing["total"], listing["total_points_spent"]) == (2, 300)


def test_concurrent_cancels_of_one_claim_refund_once_and_return_its_code_once(
    flask_app: Flask,
    tenant: TenantKeys,
    start_worker: Any,
    session_factory: sessionmaker[Session],
) -> None:
    start_worker(concurrency=4)
    client = flask_app.test_client()
    reward = create_reward(client, tenant.admin(), points_cost=250)
    upload_codes(client, tenant.admin(), reward["id"], ["ONCE-1", "ONCE-2"])
    fund_participant(session_factory, tenant.tenant_id, "ann", 250)
    claim_id = _claimed(client, tenant, reward["id"], "ann")["claim_id"]

    def cancel_once(attempt: int) -> tuple[int, Any]:
        own = flask_app.test_client()
        return _answer(own, tenant.admin(), _cancel(own, tenant, claim_id, key=f"cancel-{attempt}"))

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(cancel_once, range(40)))
    outcomes = Counter("refunded" if status == 200 else body["code"] for status, body in answers)
    assert outcomes == {"refunded": 1, "claim_already_cancelled": 39}
    [refund] = [body for status, body in answers if status == 200]
    assert (refund["points_refunded"], refund["new_balance"]) == (250, 250)
    with session_factory() as session:
        participant = session.execute(
            select(Participant).where(
                Participant.tenant_id == tenant.tenant_id, Participant.external_id == "ann"
            )
        ).scalar_one()
        assert (participant.balance, participant.total_spent) == (250, 0)
        refunds = session.execute(
            select(func.count()).where(
                LedgerEntry.participant_pk == participant.id, LedgerEntry.type == "refund"
            )
        ).scalar_one()
        assert refunds == 1
        stocked = session.execute(
            select(func.count()).where(
                RewardCode.reward_id == uuid.UUID(reward["id"]), RewardCode.claim_id.is_(None)
            )
        ).scalar_one()
        row = session.get(Reward, uuid.UUID(reward["id"]))
        assert row is not None
        assert (stocked, row.codes_allocated, row.claims_count) == (2, 0, 0)
        assert verify_ledger(session, tenant.tenant_id).ok


def test_use_and_cancel_of_an_unknown_or_foreign_claim_answer_404(
    client: FlaskClient, tenant: TenantKeys, make_tenant: Any
) -> None:
    reward = create_reward(client, tenant.admin())
    claim_id = claim(client, tenant.participant(), reward["id"], "ann").json["claim_id"]
    other = make_tenant("Other")
    for target in ("not-a-uuid", str(uuid.uuid4())):
        assert _use(client, tenant, target).json["code"] == "claim_not_found"
        assert _cancel(client, tenant, target).status_code == 404
    foreign = client.post(
        f"{GAMIFY}/admin/claims/{claim_id}/cancel", json={}, headers=other.admin()
    )
    assert foreign.status_code == 404 and foreign.json["code"] == "claim_not_found"
    forbidden = client.post(
        f"{GAMIFY}/admin/claims/{claim_id}/cancel", json={}, headers=tenant.participant()
    )
    assert forbidden.status_code == 403


def test_cancelling_a_multiplier_claim_ends_its_multiplier(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    reward = create_reward(
        client,
        tenant.admin(),
        type="points_multiplier",
        config={"multiplier": 2, "duration_days": 7},
    )
    claim_id = claim(client, tenant.participant(), reward["id"], "ann").json["claim_id"]
    cancelled = _cancel(client, tenant, claim_id)
    assert cancelled.status_code == 200, cancelled.json
    with session_factory() as session:
        [expires_at] = session.execute(
            select(ParticipantMultiplier.expires_at).where(
                ParticipantMultiplier.claim_id == uuid.UUID(claim_id)
            )
        ).scalars()
    assert expires_at is not None and expires_at <= utcnow()
    points = client.get(f"{GAMIFY}/participants/ann/points", headers=tenant.participant()).json
    assert points["multipliers"] == [] and points["effective_multiplier"] == 1
