"""Claims of one reward executed as one set-wise batch (how a worker drains a hot reward):
each claim gets the answer it would get alone, in submission order."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.errors import DomainError
from app.models import Claim, LedgerEntry, Operation, OutboxEvent, Participant
from app.operation_runs import drain_partition
from app.operations import operation_answer, submit_operation
from app.outbox import POINTS_AWARDED, REWARD_CLAIMED, events_recorded, events_to_dispatch
from app.points.awards import award_points
from app.points.items import AwardItem
from app.rewards.catalog import create_reward
from app.rewards.claim_batches import execute_claims
from app.rewards.claims import CLAIM_KIND, claim_payload
from app.rewards.inventory import upload_codes
from app.tenancy import create_tenant
from tests.builders import add_webhook_endpoint, participants_with_events_to_dispatch


def _tenant(session: Session) -> uuid.UUID:
    return create_tenant(session, "batch").id


def _claims(
    session: Session, tenant_id: uuid.UUID, reward_id: uuid.UUID, requests: list[tuple[str, bool]]
) -> list[Operation]:
    operations = [
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
    # Accepted one after the other, as separate requests are: one transaction here stamps
    # them alike, and a drain takes ties in no defined order.
    for position, operation in enumerate(operations):
        session.execute(
            update(Operation)
            .where(Operation.id == operation.id)
            .values(created_at=Operation.created_at + timedelta(milliseconds=position))
        )
    return operations


def _fund(session: Session, tenant_id: uuid.UUID, participant_id: str, amount: int) -> None:
    award_points(session, tenant_id, "live", [AwardItem(participant_id, amount)], operation_id=None)


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


def _stored(session: Session, operation_id: uuid.UUID) -> Operation:
    session.expire_all()
    return session.execute(select(Operation).where(Operation.id == operation_id)).scalar_one()


def test_a_drained_batch_stores_each_answer_exactly_as_it_was_given(db_session: Session) -> None:
    tenant_id = _tenant(db_session)
    _fund(db_session, tenant_id, "rich", 100)
    reward = create_reward(
        db_session,
        tenant_id,
        "live",
        {"name": "drop", "type": "coupon", "points_cost": 30, "max_claims_per_user": 5},
    )
    upload_codes(db_session, tenant_id, "live", reward.id, ["A", "B"])
    operations = _claims(db_session, tenant_id, reward.id, [("rich", True)] * 3)

    run = drain_partition(db_session, str(operations[0].partition_key), limit=50)

    assert [operation.id for operation in run.finished] == [op.id for op in operations]
    for given in run.finished:
        stored = _stored(db_session, given.id)
        assert operation_answer(stored) == operation_answer(given)
        assert (stored.attempts, stored.finished_at) == (1, given.finished_at)
    answers = [operation_answer(operation) for operation in run.finished]
    assert [status for status, _ in answers] == [201, 201, 400]
    assert answers[2][1]["code"] == "reward_out_of_stock"
    assert drain_partition(db_session, str(operations[0].partition_key), limit=50).finished == []


def test_a_batch_writes_ledger_lines_in_claim_order(db_session: Session) -> None:
    tenant_id = _tenant(db_session)
    _fund(db_session, tenant_id, "spender", 30)
    reward = create_reward(
        db_session,
        tenant_id,
        "live",
        {"name": "paid", "type": "voucher", "points_cost": 10, "max_claims_per_user": 5},
    )
    operations = _claims(db_session, tenant_id, reward.id, [("spender", True)] * 3)

    execute_claims(db_session, operations)

    lines = db_session.execute(
        select(LedgerEntry.balance_after, LedgerEntry.operation_id)
        .where(LedgerEntry.type == "claim", LedgerEntry.tenant_id == tenant_id)
        .order_by(LedgerEntry.seq)
    ).all()
    assert [tuple(line) for line in lines] == [
        (20, operations[0].id),
        (10, operations[1].id),
        (0, operations[2].id),
    ]


def test_a_paid_claim_by_an_unknown_participant_is_refused_and_creates_nobody(
    db_session: Session,
) -> None:
    tenant_id = _tenant(db_session)
    reward = create_reward(
        db_session, tenant_id, "live", {"name": "paid", "type": "voucher", "points_cost": 10}
    )
    operations = _claims(db_session, tenant_id, reward.id, [("stranger", True)])

    answers = execute_claims(db_session, operations)

    assert answers[operations[0].id].code == "insufficient_points"  # type: ignore[union-attr]
    participants = db_session.execute(
        select(func.count()).select_from(Participant).where(Participant.tenant_id == tenant_id)
    ).scalar_one()
    assert participants == 0


def test_a_sold_out_reward_still_answers_the_per_user_cap_first(db_session: Session) -> None:
    tenant_id = _tenant(db_session)
    reward = create_reward(
        db_session, tenant_id, "live", {"name": "drop", "type": "coupon", "max_claims_per_user": 1}
    )
    upload_codes(db_session, tenant_id, "live", reward.id, ["ONLY"])
    execute_claims(db_session, _claims(db_session, tenant_id, reward.id, [("first", False)]))
    operations = _claims(db_session, tenant_id, reward.id, [("first", False), ("late", True)])

    answers = execute_claims(db_session, operations)

    assert [answers[op.id].code for op in operations] == [  # type: ignore[union-attr]
        "max_claims_reached",
        "reward_out_of_stock",
    ]


def test_claim_events_wait_for_the_dispatcher_only_when_an_endpoint_subscribes(
    db_session: Session,
) -> None:
    tenant_id = _tenant(db_session)
    reward = create_reward(db_session, tenant_id, "live", {"name": "free", "type": "voucher"})

    def wakes_after_a_claim(participant_id: str) -> bool:
        db_session.info.clear()
        operations = _claims(db_session, tenant_id, reward.id, [(participant_id, False)])
        assert isinstance(execute_claims(db_session, operations)[operations[0].id], dict)
        assert events_recorded(db_session)
        return events_to_dispatch(db_session)

    assert not wakes_after_a_claim("a")  # no endpoint: stored already dispatched
    add_webhook_endpoint(db_session, tenant_id, "test", [REWARD_CLAIMED])
    add_webhook_endpoint(db_session, tenant_id, "live", [POINTS_AWARDED])
    assert not wakes_after_a_claim("b")  # another environment, another type
    add_webhook_endpoint(
        db_session, tenant_id, "live", [POINTS_AWARDED, REWARD_CLAIMED], enabled=False
    )
    assert wakes_after_a_claim("c")  # a disabled endpoint still gets its (failed) deliveries
    assert participants_with_events_to_dispatch(db_session, tenant_id) == {"c"}


def test_one_batch_takes_claims_of_several_rewards_each_with_its_own_codes_and_cost(
    db_session: Session,
) -> None:
    tenant_id = _tenant(db_session)
    _fund(db_session, tenant_id, "shopper", 50)
    coupon = create_reward(
        db_session, tenant_id, "live", {"name": "c", "type": "coupon", "points_cost": 20}
    )
    upload_codes(db_session, tenant_id, "live", coupon.id, ["CPN-1"])
    voucher = create_reward(
        db_session, tenant_id, "live", {"name": "v", "type": "voucher", "points_cost": 40}
    )
    upload_codes(db_session, tenant_id, "live", voucher.id, ["VCH-1"])
    operations = [
        *_claims(db_session, tenant_id, coupon.id, [("shopper", True)]),
        *_claims(db_session, tenant_id, voucher.id, [("shopper", True), ("other", False)]),
    ]

    answers = execute_claims(db_session, operations)

    paid, refused, free = (answers[op.id] for op in operations)
    assert (paid["code_value"], paid["new_balance"]) == ("CPN-1", 30)  # type: ignore[index]
    assert isinstance(refused, DomainError) and refused.code == "insufficient_points"
    assert free["code_value"] == "VCH-1"  # type: ignore[index]
    rows = db_session.execute(
        select(Claim.reward_id, Claim.participant_id, Claim.code_value)
        .where(Claim.tenant_id == tenant_id)
        .order_by(Claim.code_value)
    ).all()
    assert [tuple(row) for row in rows] == [
        (coupon.id, "shopper", "CPN-1"),
        (voucher.id, "other", "VCH-1"),
    ]
    db_session.expire_all()
    balance = db_session.execute(
        select(Participant.balance).where(
            Participant.tenant_id == tenant_id, Participant.external_id == "shopper"
        )
    ).scalar_one()
    assert balance == 30
