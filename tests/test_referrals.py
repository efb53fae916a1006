"""Referrals end to end, through the API and real workers: the program, codes, tracking
and its refusals, completion by hand, by the completion action and by an award naming it,
payments exactly once under concurrent triggers, and the events as signed webhooks."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.models import LedgerEntry, Operation, OutboxEvent, Participant, Referral
from app.operations import UNFINISHED
from app.referrals.expiry import sweep_referral_batch
from app.text import CODE_ALPHABET
from tests.builders import (
    GAMIFY,
    create_leaderboard,
    run_ledger_verify,
    wait_for,
    wait_for_operation,
    wait_until,
)
from tests.conftest import TenantKeys
from tests.webhook_receiver import WebhookReceiver, create_webhook, verified_event

pytestmark = pytest.mark.usefixtures("worker")

PROGRAM = f"{GAMIFY}/admin/referral-program"


def configure(client: FlaskClient, tenant: TenantKeys, **fields: Any) -> dict[str, Any]:
    body = {"referrer_points": 500, "referee_points": 200, **fields}
    response = client.put(PROGRAM, json=body, headers=tenant.admin())
    assert response.status_code == 200, response.json
    return dict(response.json)


def code_of(client: FlaskClient, tenant: TenantKeys, participant_id: str) -> str:
    response = client.get(
        f"{GAMIFY}/participants/{participant_id}/referral-code", headers=tenant.participant()
    )
    assert response.status_code == 200, response.json
    assert response.json["participant_id"] == participant_id
    return str(response.json["referral_code"])


def finished(
    client: FlaskClient, tenant: TenantKeys, response: Any, success: int = 200
) -> tuple[int, Any]:
    """A write's final answer: a 202 (the worker slower than the wait) is polled to its end
    (`success`: the status its sync answer would have had)."""
    if response.status_code != 202:
        return response.status_code, response.json
    view = wait_for_operation(client, tenant.participant(), response.json["operation_id"])
    if view["status"] == "succeeded":
        return success, view["result"]
    return view["error"]["status"], view["error"]


def track(
    client: FlaskClient, tenant: TenantKeys, code: str, referee_id: str, **headers: str
) -> tuple[int, Any]:
    response = client.post(
        f"{GAMIFY}/referrals/track",
        json={"referral_code": code, "referee_id": referee_id},
        headers={**tenant.participant(), **headers},
    )
    return finished(client, tenant, response, success=201)


def complete(client: FlaskClient, tenant: TenantKeys, **body: Any) -> tuple[int, Any]:
    response = client.post(f"{GAMIFY}/referrals/complete", json=body, headers=tenant.participant())
    return finished(client, tenant, response)


def act(
    client: FlaskClient, tenant: TenantKeys, participant_id: str, action: str, **properties: Any
) -> None:
    response = client.post(
        f"{GAMIFY}/actions",
        json={"participant_id": participant_id, "action": action, "properties": properties},
        headers=tenant.participant(),
    )
    assert response.status_code == 201, response.json


def referrals_of(client: FlaskClient, tenant: TenantKeys, participant_id: str, **query: Any) -> Any:
    response = client.get(
        f"{GAMIFY}/participants/{participant_id}/referrals",
        query_string=query,
        headers=tenant.participant(),
    )
    assert response.status_code == 200, response.json
    return response.json


def settled(session_factory: sessionmaker[Session], tenant: TenantKeys) -> None:
    """Every write of the tenant has run, the payments recorded by completions included."""

    def unfinished() -> int:
        with session_factory() as session:
            return int(
                session.execute(
                    select(func.count())
                    .select_from(Operation)
                    .where(
                        Operation.tenant_id == tenant.tenant_id, Operation.status.in_(UNFINISHED)
                    )
                ).scalar_one()
            )

    wait_until(lambda: unfinished() == 0, 60, "the tenant's operations to finish")


def balances(session_factory: sessionmaker[Session], tenant: TenantKeys) -> dict[str, int]:
    with session_factory() as session:
        rows = session.execute(
            select(Participant.external_id, Participant.balance).where(
                Participant.tenant_id == tenant.tenant_id
            )
        ).all()
    return {external_id: balance for external_id, balance in rows}


def referral_payments(session_factory: sessionmaker[Session], tenant: TenantKeys) -> Counter[str]:
    """Ledger lines paying referrals, counted per participant."""
    with session_factory() as session:
        rows = session.execute(
            select(Participant.external_id)
            .join(LedgerEntry, LedgerEntry.participant_pk == Participant.id)
            .where(
                LedgerEntry.tenant_id == tenant.tenant_id,
                LedgerEntry.metadata_["referral_id"].is_not(None),
            )
        ).scalars()
    return Counter(rows)


# --- the program and codes ------------------------------------------------------------


def test_the_program_is_inactive_until_configured_and_tracking_says_so(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    view = client.get(PROGRAM, headers=tenant.admin()).json
    assert (view["configured"], view["active"], view["updated_at"]) == (False, False, None)
    code = code_of(client, tenant, "alice")
    status, body = track(client, tenant, code, "bob")
    assert (status, body["code"]) == (400, "referral_program_inactive")

    configured = configure(
        client, tenant, completion_action="purchase", max_referrals_per_referrer=5, code_length=9
    )
    assert configured | {"updated_at": None} == {
        "configured": True,
        "referrer_points": 500,
        "referee_points": 200,
        "completion_action": "purchase",
        "max_referrals_per_referrer": 5,
        "code_length": 9,
        "active": True,
        "min_qualifying_amount": None,
        "expiration_days": None,
        "updated_at": None,
    }
    assert client.get(PROGRAM, headers=tenant.admin()).json == configured
    [entry] = client.get(f"{GAMIFY}/admin/audit-log", headers=tenant.admin()).json["entries"]
    assert entry["action"] == "referral_program.updated"
    assert entry["details"]["values"]["completion_action"] == "purchase"
    assert track(client, tenant, code, "bob")[0] == 201

    configure(client, tenant, active=False)
    status, body = track(client, tenant, code, "carol")
    assert (status, body["code"]) == (400, "referral_program_inactive")


def test_the_program_is_admin_only_and_checked(client: FlaskClient, tenant: TenantKeys) -> None:
    body = {"referrer_points": 1, "referee_points": 1}
    assert client.put(PROGRAM, json=body, headers=tenant.participant()).status_code == 403
    for wrong in (
        {"referrer_points": -1, "referee_points": 0},
        {"referrer_points": 1},
        {**body, "code_length": 5},
        {**body, "code_length": 33},
        {**body, "max_referrals_per_referrer": 0},
        {**body, "completion_action": ""},
        {**body, "referrer_points": "10"},
        {**body, "min_qualifying_amount": -1},
        {**body, "min_qualifying_amount": "25"},
        {**body, "expiration_days": 0},
        {**body, "expiration_days": 3651},
    ):
        response = client.put(PROGRAM, json=wrong, headers=tenant.admin())
        assert response.status_code == 422, wrong


def test_a_code_is_made_on_first_ask_of_the_programs_length_and_stays(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    configure(client, tenant, code_length=12)
    first = code_of(client, tenant, "alice")
    assert len(first) == 12 and set(first) <= set(CODE_ALPHABET)
    assert code_of(client, tenant, "alice") == first
    configure(client, tenant, code_length=6)
    assert code_of(client, tenant, "alice") == first  # codes made before keep theirs
    other = code_of(client, tenant, "bob")
    assert len(other) == 6 and other != first


def test_concurrent_first_asks_of_a_code_agree(flask_app: Flask, tenant: TenantKeys) -> None:
    def ask(_: int) -> str:
        return code_of(flask_app.test_client(), tenant, "racer")

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = set(pool.map(ask, range(16)))
    assert len(codes) == 1


# --- tracking -------------------------------------------------------------------------


def test_tracking_answers_the_referral_and_the_referrer_lists_it_pending(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    configure(client, tenant)
    code = code_of(client, tenant, "alice")
    response = client.post(
        f"{GAMIFY}/referrals/track",
        json={"referral_code": f" {code.lower()} ", "referee_id": "bob"},
        headers=tenant.participant(),
    )
    assert response.status_code == 201, response.json
    referral = response.json
    uuid.UUID(referral["referral_id"])
    assert referral | {"referral_id": None, "created_at": None} == {
        "referral_id": None,
        "referrer_id": "alice",
        "referee_id": "bob",
        "referee_email": None,
        "referral_code": code,
        "status": "pending",
        "referrer_points": 0,
        "referee_points": 0,
        "qualifying_action": None,
        "qualifying_amount": None,
        "order_id": None,
        "created_at": None,
        "completed_at": None,
        "expires_at": None,
    }
    listed = referrals_of(client, tenant, "alice")
    assert listed["referrals"] == [referral]
    assert listed["totals"] == {
        "total": 1,
        "pending": 1,
        "completed": 0,
        "expired": 0,
        "points_earned": 0,
    }
    assert referrals_of(client, tenant, "alice", status="completed")["referrals"] == []
    assert referrals_of(client, tenant, "bob")["totals"]["total"] == 0


def test_tracking_refusals_name_what_is_wrong(client: FlaskClient, tenant: TenantKeys) -> None:
    configure(client, tenant, max_referrals_per_referrer=2)
    alice, dave = code_of(client, tenant, "alice"), code_of(client, tenant, "dave")

    assert track(client, tenant, "NOPE2345", "bob")[1]["code"] == "referral_invalid"
    assert track(client, tenant, alice, "alice")[1]["code"] == "referral_self"
    assert track(client, tenant, alice, "bob")[0] == 201
    # Once referred, a referee is referred: by the same code or anyone else's.
    for code in (alice, dave):
        status, body = track(client, tenant, code, "bob")
        assert (status, body["code"]) == (400, "referral_already_tracked")
    assert track(client, tenant, alice, "carol")[0] == 201
    status, body = track(client, tenant, alice, "erin")
    assert (status, body["code"]) == (400, "referral_limit_reached")
    assert "2" in body["detail"]
    assert referrals_of(client, tenant, "alice")["totals"]["total"] == 2


def test_a_replayed_track_answers_the_first_referral(
    client: FlaskClient, tenant: TenantKeys
) -> None:
    configure(client, tenant)
    code = code_of(client, tenant, "alice")
    first = track(client, tenant, code, "bob", **{"Idempotency-Key": "track-bob"})
    again = track(client, tenant, code, "bob", **{"Idempotency-Key": "track-bob"})
    assert first == again and first[0] == 201


def test_concurrent_tracks_of_one_referee_make_one_referral(
    flask_app: Flask, tenant: TenantKeys, start_worker: Any
) -> None:
    start_worker(concurrency=4)
    client = flask_app.test_client()
    configure(client, tenant)
    codes = [code_of(client, tenant, f"referrer-{index}") for index in range(8)]

    def attempt(code: str) -> tuple[int, Any]:
        return track(flask_app.test_client(), tenant, code, "popular")

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(attempt, codes * 2))
    statuses = Counter(status for status, _ in answers)
    assert statuses == {201: 1, 400: 15}
    assert {body["code"] for status, body in answers if status == 400} == {
        "referral_already_tracked"
    }


def test_concurrent_tracks_against_one_referrer_stop_at_the_limit(
    flask_app: Flask, tenant: TenantKeys, start_worker: Any
) -> None:
    start_worker(concurrency=4)
    client = flask_app.test_client()
    configure(client, tenant, max_referrals_per_referrer=3)
    code = code_of(client, tenant, "alice")

    def attempt(index: int) -> tuple[int, Any]:
        return track(flask_app.test_client(), tenant, code, f"friend-{index}")

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(attempt, range(20)))
    assert Counter(status for status, _ in answers) == {201: 3, 400: 17}
    assert {body["code"] for status, body in answers if status == 400} == {"referral_limit_reached"}
    assert referrals_of(client, tenant, "alice")["totals"]["total"] == 3


# --- completion -----------------------------------------------------------------------


def test_completing_by_hand_pays_both_sides_once(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    configure(client, tenant)
    code = code_of(client, tenant, "alice")
    referral = track(client, tenant, code, "bob")[1]

    status, completed = complete(
        client,
        tenant,
        referral_id=referral["referral_id"],
        qualifying_action="first_purchase",
        qualifying_amount=75,
        order_id="order-456",
    )
    assert status == 200, completed
    assert completed["status"] == "completed" and completed["completed_at"] is not None
    assert (completed["referrer_points"], completed["referee_points"]) == (500, 200)
    assert (
        completed["qualifying_action"],
        completed["qualifying_amount"],
        completed["order_id"],
    ) == ("first_purchase", 75.0, "order-456")

    for again in ({"referral_id": referral["referral_id"]}, {"referee_id": "bob"}):
        status, body = complete(client, tenant, **again)
        assert (status, body["code"]) == (409, "referral_already_completed")
    settled(session_factory, tenant)
    assert balances(session_factory, tenant) == {"alice": 500, "bob": 200}
    assert referral_payments(session_factory, tenant) == {"alice": 1, "bob": 1}
    listed = referrals_of(client, tenant, "alice")
    assert listed["referrals"] == [completed]
    assert listed["totals"] == {
        "total": 1,
        "pending": 0,
        "completed": 1,
        "expired": 0,
        "points_earned": 500,
    }


def test_completion_refusals(client: FlaskClient, tenant: TenantKeys) -> None:
    for body in ({"referral_id": str(uuid.uuid4())}, {"referral_id": "x"}, {"referee_id": "z"}):
        status, answer = complete(client, tenant, **body)
        assert (status, answer["code"]) == (404, "referral_not_found"), body
    configure(client, tenant)
    referral = track(client, tenant, code_of(client, tenant, "alice"), "bob")[1]
    configure(client, tenant, active=False)
    status, answer = complete(client, tenant, referral_id=referral["referral_id"])
    assert (status, answer["code"]) == (400, "referral_program_inactive")
    for body in ({}, {"referral_id": referral["referral_id"], "referee_id": "bob"}):
        response = client.post(
            f"{GAMIFY}/referrals/complete", json=body, headers=tenant.participant()
        )
        assert response.status_code == 422, body


def test_a_completion_under_the_minimum_amount_is_refused_and_pays_nothing(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    program = configure(client, tenant, completion_action="purchase", min_qualifying_amount=25)
    assert program["min_qualifying_amount"] == 25.0
    code = code_of(client, tenant, "alice")
    by_hand = track(client, tenant, code, "bob")[1]
    by_action = track(client, tenant, code, "carol")[1]

    for amount in ({"qualifying_amount": 24.99}, {}):
        status, answer = complete(client, tenant, referral_id=by_hand["referral_id"], **amount)
        assert (status, answer["code"]) == (400, "referral_not_qualified"), amount
        assert "25.00" in answer["detail"]
    status, completed = complete(
        client, tenant, referral_id=by_hand["referral_id"], qualifying_amount=25
    )
    assert (status, completed["status"]) == (200, "completed")
    # By the completion action: an amount short of the minimum, or none, leaves it pending.
    act(client, tenant, "carol", "purchase", amount=10, order_id="o-1")
    act(client, tenant, "carol", "purchase", order_id="o-2")
    pending = referrals_of(client, tenant, "alice", status="pending")["referrals"]
    assert [referral["referral_id"] for referral in pending] == [by_action["referral_id"]]
    act(client, tenant, "carol", "purchase", amount=30, order_id="o-3")
    shown = {r["referee_id"]: r for r in referrals_of(client, tenant, "alice")["referrals"]}
    assert (shown["carol"]["status"], shown["carol"]["order_id"]) == ("completed", "o-3")
    settled(session_factory, tenant)
    assert referral_payments(session_factory, tenant) == {"alice": 2, "bob": 1, "carol": 1}


def _expire_now(session_factory: sessionmaker[Session], referral_id: str) -> None:
    """Move the referral's expiry into the past (the workers run on the real clock)."""
    with session_factory.begin() as session:
        session.execute(
            update(Referral)
            .where(Referral.id == uuid.UUID(referral_id))
            .values(expires_at=func.now() - timedelta(seconds=1))
        )


