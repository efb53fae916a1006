"""Keeping the tables flat for months: what has served its purpose is purged, in small
batches, each its own short transaction, oldest first, skipping rows anyone holds, so a
purge never blocks a writer and never holds a lock for long.

- finished operations, past IDEMPOTENCY_RETENTION_HOURS (their keys then stop replaying;
  claims and operations set aside for the operator are kept);
- finished webhook deliveries (succeeded or failed), past DELIVERY_RETENTION_DAYS;
- dispatched outbox events past OUTBOX_RETENTION_DAYS, once none of their deliveries is
  left: an event is kept as long as a delivery of it is (its retry needs the payload);
- audit entries past AUDIT_RETENTION_DAYS;
- admin console sessions once expired (signed out or not: an expired one opens nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import TextClause

from app.clock import utcnow
from app.config import Settings
from app.operation_sweeps import purge_expired_idempotency_records

PURGE_BATCH_ROWS = 5000
# One sweep's share of purging; what is left waits for the next sweep.
PURGE_BUDGET_SECONDS = 2.0

_PURGE_DELIVERIES = text(
    """
    DELETE FROM webhook_deliveries WHERE id IN (
      SELECT id FROM webhook_deliveries
      WHERE status <> 'pending' AND created_at < :cutoff
      ORDER BY created_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    """
)
_PURGE_EVENTS = text(
    """
    DELETE FROM outbox_events WHERE id IN (
      SELECT e.id FROM outbox_events AS e
      WHERE e.dispatched_at IS NOT NULL AND e.created_at < :cutoff
        AND NOT EXISTS (SELECT 1 FROM webhook_deliveries AS d WHERE d.event_id = e.id)
      ORDER BY e.created_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    """
)
_PURGE_AUDIT = text(
    """
    DELETE FROM audit_entries WHERE id IN (
      SELECT id FROM audit_entries WHERE created_at < :cutoff
      ORDER BY created_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    """
)
_PURGE_CONSOLE_SESSIONS = text(
    """
    DELETE FROM console_sessions WHERE id IN (
      SELECT id FROM console_sessions WHERE expires_at < :cutoff
      ORDER BY expires_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    """
)


@dataclass(frozen=True)
class Retention:
    operations: timedelta
    deliveries: timedelta
    outbox: timedelta
    audit: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Retention:
        return cls(
            operations=timedelta(hours=settings.idempotency_retention_hours),
            deliveries=timedelta(days=settings.delivery_retention_days),
            outbox=timedelta(days=settings.outbox_retention_days),
            audit=timedelta(days=settings.audit_retention_days),
        )


@dataclass
class Purged:
    operations: int = 0
    deliveries: int = 0
    events: int = 0
    audit_entries: int = 0
    console_sessions: int = 0

    @property
    def total(self) -> int:
        return (
            self.operations
            + self.deliveries
            + self.events
            + self.audit_entries
            + self.console_sessions
        )


def purge_expired(
    session_factory: sessionmaker[Session],
    retention: Retention,
    *,
    now: Callable[[], datetime] = utcnow,
    batch: int = PURGE_BATCH_ROWS,
    budget_seconds: float = PURGE_BUDGET_SECONDS,
) -> Purged:
    """Purge what is past retention, a batch per transaction, until nothing is left or
    the budget is spent; how much of each."""
    started, deadline = now(), time.monotonic() + budget_seconds
    # An event outlives its deliveries: looking only past both retentions keeps the scan
    # from wading through events whose deliveries are still kept.
    event_cutoff = started - max(retention.outbox, retention.deliveries)
    purged = Purged()

    def run(purge: Callable[[Session], int]) -> int:
        removed = 0
        while time.monotonic() < deadline:
            with session_factory.begin() as session:
                count = purge(session)
            removed += count
            if count < batch:
                break
        return removed

    purged.operations = run(
        lambda s: purge_expired_idempotency_records(s, retention.operations, batch)
    )
    purged.deliveries = run(
        lambda s: _purge(s, _PURGE_DELIVERIES, started - retention.deliveries, batch)
    )
    purged.events = run(lambda s: _purge(s, _PURGE_EVENTS, event_cutoff, batch))
    purged.audit_entries = run(lambda s: _purge(s, _PURGE_AUDIT, started - retention.audit, batch))
    purged.console_sessions = run(lambda s: _purge(s, _PURGE_CONSOLE_SESSIONS, started, batch))
    return purged


def _purge(session: Session, statement: TextClause, cutoff: datetime, batch: int) -> int:
    result = session.execute(statement, {"cutoff": cutoff, "batch": batch})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
