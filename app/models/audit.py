from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column, uuid_pk


class AuditEntry(Base):
    """An administrative change: who (API key, or the CLI), what, to what, and when.

    Written in the transaction of the change itself, so the log never claims a change
    that rolled back and never misses one that committed.
    """

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_tenant_created", "tenant_id", "created_at"),
        Index("ix_audit_entries_created", "created_at"),  # the retention purge's scan
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    env: Mapped[str] = mapped_column(String(8))
    actor_key_id: Mapped[uuid.UUID | None]  # None: the operator's CLI
    action: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = created_at_column()
