"""Award-batch requests of one tenant drained together: one set-wise pass, and every
request still gets its own answer and ledger lines tagged with its own operation."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import LedgerEntry, Operation, Participant
from app.operation_runs import drain_partition
from app.operations import submit_operation
from app.outbox import (
    POINTS_AWARDED,
    REWARD_CLAIMED,
    TIER_UPGRADED,
    events_recorded,
    events_to_dispatch,
)
from app.points.awards import award_points
from app.points.items import AwardItem, batch_entries
from app.points.kinds import AWARD_BATCH_KIND
from app.tenancy import create_tenant
from tests.builders import add_webhook_endpoint, participants_with_events_to_dispatch


def test_three_batch_requests_drained_at_once_answer_separately(db_session: Session) -> None:
    tenant_id = create_tenant(db_session, "batches").id
    requests = [
        [{"participant_id": "ann", "amount": 10}, {"participant_id": "bob", "amount": 5}],
        [{"participant_id": "ann", "amount": 1}, {"participant_id": "", "amount": 3}],
        [{"participant_id": "cy", "amount": 0}, {"participant_id": "bob", "amount": 7}],
    ]
    operations = [
        submit_operation(
            db_session.connection(),
            tenant_id=tenant_id,
            env="live",
            kind=AWARD_BATCH_KIND,
            payload={"awards": batch_entries(items)},
            idempotency_key=None,
        ).operation
        for items in requests
    ]
    assert len({operation.partition_key for operation in operations}) == 1
    # Accepted one after the other, as separate requests are: one transaction here stamps
    # them alike, and a drain takes ties in no defined order.
    for position, operation in enumerate(operations):
        db_session.execute(
            update(Operation)
            .where(Operation.id == operation.id)
            .values(created_at=Operation.created_at + timedelta(milliseconds=position))
        )

    run = drain_partition(db_session, operations[0].partition_key, limit=50)

    assert {operation.id for operation in run.finished} == {op.id for op in operations}
    assert events_recorded(db_session)  # the COPY-written events wake the dispatcher too
    results = {operation.id: operation.result for operation in run.finished}
    first, second, third = (results[operation.id] for operation in operations)
    assert (first["processed"], first["failed"]) == (2, 0)
    assert [r["new_balance"] for r in first["results"]] == [10, 5]
    assert (second["processed"], second["failed"]) == (1, 1)
    assert second["results"][0]["new_balance"] == 11  # after the first request's 10
    assert second["results"][1]["error"]["code"] == "invalid_award"
    assert (third["processed"], third["failed"]) == (1, 1)
    assert third["results"][1]["new_balance"] == 12
    lines = db_session.execute(
        select(Participant.external_id, LedgerEntry.amount, LedgerEntry.operation_id)
        .join(Participant, Participant.id == LedgerEntry.participant_pk)
        .where(Participant.tenant_id == tenant_id)
    ).all()
    assert sorted((p, a, o) for p, a, o in lines) == sorted(
        [
            ("ann", 10, operations[0].id),
            ("bob", 5, operations[0].id),
            ("ann", 1, operations[1].id),
            ("bob", 7, operations[2].id),
        ]
    )


def test_award_events_wait_for_the_dispatcher_only_when_an_endpoint_subscribes(
    db_session: Session,
) -> None:
    tenant_id = create_tenant(db_session, "award-wakes").id

    def wakes_after_an_award(participant_id: str) -> bool:
        db_session.info.clear()
        award_points(
            db_session,
            tenant_id,
            "live",
            [AwardItem(participant_id=participant_id, amount=5)],
            operation_id=None,
        )
        assert events_recorded(db_session)  # recorded either way, in the transaction
        return events_to_dispatch(db_session)

    assert not wakes_after_an_award("a")  # no endpoint: stored already dispatched
    add_webhook_endpoint(db_session, tenant_id, "test", [POINTS_AWARDED])
    add_webhook_endpoint(db_session, tenant_id, "live", [REWARD_CLAIMED])
    assert not wakes_after_an_award("b")  # another environment, another type
    add_webhook_endpoint(db_session, tenant_id, "live", [TIER_UPGRADED])
    assert wakes_after_an_award("c")  # an award can upgrade a tier
    assert participants_with_events_to_dispatch(db_session, tenant_id) == {"c"}
