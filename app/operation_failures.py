"""Operations whose runs fail unexpectedly: counted, set aside, and retried by the operator.

A run that raises a DomainError is an answer (stored, replayed). A run that raises
anything else (a bug, a payload an older version recorded) rolls back, and the operation
would stay queued and be republished by the sweeper forever, blocking its lane each time.
So the worker counts each such run on the operation, in a transaction of its own
(`record_failed_run`), and after `max_attempts` of them marks the operation failed with
OPERATION_FAILED. The operator lists those (`failed_operations`) and, once the cause is
fixed, requeues one (`requeue_failed_operation`).

The count and the last exception live under the error's FAILURE_DIAGNOSIS key, so no
migration was needed; clients never see that key (app/operations.py::client_error).
Operations set aside this way are kept past idempotency retention until retried
(app/operation_sweeps.py), so none is lost from the operator's sight.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.errors import Conflict, NotFound
from app.models import Operation, OperationStatus
from app.operations import FAILURE_DIAGNOSIS, UNFINISHED

OPERATION_FAILED = "OPERATION_FAILED"
# An exception's text can be long (SQL, parameters); the operator gets its start and the
# worker's log has the whole traceback.
EXCEPTION_TEXT_LIMIT = 500


@dataclass(frozen=True)
class FailedRun:
    operation: Operation
    failures: int  # unexpected failures of this operation so far, this one included
    set_aside: bool  # True: marked failed now; False: left to be run again


def record_failed_run(
    session: Session, operation_id: uuid.UUID, exc: BaseException, max_attempts: int
) -> FailedRun | None:
    """Count a run of `operation_id` that raised `exc` (its transaction rolled back); on
    the `max_attempts`-th, mark the operation failed. None if it has finished meanwhile.

    An operation left to run again is stamped as just published: the sweeper republishes
    it after OPERATION_STALL_SECONDS, not at its next pass.
    """
    operation = session.execute(
        select(Operation)
        .where(Operation.id == operation_id, Operation.status.in_(UNFINISHED))
        .with_for_update()
    ).scalar_one_or_none()
    if operation is None:
        return None
    failures = _failures(operation.error) + 1
    diagnosis = {"count": failures, "last": _exception_text(exc), "at": utcnow().isoformat()}
    operation.attempts += 1
    if failures < max_attempts:
        operation.error = {FAILURE_DIAGNOSIS: diagnosis}
        operation.enqueued_at = utcnow()
        return FailedRun(operation, failures, set_aside=False)
    operation.status = OperationStatus.FAILED.value
    operation.http_status = 500
    operation.error = {
        "code": OPERATION_FAILED,
        "type": OPERATION_FAILED,
        "detail": (
            f"The operation failed unexpectedly {failures} times and was not applied; "
            "the operator has been told and can run it again"
        ),
        "status": 500,
        FAILURE_DIAGNOSIS: diagnosis,
    }
    operation.finished_at = utcnow()
    return FailedRun(operation, failures, set_aside=True)


def set_aside_condition() -> ColumnElement[bool]:
    """SQL: the operation was marked failed by `record_failed_run` (not refused by a rule)."""
    return (Operation.status == OperationStatus.FAILED.value) & (
        Operation.error["code"].astext == OPERATION_FAILED
    )


def failed_operations(session: Session, limit: int = 100) -> list[Operation]:
    """Operations set aside after failing unexpectedly, oldest first.

    No index serves this: it reads every failed operation, which is fine for an
    operator's command (finished operations are purged after their retention)."""
    return list(
        session.execute(
            select(Operation)
            .where(set_aside_condition())
            .order_by(Operation.created_at)
            .limit(limit)
        ).scalars()
    )


def requeue_failed_operation(session: Session, operation_id: uuid.UUID) -> Operation:
    """Queue an operation set aside by `record_failed_run` again, its failures forgotten;
    the caller publishes it after the commit (or the sweeper does)."""
    operation = session.execute(
        select(Operation).where(Operation.id == operation_id).with_for_update()
    ).scalar_one_or_none()
    if operation is None:
        raise NotFound("operation_not_found", f"No operation {operation_id}")
    if (
        operation.status != OperationStatus.FAILED.value
        or (operation.error or {}).get("code") != OPERATION_FAILED
    ):
        # A rule's refusal is the write's answer, replayed to every retry of its key:
        # running it again could answer differently.
        raise Conflict(
            "operation_not_retryable",
            f"Operation {operation_id} is {operation.status}, not set aside after failures",
        )
    operation.status = OperationStatus.QUEUED.value
    operation.http_status = None
    operation.error = None
    operation.finished_at = None
    operation.enqueued_at = utcnow()
    return operation


def failure_summary(operation: Operation) -> dict[str, Any]:
    """What the operator's listing shows of one set-aside operation."""
    return {
        "operation_id": str(operation.id),
        "tenant_id": str(operation.tenant_id),
        "env": operation.env,
        "kind": operation.kind,
        "attempts": operation.attempts,
        "error": operation.error,
        "created_at": operation.created_at.isoformat(),
    }


def _failures(error: dict[str, Any] | None) -> int:
    diagnosis = (error or {}).get(FAILURE_DIAGNOSIS) or {}
    return int(diagnosis.get("count", 0))


def _exception_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:EXCEPTION_TEXT_LIMIT]
