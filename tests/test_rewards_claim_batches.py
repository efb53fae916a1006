"""Claims of one reward executed as one set-wise batch (how a worker drains a hot reward):
each claim gets the answer it would get alone, in submission order."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import DomainError
from app.ledger import BalanceChange, apply_balance_change, lock_participant
from app.models import Claim, LedgerEntry, Operation, OutboxEvent, Participant
from app.operations import submit_operation
from app.outbox import events_recorded
from app.rewards.catalog import create_reward
from app.rewards.claims import CLAIM_KIND, claim_payload, execute_claims
from app.rewards.inventory import upload_codes
from app.tenancy import create_tenant


def _tenant(session: Session) -> uuid.UUID:
    return create_tenant(session, "batch").id


def _claims(
    session: Session, tenant_id: uuid.UUID, reward_id: uuid.UUID, requests: list[tuple[str, bool]]
) -> list[Operation]:
    return [
        submit_operation(
            session.connection(),
            tenant_id=tenant_id,
            env="live",
            kind=CLAIM_KIND,
            payload=claim_payload(reward_id, participant, deduct),
            idempotency_key=None,
        ).operation
        for participant, deduct in requests
    ]


def _fund(session: Session, tenant_id: uuid.UUID, participant_id: str, amount: int) -> None:
    participant = lock_participant(session, tenant_id, "live", participant_id)
    apply_balance_change(session, participant, BalanceChange(amount=amount, type="award"))
    session.flush()


def _codes(answers: dict[uuid.UUID, object], operations: list[Operation]) -> list[object]:
    return [
        answer.code if isinstance(answer, DomainError) else answer["code_value"]  # type: ignore[index]
        for answer in (answers[operation.id] for operation in operations)
    ]


def test_a_batch_hands_out_the_oldest_codes_in_order_then_runs_out(db_session: Session) -> None:
    tenant_id = _tenant(db_session)
    reward = create_reward(
        db_session, tenant_id, "live", {"name": "drop", "type": "coupon", "max_claims_per_user": 1}
    )
    upload_codes(db_session, tenant_id, "live", reward.id, ["C1", "C2", "C3"])
    operations = _claims(db_session, tenant_id, reward.id, [(f"p{n}", False) for n in range(5)])

    answers = execute_claims(db_session, operations)

    assert _codes(answers, operations) == [
        "C1",
        "C2",
        "C3",
        "reward_out_of_stock",
        "reward_out_of_stock",
    ]
    assert reward.codes_allocated == 3 and reward.claims_count == 3
    claims = db_session.execute(
        select(func.count()).select_from(Claim).where(Claim.reward_id == reward.id)
    ).scalar_one()
    events = db_session.execute(
        select(func.count()).select_from(OutboxEvent).where(OutboxEvent.tenant_id == tenant_id)
    ).scalar_one()
    assert (claims, events) == (3, 3)
    assert events_recorded(db_session)  # so the worker wakes the webhook dispatcher at once


def test_a_batch_applies_the_per_user_cap_across_its_own_claims(db_session: Session) -> None:
    tenant_id = _tenant(db_session)
    reward = create_reward(
        db_session,
        tenant_id,
        "live",
        {"name": "twice", "type": "voucher", "max_claims_per_user": 2},
    )
    operations = _claims(db_session, tenant_id, reward.id, [("u", False)] * 3 + [("v", False)])

    answers = execute_claims(db_session, operations)

    outcome = [
        "ok" if isinstance(answers[op.id], dict) else answers[op.id].code for op in operations
    ]  # type: ignore[union-attr]
    assert outcome == ["ok", "ok", "max_claims_reached", "ok"]


def test_a_batch_debits_one_participant_until_the_balance_runs_out(db_session: Session) -> None:
    tenant_id = _tenant(db_session)
    _fund(db_session, tenant_id, "spender", 25)
    reward = create_reward(
        db_session,
        tenant_id,
        "live",
        {"name": "paid", "type": "coupon", "points_cost": 10, "max_claims_per_user": 10},
    )
    operations = _claims(
        db_session, tenant_id, reward.id, [("spender", True)] * 3 + [("spender", False)]
    )

    answers = execute_claims(db_session, operations)

    first, second, third, free = (answers[op.id] for op in operations)
    assert (first["points_deducted"], first["new_balance"]) == (10, 15)  # type: ignore[index]
    assert (second["points_deducted"], second["new_balance"]) == (10, 5)  # type: ignore[index]
    assert (
        isinstance(third, DomainError)
        and third.detail == "Insufficient points. Available: 5, requested: 10"
    )
    assert isinstance(free, dict) and free["points_deducted"] is None
    db_session.expire_all()
    participant = db_session.execute(
        select(Participant).where(
            Participant.tenant_id == tenant_id, Participant.external_id == "spender"
        )
    ).scalar_one()
    assert (participant.balance, participant.total_spent) == (5, 20)
    ledger = db_session.execute(
        select(LedgerEntry.amount, LedgerEntry.balance_after)
        .where(LedgerEntry.participant_pk == participant.id, LedgerEntry.type == "claim")
        .order_by(LedgerEntry.balance_after.desc())
    ).all()
    assert [tuple(row) for row in ledger] == [(-10, 15), (-10, 5)]


def test_a_batch_for_a_deactivated_reward_refuses_every_claim(db_session: Session) -> None:
    tenant_id = _tenant(db_session)
    reward = create_reward(
        db_session, tenant_id, "live", {"name": "gone", "type": "coupon", "is_active": False}
    )
    operations = _claims(db_session, tenant_id, reward.id, [("a", False), ("b", False)])

    answers = execute_claims(db_session, operations)

    assert {answer.code for answer in answers.values()} == {"reward_not_found"}  # type: ignore[union-attr]
