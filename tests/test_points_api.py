"""Points API contract: awards, deductions, batches, balances, history, tiers, multipliers."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.models import OutboxEvent, Participant, ParticipantMultiplier
from app.points.awards import award_points
from app.points.items import AwardItem
from tests.builders import run_ledger_verify, wait_for_operation
from tests.conftest import TenantKeys, WorkerProcess

BASE = "/api/v1/gamify"


def award(
    client: FlaskClient, tenant: TenantKeys, participant_id: str, amount: Any, **fields: Any
) -> Any:
    body = {"participant_id": participant_id, "amount": amount, **fields}
    return client.post(f"{BASE}/points/award", json=body, headers=tenant.participant())


def deduct(
    client: FlaskClient, tenant: TenantKeys, participant_id: str, amount: Any, **fields: Any
) -> Any:
    body = {"participant_id": participant_id, "amount": amount, **fields}
    return client.post(f"{BASE}/points/deduct", json=body, headers=tenant.participant())


def balance_of(client: FlaskClient, tenant: TenantKeys, participant_id: str) -> Any:
    response = client.get(
        f"{BASE}/participants/{participant_id}/points", headers=tenant.participant()
    )
    assert response.status_code == 200, response.json
    return response.json


def create_tier(client: FlaskClient, tenant: TenantKeys, **fields: Any) -> Any:
    return client.post(f"{BASE}/admin/tiers", json=fields, headers=tenant.admin())


def events_of(
    session_factory: sessionmaker[Session], tenant: TenantKeys, event_type: str
) -> list[dict[str, Any]]:
    with session_factory() as session:
        return list(
            session.execute(
                select(OutboxEvent.payload)
                .where(OutboxEvent.tenant_id == tenant.tenant_id, OutboxEvent.type == event_type)
                .order_by(OutboxEvent.created_at)
            ).scalars()
        )


# --- awards ---------------------------------------------------------------------------


def test_award_credits_points_and_answers_the_new_balance(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    first = award(client, tenant, "user_123", 1400, reason="Signup")
    response = award(
        client, tenant, "user_123", 100, reason="Purchase completed", metadata={"order_id": "o1"}
    )
    assert first.status_code == 200, first.json
    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) == {
        "transaction_id",
        "participant_id",
        "amount",
        "new_balance",
        "tier_upgrade",
        "available_at",
        "expires_at",
    }
    assert body["available_at"] is None and body["expires_at"] is None
    assert uuid.UUID(body["transaction_id"])
    assert body["participant_id"] == "user_123"
    assert body["amount"] == 100
    assert body["new_balance"] == 1500
    assert body["tier_upgrade"] is None
    points = balance_of(client, tenant, "user_123")
    assert (points["balance"], points["total_earned"], points["total_spent"]) == (1500, 1500, 0)


@pytest.mark.parametrize(
    ("amount", "status"),
    [(0, 422), (1, 200), (1_000_000, 200), (1_000_001, 422), (-5, 422)],
)
def test_award_amount_must_be_between_1_and_1_000_000(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess, amount: int, status: int
) -> None:
    response = award(client, tenant, "bounds", amount)
    assert response.status_code == status, response.json
    if status == 422:
        assert response.json["code"] == "validation_error"
        assert response.json["errors"][0]["loc"] == ["body", "amount"]
    else:
        assert response.json["amount"] == amount


@pytest.mark.parametrize("amount", ["100", 100.0, 2.5, True, None])
def test_award_amount_must_be_a_json_integer(
    client: FlaskClient, tenant: TenantKeys, amount: Any
) -> None:
    response = award(client, tenant, "strict", amount)
    assert response.status_code == 422
    assert response.json["code"] == "validation_error"


def test_award_reason_of_500_characters_is_accepted_and_501_rejected(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    assert award(client, tenant, "reasons", 5, reason="r" * 500).status_code == 200
    rejected = award(client, tenant, "reasons", 5, reason="r" * 501)
    assert rejected.status_code == 422
    assert rejected.json["errors"][0]["loc"] == ["body", "reason"]
    assert balance_of(client, tenant, "reasons")["balance"] == 5


def test_award_participant_id_must_be_1_to_255_characters(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    assert award(client, tenant, "p" * 255, 1).status_code == 200
    assert award(client, tenant, "p" * 256, 1).status_code == 422
    assert award(client, tenant, "", 1).status_code == 422


def test_award_rejects_unknown_fields_and_missing_ones(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    unknown = award(client, tenant, "u", 1, bonus=True)
    assert unknown.status_code == 422
    assert unknown.json["errors"][0]["loc"] == ["body", "bonus"]
    missing = client.post(
        f"{BASE}/points/award", json={"participant_id": "u"}, headers=tenant.participant()
    )
    assert missing.status_code == 422
    assert missing.json["errors"][0]["loc"] == ["body", "amount"]


@pytest.mark.parametrize(
    "fields",
    [
        {"participant_id": "a\u0000b"},
        {"reason": "nul \u0000 inside"},
        {"metadata": {"nested": ["ok", {"k": "\u0000"}]}},
        {"metadata": {"\u0000": 1}},
    ],
)
def test_award_text_holding_a_nul_character_is_rejected_with_422(
    client: FlaskClient, tenant: TenantKeys, fields: dict[str, Any]
) -> None:
    body = {"participant_id": "nul", "amount": 1, **fields}
    response = client.post(f"{BASE}/points/award", json=body, headers=tenant.participant())
    assert response.status_code == 422, response.json
    assert response.json["code"] == "validation_error"


def test_points_endpoints_require_an_api_key(client: FlaskClient) -> None:
    response = client.post(f"{BASE}/points/award", json={"participant_id": "x", "amount": 1})
    assert response.status_code == 401
    assert response.json["code"] == "unauthorized"
    assert client.get(f"{BASE}/participants/x/points").status_code == 401


def test_award_with_the_same_idempotency_key_is_applied_once(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    first = award(client, tenant, "idem", 50, idempotency_key="purchase_ord_abc")
    replay = award(client, tenant, "idem", 50, idempotency_key="purchase_ord_abc")
    by_header = client.post(
        f"{BASE}/points/award",
        json={"participant_id": "idem", "amount": 50},
        headers={**tenant.participant(), "Idempotency-Key": "purchase_ord_abc"},
    )
    assert first.status_code == replay.status_code == by_header.status_code == 200
    assert first.json == replay.json == by_header.json
    assert balance_of(client, tenant, "idem")["balance"] == 50
    reused = award(client, tenant, "idem", 51, idempotency_key="purchase_ord_abc")
    assert reused.status_code == 422
    assert reused.json["code"] == "IDEMPOTENCY_KEY_REUSED"


def test_award_with_prefer_respond_async_answers_202_and_the_operation_holds_the_result(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    response = client.post(
        f"{BASE}/points/award",
        json={"participant_id": "async", "amount": 7},
        headers={**tenant.participant(), "Prefer": "respond-async"},
    )
    assert response.status_code == 202
    assert response.headers["Location"].endswith(response.json["operation_id"])
    view = wait_for_operation(client, tenant.participant(), response.json["operation_id"])
    assert view["status"] == "succeeded"
    assert view["kind"] == "points.award"
    assert view["result"]["amount"] == 7
    assert view["result"]["new_balance"] == 7


# --- deductions -----------------------------------------------------------------------


def test_deduct_more_than_balance_answers_insufficient_points(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    award(client, tenant, "short", 30)
    response = deduct(client, tenant, "short", 50, reason="Reward redemption")
    assert response.status_code == 400
    assert response.json["code"] == "insufficient_points"
    assert response.json["detail"] == "Insufficient points. Available: 30, requested: 50"
    points = balance_of(client, tenant, "short")
    assert (points["balance"], points["total_spent"]) == (30, 0)
    history = client.get(
        f"{BASE}/participants/short/points/transactions", headers=tenant.participant()
    ).json
    assert [entry["type"] for entry in history["transactions"]] == ["award"]


def test_deduct_from_an_unknown_participant_answers_insufficient_points_with_nothing_available(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    response = deduct(client, tenant, "nobody", 1)
    assert response.status_code == 400
    assert response.json["detail"] == "Insufficient points. Available: 0, requested: 1"


def test_deduct_lowers_the_balance_and_counts_as_spent(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    award(client, tenant, "spender", 100)
    response = deduct(client, tenant, "spender", 40, reason="Reward redemption")
    assert response.status_code == 200, response.json
    assert set(response.json) == {"transaction_id", "participant_id", "amount", "new_balance"}
    assert response.json["amount"] == 40
    assert response.json["new_balance"] == 60
    exact = deduct(client, tenant, "spender", 60)
    assert exact.json["new_balance"] == 0
    points = balance_of(client, tenant, "spender")
    assert (points["balance"], points["total_earned"], points["total_spent"]) == (0, 100, 100)
    deducted = events_of(session_factory, tenant, "points.deducted")
    assert [event["amount"] for event in deducted] == [40, 60]


def test_deduct_amount_bounds_match_award(client: FlaskClient, tenant: TenantKeys) -> None:
    assert deduct(client, tenant, "b", 0).status_code == 422
    assert deduct(client, tenant, "b", 1_000_001).status_code == 422
    assert deduct(client, tenant, "b", 1, reason="r" * 501).status_code == 422


# --- batches --------------------------------------------------------------------------


def test_award_batch_of_101_awards_is_rejected_with_422(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    awards = [{"participant_id": f"u{i}", "amount": 1} for i in range(101)]
    response = client.post(
        f"{BASE}/points/award-batch", json={"awards": awards}, headers=tenant.participant()
    )
    assert response.status_code == 422
    assert response.json["errors"][0]["loc"] == ["body", "awards"]
    empty = client.post(
        f"{BASE}/points/award-batch", json={"awards": []}, headers=tenant.participant()
    )
    assert empty.status_code == 422


def test_award_batch_of_100_awards_applies_every_award(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    awards = [{"participant_id": f"u{i % 40}", "amount": 1 + i} for i in range(100)]
    response = client.post(
        f"{BASE}/points/award-batch", json={"awards": awards}, headers=tenant.participant()
    )
    assert response.status_code == 200, response.json
    assert (response.json["processed"], response.json["failed"]) == (100, 0)
    expected: dict[str, int] = {}
    for item, result in zip(awards, response.json["results"], strict=True):
        expected[item["participant_id"]] = expected.get(item["participant_id"], 0) + item["amount"]
        assert result["participant_id"] == item["participant_id"]
        assert result["new_balance"] == expected[item["participant_id"]]
        assert result["error"] is None
    assert balance_of(client, tenant, "u0")["balance"] == expected["u0"]


def test_award_batch_reports_each_bad_award_and_applies_the_rest(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    awards: list[Any] = [
        {"participant_id": "user_1", "amount": 100, "reason": "Weekly bonus"},
        {"participant_id": "user_2", "amount": 0},
        {"participant_id": "", "amount": 10},
        {"participant_id": "user_1", "amount": 50, "metadata": {"campaign": "w1"}},
        "not an award",
        {"participant_id": "user_3", "amount": 5, "bonus": 1},
        {"participant_id": "user_3", "amount": "5"},
        {"participant_id": "user_3", "amount": 1_000_001},
        {"participant_id": "user_3", "amount": 5, "reason": "r" * 501},
        {"participant_id": "user_4", "amount": 1_000_000},
        {"participant_id": "user_\u0000", "amount": 1},
        {"participant_id": "user_5", "amount": 1, "metadata": {"k": "\u0000"}},
        {"participant_id": "user_5", "amount": 1, "b\u0000nus": 1},
    ]
    response = client.post(
        f"{BASE}/points/award-batch",
        json={"awards": awards, "idempotency_key": "batch-1"},
        headers=tenant.participant(),
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["processed"], body["failed"]) == (3, 10)
    results = body["results"]
    assert [result["error"] is None for result in results] == [
        True, False, False, True, False, False, False, False, False, True, False, False, False,
    ]  # fmt: skip
    assert results[0]["new_balance"] == 100
    assert results[3]["new_balance"] == 150
    assert results[9]["new_balance"] == 1_000_000
    assert results[1]["participant_id"] == "user_2"
    assert results[1]["transaction_id"] is None
    assert results[1]["error"]["code"] == "invalid_award"
    assert "amount" in results[1]["error"]["detail"]
    assert "participant_id" in results[2]["error"]["detail"]
    assert "bonus" in results[5]["error"]["detail"]
    assert "reason" in results[8]["error"]["detail"]
    assert "NUL" in results[10]["error"]["detail"]
    assert "NUL" in results[11]["error"]["detail"]
    # A stray key is named in the error even when it holds NUL, which PostgreSQL cannot store.
    assert results[12]["error"]["detail"] == "unknown field(s): b\ufffdnus"
    assert balance_of(client, tenant, "user_1")["balance"] == 150
    assert balance_of(client, tenant, "user_2")["balance"] == 0
    assert balance_of(client, tenant, "user_3")["balance"] == 0


def test_award_batch_writes_a_constant_number_of_statements_whatever_its_size(
    db_session: Session, make_tenant: Any
) -> None:
    tenant = make_tenant()
    statements: list[str] = []

    def count(*args: Any) -> None:
        # Savepoints (the participant lock tries the common case first) are not work.
        if not args[2].startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            statements.append(args[2])

    connection = db_session.connection()
    event.listen(connection, "before_cursor_execute", count)
    try:
        award_points(db_session, tenant.tenant_id, "live", [AwardItem("one", 1)], operation_id=None)
        for_one = len(statements)
        statements.clear()
        items = [AwardItem(f"p{i}", 1 + i) for i in range(100)]
        credits = award_points(db_session, tenant.tenant_id, "live", items, operation_id=None)
    finally:
        event.remove(connection, "before_cursor_execute", count)
    assert len(statements) == for_one <= 6, statements
    assert [credit.new_balance for credit in credits] == [1 + i for i in range(100)]


def test_awards_to_one_participant_in_one_set_apply_in_order(
    db_session: Session, make_tenant: Any
) -> None:
    tenant = make_tenant()
    items = [AwardItem("same", 10), AwardItem("other", 1), AwardItem("same", 5)]
    credits = award_points(db_session, tenant.tenant_id, "live", items, operation_id=None)
    assert [(c.participant_id, c.new_balance) for c in credits] == [
        ("same", 10),
        ("other", 1),
        ("same", 15),
    ]
    participant = db_session.execute(
        select(Participant).where(
            Participant.tenant_id == tenant.tenant_id, Participant.external_id == "same"
        )
    ).scalar_one()
    db_session.refresh(participant)
    assert (participant.balance, participant.total_earned) == (15, 15)


# --- reads ----------------------------------------------------------------------------


def test_points_of_an_unknown_participant_are_zero(client: FlaskClient, tenant: TenantKeys) -> None:
    points = balance_of(client, tenant, "stranger")
    assert points["participant_id"] == "stranger"
    assert (points["balance"], points["total_earned"], points["total_spent"]) == (0, 0, 0)
    assert points["tier"] == {
        "current": None,
        "next": None,
        "qualifying_points": 0,
        "points_to_next": None,
    }
    assert points["multipliers"] == []
    history = client.get(
        f"{BASE}/participants/stranger/points/transactions", headers=tenant.participant()
    ).json
    assert history == {"transactions": [], "total": 0, "page": 1, "page_size": 20}


def test_transactions_are_listed_newest_first_with_pages(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    award(client, tenant, "hist", 100, reason="first", metadata={"order_id": "a"})
    award(client, tenant, "hist", 20, reason="second")
    deduct(client, tenant, "hist", 30, reason="spent")
    award(client, tenant, "hist", 5)
    url = f"{BASE}/participants/hist/points/transactions"
    first_page = client.get(f"{url}?page=1&page_size=3", headers=tenant.participant()).json
    second_page = client.get(f"{url}?page=2&page_size=3", headers=tenant.participant()).json
    assert (first_page["total"], first_page["page"], first_page["page_size"]) == (4, 1, 3)
    entries = first_page["transactions"] + second_page["transactions"]
    assert [(e["type"], e["amount"], e["balance_after"]) for e in entries] == [
        ("award", 5, 95),
        ("deduct", -30, 90),
        ("award", 20, 120),
        ("award", 100, 100),
    ]
    assert entries[3]["reason"] == "first"
    assert entries[3]["metadata"] == {"order_id": "a"}
    assert set(entries[0]) >= {
        "transaction_id",
        "type",
        "amount",
        "reason",
        "balance_after",
        "created_at",
        "metadata",
    }
    too_big = client.get(f"{url}?page_size=101", headers=tenant.participant())
    assert too_big.status_code == 422
    assert client.get(f"{url}?page=0", headers=tenant.participant()).status_code == 422


# --- tiers ----------------------------------------------------------------------------

SILVER = {
    "code": "silver",
    "name": "Silver Tier",
    "level": 2,
    "points_required": 1000,
    "points_multiplier": 1.25,
    "benefits": ["Free shipping"],
    "color": "#C0C0C0",
}


def test_tiers_are_created_listed_changed_and_deleted_by_admins(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    created = create_tier(client, tenant, **SILVER)
    assert created.status_code == 201, created.json
    assert created.json["points_multiplier"] == 1.25
    assert created.json["benefits"] == ["Free shipping"]
    create_tier(client, tenant, code="bronze", name="Bronze", level=1, points_required=0)
    listed = client.get(f"{BASE}/admin/tiers", headers=tenant.admin()).json["tiers"]
    assert [tier["code"] for tier in listed] == ["bronze", "silver"]
    assert listed[0]["points_multiplier"] == 1.0
    changed = client.patch(
        f"{BASE}/admin/tiers/silver",
        json={"points_required": 900, "color": None},
        headers=tenant.admin(),
    )
    assert changed.status_code == 200, changed.json
    assert (changed.json["points_required"], changed.json["color"]) == (900, None)
    assert changed.json["name"] == "Silver Tier"
    got = client.get(f"{BASE}/admin/tiers/silver", headers=tenant.admin())
    assert got.json["points_required"] == 900
    assert client.delete(f"{BASE}/admin/tiers/silver", headers=tenant.admin()).status_code == 204
    gone = client.get(f"{BASE}/admin/tiers/silver", headers=tenant.admin())
    assert gone.status_code == 404
    assert gone.json["code"] == "tier_not_found"
    assert client.delete(f"{BASE}/admin/tiers/silver", headers=tenant.admin()).status_code == 404
    patch_missing = client.patch(
        f"{BASE}/admin/tiers/silver", json={"name": "x"}, headers=tenant.admin()
    )
    assert patch_missing.status_code == 404


def test_creating_a_tier_with_a_taken_code_answers_409_tier_already_exists(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    assert create_tier(client, tenant, **SILVER).status_code == 201
    duplicate = create_tier(client, tenant, **{**SILVER, "level": 9})
    assert duplicate.status_code == 409
    assert duplicate.json["code"] == "tier_already_exists"
    same_level = create_tier(client, tenant, **{**SILVER, "code": "silver2"})
    assert same_level.status_code == 409
    assert same_level.json["code"] == "tier_level_taken"
    create_tier(client, tenant, **{**SILVER, "code": "gold", "level": 3})
    moved = client.patch(f"{BASE}/admin/tiers/gold", json={"level": 2}, headers=tenant.admin())
    assert moved.status_code == 409
    assert moved.json["code"] == "tier_level_taken"


@pytest.mark.parametrize(
    "fields",
    [
        {"points_multiplier": 0},
        {"points_multiplier": 1.2345},
        {"points_required": -1},
        {"code": "Gold Tier"},
        {"color": "gold"},
        {"name": ""},
        {"name": "Gold\u0000"},
        {"benefits": ["free \u0000 shipping"]},
    ],
)
def test_invalid_tier_fields_are_rejected_with_422(
    client: FlaskClient, tenant: TenantKeys, fields: dict[str, Any]
) -> None:
    response = create_tier(client, tenant, **{**SILVER, **fields})
    assert response.status_code == 422
    assert response.json["code"] == "validation_error"


def test_tier_admin_needs_an_admin_key(client: FlaskClient, tenant: TenantKeys) -> None:
    response = client.get(f"{BASE}/admin/tiers", headers=tenant.participant())
    assert response.status_code == 403
    assert response.json["code"] == "forbidden"
    assert (
        client.patch(
            f"{BASE}/admin/tiers/x", json={"name": None}, headers=tenant.admin()
        ).status_code
        == 422
    )


def test_crossing_a_tier_threshold_reports_the_upgrade_once_and_the_tier_multiplies_later_awards(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    create_tier(client, tenant, code="bronze", name="Bronze", level=1, points_required=0)
    create_tier(
        client, tenant, code="gold", name="Gold Tier", level=3, points_required=1000,
        points_multiplier=1.5,
    )  # fmt: skip
    below = award(client, tenant, "climber", 999)
    assert below.json["tier_upgrade"] is None  # entering the base tier is no upgrade
    crossing = award(client, tenant, "climber", 1)
    assert crossing.json["tier_upgrade"] == {
        "code": "gold",
        "name": "Gold Tier",
        "level": 3,
        "previous_code": "bronze",
        "previous_level": 1,
    }
    multiplied = award(client, tenant, "climber", 5)
    assert multiplied.json["tier_upgrade"] is None
    assert multiplied.json["amount"] == 7  # 5 x 1.5 = 7.5, rounded down
    assert multiplied.json["new_balance"] == 1007
    entry = client.get(
        f"{BASE}/participants/climber/points/transactions?page_size=1",
        headers=tenant.participant(),
    ).json["transactions"][0]
    assert (entry["amount"], entry["base_amount"]) == (7, 5)
    assert entry["multipliers"] == [{"source": "tier", "tier_code": "gold", "multiplier": 1.5}]
    points = balance_of(client, tenant, "climber")
    assert points["tier"]["current"] == {
        "code": "gold",
        "name": "Gold Tier",
        "level": 3,
        "points_multiplier": 1.5,
    }
    assert points["tier"]["next"] is None
    upgrades = events_of(session_factory, tenant, "tier.upgraded")
    assert len(upgrades) == 1
    assert upgrades[0]["new_tier"]["code"] == "gold"
    assert upgrades[0]["previous_tier"] == {"code": "bronze", "name": "Bronze", "level": 1}


def test_points_view_shows_the_next_tier_and_the_points_still_needed(
    client: FlaskClient, tenant: TenantKeys, worker: WorkerProcess
) -> None:
    create_tier(client, tenant, **SILVER)
    award(client, tenant, "aspiring", 400)
    tier = balance_of(client, tenant, "aspiring")["tier"]
    assert tier["current"] is None
    assert tier["next"] == {
        "code": "silver",
        "name": "Silver Tier",
        "level": 2,
        "points_required": 1000,
    }
    assert (tier["qualifying_points"], tier["points_to_next"]) == (400, 600)
    first_tier = award(client, tenant, "aspiring", 600)
    assert first_tier.json["tier_upgrade"]["previous_code"] is None
    assert first_tier.json["tier_upgrade"]["previous_level"] is None


def test_active_participant_multipliers_apply_to_awards_until_they_expire(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    award(client, tenant, "boosted", 1)
    now = utcnow()
    claim_id = uuid.uuid4()
    with session_factory.begin() as session:
        participant_pk = session.execute(
            select(Participant.id).where(
                Participant.tenant_id == tenant.tenant_id, Participant.external_id == "boosted"
            )
        ).scalar_one()
        for multiplier, starts, expires, claim in (
            (Decimal(2), now - timedelta(hours=1), now + timedelta(hours=1), claim_id),
            (Decimal(3), now - timedelta(hours=2), now - timedelta(hours=1), None),  # expired
            (Decimal(5), now + timedelta(hours=1), None, None),  # not started
        ):
            session.add(
                ParticipantMultiplier(
                    id=uuid.uuid4(),
                    tenant_id=tenant.tenant_id,
                    env="live",
                    participant_pk=participant_pk,
                    multiplier=multiplier,
                    starts_at=starts,
                    expires_at=expires,
                    claim_id=claim,
                )
            )
    response = award(client, tenant, "boosted", 10)
    assert response.json["amount"] == 20
    entry = client.get(
        f"{BASE}/participants/boosted/points/transactions?page_size=1",
        headers=tenant.participant(),
    ).json["transactions"][0]
    assert (entry["amount"], entry["base_amount"]) == (20, 10)
    assert [(m["source"], m["multiplier"], m["claim_id"]) for m in entry["multipliers"]] == [
        ("reward", 2.0, str(claim_id))
    ]
    points = balance_of(client, tenant, "boosted")
    assert [m["multiplier"] for m in points["multipliers"]] == [2.0]
    assert points["effective_multiplier"] == 2.0


def test_awards_are_recorded_as_points_awarded_events(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
) -> None:
    response = award(client, tenant, "evented", 12, reason="r", metadata={"k": "v"})
    awarded = events_of(session_factory, tenant, "points.awarded")
    assert awarded == [
        {
            "participant_id": "evented",
            "transaction_id": response.json["transaction_id"],
            "amount": 12,
            "base_amount": 12,
            "new_balance": 12,
            "reason": "r",
            "metadata": {"k": "v"},
        }
    ]


# --- ledger verification --------------------------------------------------------------


def test_ledger_verify_reports_a_balance_that_disagrees_with_the_ledger(
    client: FlaskClient,
    tenant: TenantKeys,
    worker: WorkerProcess,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    award(client, tenant, "audited", 10)
    code, report = run_ledger_verify(service_env, "--tenant", str(tenant.tenant_id))
    assert (code, report["ok"], report["participants_checked"]) == (0, True, 1)
    tampered = (Participant.tenant_id == tenant.tenant_id, Participant.external_id == "audited")
    with session_factory.begin() as session:
        session.execute(update(Participant).where(*tampered).values(balance=11, total_earned=11))
    try:
        code, report = run_ledger_verify(service_env, "--tenant", str(tenant.tenant_id))
    finally:
        with session_factory.begin() as session:
            session.execute(
                update(Participant).where(*tampered).values(balance=10, total_earned=10)
            )
    assert code == 1
    assert report["ok"] is False
    (violation,) = report["violations"]
    assert violation["check"] == "totals_match_ledger"
    assert (violation["participant_id"], violation["balance"], violation["ledger_balance"]) == (
        "audited",
        11,
        10,
    )


def test_openapi_documents_the_points_endpoints(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").json["paths"]
    for path in (
        "/api/v1/gamify/points/award",
        "/api/v1/gamify/points/deduct",
        "/api/v1/gamify/points/award-batch",
        "/api/v1/gamify/points/award-bulk",
        "/api/v1/gamify/points/award-bulk/{operation_id}/errors",
        "/api/v1/gamify/participants/{participant_id}/points",
        "/api/v1/gamify/participants/{participant_id}/points/transactions",
        "/api/v1/gamify/admin/tiers",
        "/api/v1/gamify/admin/tiers/{code}",
    ):
        assert path in paths, path
    deduct_errors = paths["/api/v1/gamify/points/deduct"]["post"]["responses"]["400"]
    assert "insufficient_points" in deduct_errors["description"]
