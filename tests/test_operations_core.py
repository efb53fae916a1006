"""The operations core: idempotent submission, run-once execution, the sweeper's queries.

Everything runs in `db_session` and is rolled back. The database may hold other tests'
committed operations, so assertions name the rows each test made.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import set_clock
from app.errors import DomainError
from app.models import Operation, OperationStatus, Tenant
from app.operation_kinds import OperationKind
from app.operation_runs import execute_operations
from app.operation_sweeps import claim_stalled_operations, purge_expired_idempotency_records
from app.operations import Submission, operation_answer, submit_operation
from app.tenancy import create_tenant
from tests.builders import registered_kinds

handler_calls: Counter[uuid.UUID] = Counter()


def _echo(session: Session, operation: Operation) -> dict[str, Any]:
    handler_calls[operation.id] += 1
    return {"echo": operation.payload}


def _write_tenant_then_refuse(session: Session, operation: Operation) -> dict[str, Any]:
    create_tenant(session, operation.payload["tenant_name"])  # flushed: the INSERT has run
    raise DomainError("NOT_TODAY", "Refused after writing", 409)


def _write_tenant(session: Session, operation: Operation) -> dict[str, Any]:
    create_tenant(session, operation.payload["tenant_name"])
    return {"created": operation.payload["tenant_name"]}


ECHO = OperationKind(name="test_core.echo", handler=_echo, success_status=201)
REFUSE = OperationKind(name="test_core.refuse", handler=_write_tenant_then_refuse)
WRITE = OperationKind(name="test_core.write", handler=_write_tenant)
KEPT = OperationKind(name="test_core.kept", handler=_echo, retain_forever=True)

TENANT_ID = uuid.uuid4()


@pytest.fixture(autouse=True, scope="module")
def operation_kinds() -> Iterator[None]:
    """This module's kinds exist while its tests run, and only then."""
    with registered_kinds(ECHO, REFUSE, WRITE, KEPT):
        yield


def submit(
    session: Session,
    *,
    kind: OperationKind = ECHO,
    payload: dict[str, Any] | None = None,
    key: str | None = None,
    tenant_id: uuid.UUID | None = None,
    env: str = "live",
) -> Submission:
    """Submit, then load the row into `session` so a test can change and refresh it."""
    submission = submit_operation(
        session.connection(),
        tenant_id=tenant_id or TENANT_ID,
        env=env,
        kind=kind.name,
        payload={"n": 1} if payload is None else payload,
        idempotency_key=key,
    )
    persistent = session.get_one(Operation, submission.operation.id)
    return Submission(persistent, submission.created)


@pytest.fixture
def frozen_now() -> Iterator[datetime]:
    now = datetime.now(UTC)
    set_clock(lambda: now)
    yield now
    set_clock(None)


def _tenants_named(session: Session, name: str) -> int:
    return session.scalar(select(func.count()).select_from(Tenant).where(Tenant.name == name)) or 0


# Submission and idempotency


def test_same_idempotency_key_and_payload_returns_the_original_operation(
    db_session: Session,
) -> None:
    first = submit(db_session, key="order-1", payload={"points": 10})
    replay = submit(db_session, key="order-1", payload={"points": 10})
    assert first.created is True
    assert replay.created is False
    assert replay.operation.id == first.operation.id


def test_same_idempotency_key_with_a_different_payload_is_rejected_with_422(
    db_session: Session,
) -> None:
    submit(db_session, key="order-2", payload={"points": 10})
    with pytest.raises(DomainError) as raised:
        submit(db_session, key="order-2", payload={"points": 11})
    assert raised.value.code == "IDEMPOTENCY_KEY_REUSED"
    assert raised.value.status == 422


def test_same_idempotency_key_for_another_kind_is_rejected_with_422(db_session: Session) -> None:
    submit(db_session, key="order-3", kind=ECHO)
    with pytest.raises(DomainError) as raised:
        submit(db_session, key="order-3", kind=KEPT)
    assert raised.value.code == "IDEMPOTENCY_KEY_REUSED"


def test_without_idempotency_key_every_submission_is_a_new_operation(db_session: Session) -> None:
    first = submit(db_session, key=None)
    second = submit(db_session, key=None)
    assert first.created and second.created
    assert first.operation.id != second.operation.id


def test_idempotency_keys_are_scoped_to_tenant_and_env(db_session: Session) -> None:
    live = submit(db_session, key="shared-key")
    test_env = submit(db_session, key="shared-key", env="test")
    other_tenant = submit(db_session, key="shared-key", tenant_id=uuid.uuid4())
    assert test_env.created and other_tenant.created
    assert len({live.operation.id, test_env.operation.id, other_tenant.operation.id}) == 3


def test_submitted_operation_is_queued_with_no_answer_yet(db_session: Session) -> None:
    operation = submit(db_session).operation
    assert operation.status == OperationStatus.QUEUED
    assert operation.attempts == 0
    assert operation.finished_at is None
    with pytest.raises(ValueError, match="has not finished"):
        operation_answer(operation)


# Execution


