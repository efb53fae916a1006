"""The audit log of administrative changes (reward definitions, inventory, keys, ...).

Callers record an entry in the same transaction as the change it describes.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.models import AuditEntry


def record_audit(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    env: str,
    actor_key_id: uuid.UUID | None,
    action: str,
    target_id: uuid.UUID | str,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEntry(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            env=env,
            actor_key_id=actor_key_id,
            action=action,
            target_id=str(target_id),
            details=details,
            created_at=utcnow(),
        )
    )


def record_audit_once(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    env: str,
    actor_key_id: uuid.UUID | None,
    action: str,
    target_id: str,
    details: dict[str, Any] | None,
    within: timedelta,
) -> bool:
    """Record the entry unless one of the same action and target was recorded `within`
    (a write replayed on its idempotency key is one change, audited once); whether it
    was recorded. Two concurrent replays are serialized by a transaction-level advisory
    lock on the pair, so both cannot miss each other's entry."""
    pair = f"audit:{tenant_id}:{env}:{action}:{target_id}"
    session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(pair, 0))))
    seen = session.execute(
        select(AuditEntry.id)
        .where(
            AuditEntry.tenant_id == tenant_id,
            AuditEntry.created_at >= utcnow() - within,
            AuditEntry.env == env,
            AuditEntry.action == action,
            AuditEntry.target_id == target_id,
        )
        .limit(1)
    ).first()
    if seen is not None:
        return False
    record_audit(
        session,
        tenant_id=tenant_id,
        env=env,
        actor_key_id=actor_key_id,
        action=action,
        target_id=target_id,
        details=details,
    )
    return True


def list_audit_entries(
    session: Session, tenant_id: uuid.UUID, env: str, *, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    conditions = (AuditEntry.tenant_id == tenant_id, AuditEntry.env == env)
    total = session.execute(
        select(func.count()).select_from(AuditEntry).where(*conditions)
    ).scalar_one()
    entries = session.execute(
        select(AuditEntry)
        .where(*conditions)
        .order_by(AuditEntry.created_at.desc(), AuditEntry.id)
        .offset(offset)
        .limit(limit)
    ).scalars()
    return [
        {
            "id": str(entry.id),
            "actor_key_id": str(entry.actor_key_id) if entry.actor_key_id else None,
            "actor": "api_key" if entry.actor_key_id else "cli",
            "action": entry.action,
            "target_id": entry.target_id,
            "details": entry.details,
            "created_at": entry.created_at,
        }
        for entry in entries
    ], int(total)
