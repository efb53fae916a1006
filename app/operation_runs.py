"""Running accepted operations in a worker's transaction, and storing their answers.

A worker calls `execute_operations` (given ids) or `drain_partition` (the queued
operations of one partition, or lane), which run the kinds' handlers in the caller's
transaction and store each exact response with its operation.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import DomainError
from app.infra.pgcopy import plain_array_literal
from app.logs import request_id_set
from app.models import Operation, OperationStatus
from app.operation_kinds import OperationKind, StepTaken, drained_by, get_kind, partition_kind
from app.operations import UNFINISHED

_OPERATIONS = cast(Table, Operation.__table__)


@dataclass(frozen=True)
class OperationsRun:
    finished: list[Operation]
    # Long operations that took a step and must be published again after the commit.
    continuing: list[Operation]


def execute_operations(session: Session, operation_ids: Sequence[uuid.UUID]) -> OperationsRun:
    """Execute the unfinished operations among `operation_ids` in the caller's transaction.

    Rows locked by another worker are skipped (it is running them); finished ones are left
    alone, so a redelivered task is harmless.
    """
    if not operation_ids:
        return OperationsRun([], [])
    locked = session.execute(
        select(Operation)
        .where(Operation.id.in_(operation_ids), Operation.status.in_(UNFINISHED))
        .with_for_update(skip_locked=True)
    ).scalars()
    by_id = {op.id: op for op in locked}
    return _execute_locked(session, [by_id[i] for i in operation_ids if i in by_id])


def drain_partition(session: Session, key: str, limit: int) -> OperationsRun:
    """Execute up to `limit` queued operations of one partition, oldest first, at once.

    SKIP LOCKED: concurrent drains of one partition take disjoint operations (the kind's
    own locks, e.g. the reward row, then serialize their writes). A batch kind's drain
    never goes through the ORM: its operations are read as detached snapshots and its
    answers written with one statement per batch (the unit of work's UPDATE per operation,
    twice over with the attempts counter, cost more than the claims themselves).
    """
    kind = partition_kind(key)
    if kind.batch_handler is None:
        queued = list(
            session.execute(
                select(Operation)
                .where(
                    Operation.partition_key == key,
                    Operation.status == OperationStatus.QUEUED.value,
                )
                .order_by(Operation.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        return _execute_locked(session, queued)
    rows = session.connection().execute(_LOCK_QUEUED, {"partition_key": key, "limit": limit})
    snapshots = [Operation(**row._mapping) for row in rows]
    for operation in snapshots:
        operation.attempts += 1  # written with its answer
    run = OperationsRun([], [])
    for chunk in _run_batches(session, kind, snapshots):
        _store_answers(session, chunk)
        run.finished.extend(chunk)
    return run


def lock_oldest_queued(session: Session, key: str) -> uuid.UUID | None:
    """The oldest queued operation of a partition that no other worker holds, locked: what
    a drain runs alone when a batch of the partition failed (workers/tasks.py)."""
    return session.execute(
        select(Operation.id)
        .where(Operation.partition_key == key, Operation.status == OperationStatus.QUEUED.value)
        .order_by(Operation.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).scalar_one_or_none()


# What a batch handler reads of its operations (and what the drain writes back below);
# created_at is when it was accepted (an award's relative lot terms count from it).
_BATCH_COLUMNS = (
    "id", "tenant_id", "env", "kind", "idempotency_key", "payload", "partition_key", "status",
    "attempts", "created_at",
)  # fmt: skip
_LOCK_QUEUED = (
    select(*(_OPERATIONS.c[name] for name in _BATCH_COLUMNS))
    .where(
        _OPERATIONS.c.partition_key == bindparam("partition_key"),
        _OPERATIONS.c.status == OperationStatus.QUEUED.value,
    )
    .order_by(_OPERATIONS.c.created_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
# One JSON document carries every answer of the batch: one parameter, one statement,
# whatever the batch size. The rows are locked by this transaction. The ids are given
# again as an array so that the rows are found by primary key: PostgreSQL guesses 100 rows
# for the JSON and, the table being small, may join them by scanning every operation.
_STORE_ANSWERS = """
    UPDATE operations AS o
    SET status = a.status, http_status = a.http_status, result = a.result, error = a.error,
        attempts = a.attempts, finished_at = a.finished_at
    FROM jsonb_to_recordset(CAST(%(answers)s AS jsonb)) AS a(
        id uuid, status text, http_status integer, result jsonb, error jsonb,
        attempts integer, finished_at timestamptz
    )
    WHERE o.id = ANY(CAST(%(ids)s AS uuid[])) AND o.id = a.id
"""


def _store_answers(session: Session, operations: list[Operation]) -> None:
    """Write finished snapshots' answers (as _finish set them) to their rows."""
    answers = [
        {
            "id": str(operation.id),
            "status": operation.status,
            "http_status": operation.http_status,
            "result": operation.result,
            "error": operation.error,
            "attempts": operation.attempts,
            "finished_at": cast(datetime, operation.finished_at).isoformat(),
        }
        for operation in operations
    ]
    ids = plain_array_literal(str(operation.id) for operation in operations)
    session.connection().exec_driver_sql(
        _STORE_ANSWERS, {"answers": json.dumps(answers), "ids": ids}
    )


def _finish(
    operation: Operation, kind: OperationKind, answer: dict[str, Any] | DomainError
) -> None:
    if isinstance(answer, DomainError):
        operation.status = OperationStatus.FAILED.value
        operation.http_status = answer.status
        operation.error = answer.as_body()
    else:
        operation.status = OperationStatus.SUCCEEDED.value
        operation.http_status = kind.success_status
        operation.result = answer
        operation.error = None  # the diagnosis of earlier failed runs, if any
    operation.finished_at = utcnow()


def _execute_locked(session: Session, operations: list[Operation]) -> OperationsRun:
    """Run operations this transaction has locked: batch kinds together per partition
    (in order), the others one by one, each in its own savepoint."""
    run = OperationsRun([], [])
    batches: dict[tuple[str, str | None], list[Operation]] = {}
    for operation in operations:
        operation.attempts += 1
        kind = get_kind(operation.kind)
        if kind.batch_handler is not None:
            batch_key = (kind.partition_prefix, operation.partition_key)
            batches.setdefault(batch_key, []).append(operation)
            continue
        assert kind.handler is not None
        answer: dict[str, Any] | StepTaken | DomainError
        try:
            with request_id_set(operation.request_id), session.begin_nested():
                answer = kind.handler(session, operation)
        except DomainError as error:
            answer = error
        if isinstance(answer, StepTaken):
            operation.status = OperationStatus.PROCESSING.value
            operation.enqueued_at = utcnow()
            run.continuing.append(operation)
            continue
        _finish(operation, kind, answer)
        run.finished.append(operation)
    for (prefix, _), batch in batches.items():
        for chunk in _run_batches(session, drained_by(prefix), batch):
            run.finished.extend(chunk)
    session.flush()
    return run


def _run_batches(
    session: Session, kind: OperationKind, operations: list[Operation]
) -> Iterator[list[Operation]]:
    """Run a batch kind's operations, `max_batch` at a time; yields each finished chunk."""
    assert kind.batch_handler is not None
    for start in range(0, len(operations), kind.max_batch):
        chunk = operations[start : start + kind.max_batch]
        answers = kind.batch_handler(session, chunk)
        for operation in chunk:
            _finish(operation, get_kind(operation.kind), answers[operation.id])
        yield chunk
