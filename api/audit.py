"""Admin scope: read the audit log of the key's tenant and environment."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from flask import Blueprint, g
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.auth import current_principal
from api.endpoint import Access, endpoint
from api.runtime import runtime
from api.schemas import PageQuery
from app.audit import list_audit_entries, record_audit, record_audit_once

bp = Blueprint("audit", __name__, url_prefix="/api/v1/gamify/admin")


def audit_change(
    session: Session,
    action: str,
    target_id: uuid.UUID | str,
    details: dict[str, Any] | None = None,
) -> None:
    """Record an admin change by the calling key, in the change's own transaction.

    A change made through the admin console (api/console) says so: its details carry
    `"via": "console"` (the console sets `g.audit_via`), whichever view or helper audits it.
    """
    principal = current_principal()
    record_audit(
        session,
        tenant_id=principal.tenant_id,
        env=principal.env,
        actor_key_id=principal.key_id,
        action=action,
        target_id=target_id,
        details=_marked(details),
    )


def _marked(details: dict[str, Any] | None) -> dict[str, Any] | None:
    via = g.get("audit_via")
    return details if via is None else {**(details or {}), "via": via}


def audit_write_once(
    session: Session, action: str, idempotency_key: str, details: dict[str, Any]
) -> None:
    """Audit a queued write by the calling key, once per idempotency key (its target): a
    replay of the write, which changes nothing, adds no entry."""
    principal = current_principal()
    record_audit_once(
        session,
        tenant_id=principal.tenant_id,
        env=principal.env,
        actor_key_id=principal.key_id,
        action=action,
        target_id=idempotency_key,
        details=_marked(details),
        within=timedelta(hours=runtime().settings.idempotency_retention_hours),
    )


class AuditEntryView(BaseModel):
    id: str
    actor: Literal["api_key", "cli"]
    actor_key_id: str | None
    action: str
    target_id: str
    details: dict[str, Any] | None
    created_at: datetime


class AuditLog(BaseModel):
    entries: list[AuditEntryView]
    total: int
    page: int
    page_size: int


@endpoint(
    bp,
    "GET",
    "/audit-log",
    summary="Administrative changes, newest first",
    tag="audit",
    access=Access.ADMIN,
    query=PageQuery,
    responses={200: AuditLog},
)
def read_audit_log(query: PageQuery) -> tuple[AuditLog, int]:
    principal = current_principal()
    with runtime().session_factory() as session:
        entries, total = list_audit_entries(
            session, principal.tenant_id, principal.env, offset=query.offset, limit=query.page_size
        )
    return AuditLog(
        entries=[AuditEntryView.model_validate(entry) for entry in entries],
        total=total,
        page=query.page,
        page_size=query.page_size,
    ), 200