def test_a_pending_referral_past_its_expiry_is_expired_and_never_completes(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    configure(client, tenant, completion_action="purchase", expiration_days=30)
    code = code_of(client, tenant, "alice")
    bob = track(client, tenant, code, "bob")[1]
    carol = track(client, tenant, code, "carol")[1]
    lifetime = datetime.fromisoformat(bob["expires_at"]) - datetime.fromisoformat(bob["created_at"])
    assert lifetime == timedelta(days=30)
    # Referrals tracked before a change keep their expiry.
    configure(client, tenant, completion_action="purchase", expiration_days=None)
    dave = track(client, tenant, code, "dave")[1]
    assert dave["expires_at"] is None

    _expire_now(session_factory, bob["referral_id"])
    # Expired at once for every read and completion, whether or not the sweep came by.
    expired = referrals_of(client, tenant, "alice", status="expired")
    assert [r["referral_id"] for r in expired["referrals"]] == [bob["referral_id"]]
    assert expired["referrals"][0]["status"] == "expired"
    assert expired["totals"] == {
        "total": 3,
        "pending": 2,
        "completed": 0,
        "expired": 1,
        "points_earned": 0,
    }
    status, answer = complete(client, tenant, referral_id=bob["referral_id"])
    assert (status, answer["code"]) == (400, "referral_expired")
    act(client, tenant, "bob", "purchase", amount=50)
    act(client, tenant, "carol", "purchase", amount=50)
    shown = {
        r["referee_id"]: r["status"] for r in referrals_of(client, tenant, "alice")["referrals"]
    }
    assert shown == {"bob": "expired", "carol": "completed", "dave": "pending"}
    assert carol["referral_id"] != bob["referral_id"]
    # The workers' sweep makes the stored status catch up.
    wait_until(
        lambda: stored_status(session_factory, bob["referral_id"]) == "expired",
        10,
        "the sweep to expire the referral",
    )
    settled(session_factory, tenant)
    assert referral_payments(session_factory, tenant) == {"alice": 1, "carol": 1}


def stored_status(session_factory: sessionmaker[Session], referral_id: str) -> str:
    with session_factory() as session:
        return str(
            session.execute(
                select(Referral.status).where(Referral.id == uuid.UUID(referral_id))
            ).scalar_one()
        )


def test_the_sweep_expires_only_pending_referrals_past_their_time_once(
    db_session: Session, tenant: TenantKeys
) -> None:
    now = datetime.now(UTC)
    rows = {
        "due": ("pending", now - timedelta(minutes=1)),
        "later": ("pending", now + timedelta(minutes=1)),
        "never": ("pending", None),
        "completed": ("completed", now - timedelta(minutes=1)),
    }
    for referee, (status, expires_at) in rows.items():
        db_session.add(
            Referral(
                tenant_id=tenant.tenant_id,
                env="live",
                referrer_id="alice",
                referee_id=referee,
                code="ALICE123",
                status=status,
                expires_at=expires_at,
            )
        )
    db_session.flush()

    assert sweep_referral_batch(db_session, now) == 1
    assert sweep_referral_batch(db_session, now) == 0
    statuses = dict(
        db_session.execute(
            select(Referral.referee_id, Referral.status).where(
                Referral.tenant_id == tenant.tenant_id
            )
        ).all()
    )
    assert statuses == {
        "due": "expired",
        "later": "pending",
        "never": "pending",
        "completed": "completed",
    }


def test_the_referees_email_is_kept_and_listed(client: FlaskClient, tenant: TenantKeys) -> None:
    configure(client, tenant)
    code = code_of(client, tenant, "alice")
    response = client.post(
        f"{GAMIFY}/referrals/track",
        json={"referral_code": code, "referee_id": "bob", "referee_email": "bob@example.com"},
        headers=tenant.participant(),
    )
    assert response.status_code == 201, response.json
    assert response.json["referee_email"] == "bob@example.com"
    [listed] = referrals_of(client, tenant, "alice")["referrals"]
    assert listed["referee_email"] == "bob@example.com"
    for wrong in ("not-an-email", "two@@example.com", "a b@example.com", "x" * 320 + "@e.io"):
        refused = client.post(
            f"{GAMIFY}/referrals/track",
            json={"referral_code": code, "referee_id": "carol", "referee_email": wrong},
            headers=tenant.participant(),
        )
        assert refused.status_code == 422, wrong


def test_the_completion_action_completes_the_referral_and_pays_once(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    configure(client, tenant, completion_action="purchase")
    referral = track(client, tenant, code_of(client, tenant, "alice"), "bob")[1]

    act(client, tenant, "bob", "login")
    assert referrals_of(client, tenant, "alice")["referrals"][0]["status"] == "pending"
    for order in ("o-1", "o-2"):
        act(client, tenant, "bob", "purchase", amount=42.5, order_id=order)
    [completed] = referrals_of(client, tenant, "alice")["referrals"]
    assert completed["referral_id"] == referral["referral_id"]
    assert (completed["status"], completed["qualifying_action"]) == ("completed", "purchase")
    assert (completed["qualifying_amount"], completed["order_id"]) == (42.5, "o-1")
    settled(session_factory, tenant)
    assert balances(session_factory, tenant) == {"alice": 500, "bob": 200}
    assert referral_payments(session_factory, tenant) == {"alice": 1, "bob": 1}


@pytest.mark.parametrize("path", ["award", "award-batch"])
def test_an_award_naming_the_completion_action_completes_the_referral(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session], path: str
) -> None:
    configure(client, tenant, completion_action="purchase", referee_points=0)
    track(client, tenant, code_of(client, tenant, "alice"), "bob")
    award = {"participant_id": "bob", "amount": 30, "action": "purchase"}
    body = award if path == "award" else {"awards": [award]}
    response = client.post(f"{GAMIFY}/points/{path}", json=body, headers=tenant.participant())
    assert response.status_code == 200, response.json
    settled(session_factory, tenant)
    [completed] = referrals_of(client, tenant, "alice")["referrals"]
    assert (completed["status"], completed["referee_points"]) == ("completed", 0)
    # A side paid nothing gets no ledger line.
    assert balances(session_factory, tenant) == {"alice": 500, "bob": 30}
    assert referral_payments(session_factory, tenant) == {"alice": 1}


def test_an_action_batch_completes_each_referee_once(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    configure(client, tenant, completion_action="purchase")
    for referee in ("bob", "carol"):
        track(client, tenant, code_of(client, tenant, f"friend-of-{referee}"), referee)
    actions = [
        {"participant_id": participant_id, "action": "purchase"}
        for participant_id in ("bob", "bob", "carol", "dave")
    ]
    response = client.post(
        f"{GAMIFY}/actions/batch", json={"actions": actions}, headers=tenant.participant()
    )
    assert response.status_code == 200, response.json
    settled(session_factory, tenant)
    assert referral_payments(session_factory, tenant) == {
        "friend-of-bob": 1,
        "bob": 1,
        "friend-of-carol": 1,
        "carol": 1,
    }


def test_concurrent_completion_triggers_pay_each_side_exactly_once(
    flask_app: Flask,
    tenant: TenantKeys,
    start_worker: Any,
    session_factory: sessionmaker[Session],
    service_env: dict[str, str],
) -> None:
    start_worker(concurrency=4)
    client = flask_app.test_client()
    configure(client, tenant, completion_action="purchase")
    pairs = [(f"referrer-{index}", f"referee-{index}") for index in range(10)]
    referral_ids = {}
    for referrer, referee in pairs:
        status, referral = track(client, tenant, code_of(client, tenant, referrer), referee)
        assert status == 201, referral
        referral_ids[referee] = referral["referral_id"]

    def trigger(job: tuple[str, str]) -> tuple[str, int, Any]:
        how, referee = job
        own = flask_app.test_client()
        if how == "by_id":
            return (how, *complete(own, tenant, referral_id=referral_ids[referee]))
        if how == "by_referee":
            return (how, *complete(own, tenant, referee_id=referee))
        path, body = (
            ("actions", {"participant_id": referee, "action": "purchase"})
            if how == "action"
            else ("points/award", {"participant_id": referee, "amount": 1, "action": "purchase"})
        )
        response = own.post(f"{GAMIFY}/{path}", json=body, headers=tenant.participant())
        return (how, *finished(own, tenant, response, success=201 if how == "action" else 200))

    jobs = [
        (how, referee)
        for _, referee in pairs
        for how in ("by_id", "by_referee", "action", "award", "by_id", "action")
    ]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(trigger, jobs))

    for how, status, body in answers:
        if how == "action":
            assert status == 201, body
        elif how == "award":
            assert status == 200, body
        else:
            assert status == 200 or (status, body["code"]) == (409, "referral_already_completed")
    settled(session_factory, tenant)
    paid = balances(session_factory, tenant)
    for referrer, referee in pairs:
        assert paid[referrer] == 500
        assert paid[referee] == 200 + 1  # and the award's one point
    assert referral_payments(session_factory, tenant) == Counter(
        {participant: 1 for pair in pairs for participant in pair}
    )
    for referrer, _ in pairs:
        assert referrals_of(client, tenant, referrer)["totals"]["completed"] == 1
    # Each referral flipped once: one event each.
    with session_factory() as session:
        events = session.execute(
            select(OutboxEvent.payload["referral_id"].astext).where(
                OutboxEvent.tenant_id == tenant.tenant_id,
                OutboxEvent.type == "referral.completed",
            )
        ).scalars()
        assert Counter(events) == Counter(set(referral_ids.values()))
    assert run_ledger_verify(service_env)[0] == 0


# --- referral_count leaderboards ------------------------------------------------------


def standings(client: FlaskClient, tenant: TenantKeys, board: str) -> list[tuple[int, str, int]]:
    response = client.get(f"{GAMIFY}/leaderboards/{board}", headers=tenant.participant())
    assert response.status_code == 200, response.json
    assert response.json["metric"] == "referral_count"
    return [(e["rank"], e["participant_id"], e["score"]) for e in response.json["entries"]]


def test_a_referral_count_leaderboard_ranks_referrers_by_referrals_completed(
    client: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    configure(client, tenant, completion_action="purchase")
    early = track(client, tenant, code_of(client, tenant, "hank"), "ivan")[1]
    assert (
        complete(client, tenant, referral_id=early["referral_id"])[0] == 200
    )  # before: not counted
    board = create_leaderboard(client, tenant.admin(), metric="referral_count", notify_top=1)
    assert (board["metric"], board["action"]) == ("referral_count", None)
    alice, frank = code_of(client, tenant, "alice"), code_of(client, tenant, "frank")
    for code, referee in ((alice, "bob"), (alice, "carol"), (alice, "dave"), (frank, "gina")):
        assert track(client, tenant, code, referee)[0] == 201
    assert standings(client, tenant, board["leaderboard_id"]) == []  # tracked is not completed

    assert complete(client, tenant, referee_id="gina")[0] == 200  # by hand
    act(client, tenant, "bob", "purchase")  # the completion action
    award = {"participant_id": "carol", "amount": 5, "action": "purchase"}  # an award naming it
    response = client.post(f"{GAMIFY}/points/award", json=award, headers=tenant.participant())
    assert response.status_code == 200, response.json
    settled(session_factory, tenant)

    # dave's referral is still pending; alice's 500-point payments count nothing here.
    assert standings(client, tenant, board["leaderboard_id"]) == [(1, "alice", 2), (2, "frank", 1)]
    rank = client.get(
        f"{GAMIFY}/leaderboards/{board['leaderboard_id']}/participants/alice",
        headers=tenant.participant(),
    ).json
    assert (rank["rank"], rank["score"], rank["below"]["participant_id"]) == (1, 2, "frank")
    with session_factory() as session:
        changes = session.execute(
            select(OutboxEvent.payload).where(
                OutboxEvent.tenant_id == tenant.tenant_id,
                OutboxEvent.type == "leaderboard.rank_changed",
            )
        ).scalars()
        # The top 1: frank alone, then alice's tie (reached later) stays out, then passes him.
        assert Counter((e["participant_id"], e["change"], e["score"]) for e in changes) == {
            ("frank", "entered", 1): 1,
            ("alice", "entered", 2): 1,
            ("frank", "left", 1): 1,
        }


def test_concurrent_completions_for_one_referrer_each_count_once(
    flask_app: Flask, tenant: TenantKeys, start_worker: Any, session_factory: sessionmaker[Session]
) -> None:
    start_worker(concurrency=4)
    client = flask_app.test_client()
    configure(client, tenant, completion_action="purchase")
    board = create_leaderboard(client, tenant.admin(), metric="referral_count", period="daily")
    code = code_of(client, tenant, "alice")
    referees = [f"referee-{index}" for index in range(8)]
    for referee in referees:
        assert track(client, tenant, code, referee)[0] == 201

    def trigger(job: tuple[str, str]) -> None:
        how, referee = job
        own = flask_app.test_client()
        if how == "by_hand":
            complete(own, tenant, referee_id=referee)
        else:
            act(own, tenant, referee, "purchase")

    jobs = [(how, referee) for referee in referees for how in ("by_hand", "action")]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(trigger, jobs))
    settled(session_factory, tenant)
    assert standings(client, tenant, board["leaderboard_id"]) == [(1, "alice", len(referees))]


# --- events ---------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


def test_tracked_and_completed_referrals_are_delivered_as_signed_webhooks(
    client: FlaskClient, tenant: TenantKeys, receiver: WebhookReceiver
) -> None:
    webhook = create_webhook(
        client, tenant.admin(), receiver.url, events=["referral.tracked", "referral.completed"]
    )
    configure(client, tenant, completion_action="purchase")
    tracked = track(client, tenant, code_of(client, tenant, "alice"), "bob")[1]
    act(client, tenant, "bob", "purchase")
    requests = receiver.wait_for_requests(2)
    events = {
        event["type"]: event["data"]
        for event in (verified_event(webhook["secret"], request) for request in requests)
    }
    assert set(events) == {"referral.tracked", "referral.completed"}
    assert (
        events["referral.tracked"].items()
        >= {
            "referral_id": tracked["referral_id"],
            "referrer_id": "alice",
            "referee_id": "bob",
            "status": "pending",
        }.items()
    )
    completed = events["referral.completed"]
    assert (completed["referral_id"], completed["status"]) == (tracked["referral_id"], "completed")
    assert (completed["referrer_points"], completed["referee_points"]) == (500, 200)
    wait_for(
        lambda: referrals_of(client, tenant, "alice")["totals"],
        lambda totals: totals["completed"] == 1,
        10,
        "the referral to show completed",
    )
