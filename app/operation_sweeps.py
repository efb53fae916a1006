"""The sweeper's work on operations: republish the stalled, purge expired keys."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.models import Operation
from app.operation_failures import set_aside_condition
from app.operation_kinds import kinds_retained_forever
from app.operations import FINISHED, UNFINISHED


def claim_stalled_operations(
    session: Session, stalled_after: timedelta, limit: int = 1000
) -> list[Operation]:
    """Unfinished operations last published longer ago than `stalled_after`.

    Their publish time is reset, so concurrent sweepers do not republish the same ones;
    rows a worker holds locked are skipped, they are being run.
    """
    now = utcnow()
    candidates = (
        select(Operation.id)
        .where(Operation.status.in_(UNFINISHED), Operation.enqueued_at < now - stalled_after)
        .order_by(Operation.enqueued_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(
        session.execute(
            update(Operation)
            .where(Operation.id.in_(candidates))
            .values(enqueued_at=now)
            .returning(Operation)
        ).scalars()
    )


def purge_expired_idempotency_records(
    session: Session, retention: timedelta, limit: int = 5000
) -> int:
    """Delete up to `limit` finished operations past retention (oldest first), except
    kinds whose key is kept forever and operations set aside after failing unexpectedly
    (kept for the operator to retry); how many. Rows another sweeper holds are skipped."""
    forever = kinds_retained_forever()
    expired = (
        select(Operation.id)
        .where(
            Operation.status.in_(FINISHED),
            Operation.finished_at < utcnow() - retention,
            Operation.kind.not_in(forever),
            ~set_aside_condition(),
        )
        .order_by(Operation.finished_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = session.execute(delete(Operation).where(Operation.id.in_(expired)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