def test_execute_operations_runs_once_and_a_second_run_is_a_no_op(db_session: Session) -> None:
    operation = submit(db_session, payload={"points": 5}).operation

    finished = execute_operations(db_session, [operation.id]).finished
    again = execute_operations(db_session, [operation.id]).finished

    assert [op.id for op in finished] == [operation.id]
    assert again == []
    assert handler_calls[operation.id] == 1
    db_session.refresh(operation)
    assert operation.status == OperationStatus.SUCCEEDED
    assert operation.attempts == 1
    assert operation.finished_at is not None
    assert operation_answer(operation) == (201, {"echo": {"points": 5}})


def test_handler_domain_error_rolls_back_its_writes_and_stores_the_error_answer(
    db_session: Session,
) -> None:
    name = f"refused-{uuid.uuid4()}"
    operation = submit(db_session, kind=REFUSE, payload={"tenant_name": name}).operation

    finished = execute_operations(db_session, [operation.id]).finished

    assert [op.id for op in finished] == [operation.id]
    assert _tenants_named(db_session, name) == 0
    db_session.refresh(operation)
    assert operation.status == OperationStatus.FAILED
    assert operation.result is None
    expected = {"code": "NOT_TODAY", "type": "NOT_TODAY", "detail": "Refused after writing"}
    assert operation_answer(operation) == (409, {**expected, "status": 409})


def test_one_failing_operation_does_not_undo_the_others_in_the_same_run(
    db_session: Session,
) -> None:
    kept_name, refused_name = f"kept-{uuid.uuid4()}", f"refused-{uuid.uuid4()}"
    written = submit(db_session, kind=WRITE, payload={"tenant_name": kept_name}).operation
    refused = submit(db_session, kind=REFUSE, payload={"tenant_name": refused_name}).operation

    execute_operations(db_session, [written.id, refused.id])

    assert _tenants_named(db_session, kept_name) == 1
    assert _tenants_named(db_session, refused_name) == 0
    assert written.status == OperationStatus.SUCCEEDED
    assert refused.status == OperationStatus.FAILED


# The sweeper's queries


def test_claim_stalled_returns_old_unfinished_operations_and_resets_their_publish_time(
    db_session: Session, frozen_now: datetime
) -> None:
    stalled = submit(db_session).operation
    fresh = submit(db_session).operation
    old_but_finished = submit(db_session).operation
    execute_operations(db_session, [old_but_finished.id])
    stalled.enqueued_at = frozen_now - timedelta(minutes=10)
    old_but_finished.enqueued_at = frozen_now - timedelta(minutes=10)
    fresh.enqueued_at = frozen_now - timedelta(seconds=5)
    db_session.flush()

    claimed = {op.id for op in claim_stalled_operations(db_session, timedelta(minutes=1))}

    assert stalled.id in claimed
    assert fresh.id not in claimed
    assert old_but_finished.id not in claimed
    db_session.refresh(stalled)
    assert stalled.enqueued_at == frozen_now
    assert stalled.status == OperationStatus.QUEUED
    # Reset: a second sweep right away does not republish it again.
    assert stalled.id not in {
        op.id for op in claim_stalled_operations(db_session, timedelta(minutes=1))
    }


def test_purge_deletes_finished_operations_past_retention_except_retain_forever_kinds(
    db_session: Session, frozen_now: datetime
) -> None:
    expired = submit(db_session, kind=ECHO).operation
    kept_forever = submit(db_session, kind=KEPT).operation
    recent = submit(db_session, kind=ECHO).operation
    execute_operations(db_session, [expired.id, kept_forever.id, recent.id])
    unfinished = submit(db_session, kind=ECHO).operation
    expired.finished_at = frozen_now - timedelta(hours=25)
    kept_forever.finished_at = frozen_now - timedelta(hours=25)
    recent.finished_at = frozen_now - timedelta(hours=23)
    unfinished.created_at = frozen_now - timedelta(hours=48)
    db_session.flush()
    ids = [expired.id, kept_forever.id, recent.id, unfinished.id]

    purged = purge_expired_idempotency_records(db_session, timedelta(hours=24))

    db_session.expire_all()
    remaining = set(db_session.scalars(select(Operation.id).where(Operation.id.in_(ids))))
    assert remaining == {kept_forever.id, recent.id, unfinished.id}
    assert purged >= 1


# What an earlier version recorded for PINNED_PAYLOAD under ECHO: stored fingerprints
# decide replays across upgrades, so the way a request is fingerprinted must not drift.
PINNED_PAYLOAD = {"b": [{"z": 'é\n"x', "y": None}], "a": 1.5, "t": True}
PINNED_FINGERPRINT = "b28db16c37700181287004256f066203c9cdc5e4ddc60d827e351cffbb69df3f"


def test_an_operation_recorded_by_an_earlier_version_still_answers_its_retries(
    db_session: Session,
) -> None:
    recorded = submit(db_session, key="before-upgrade", payload=PINNED_PAYLOAD).operation
    recorded.fingerprint = PINNED_FINGERPRINT  # as the earlier version stored it
    db_session.flush()

    # The retry spells the same request with its keys in another order.
    retry = submit(
        db_session,
        key="before-upgrade",
        payload={"t": True, "a": 1.5, "b": [{"y": None, "z": 'é\n"x'}]},
    )

    assert retry.created is False
    assert retry.operation.id == recorded.id
