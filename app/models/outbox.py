from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column, uuid_pk


class OutboxEvent(Base):
    """A fact of a committed change, written in the same transaction as the change."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index(
            "ix_outbox_events_undispatched",
            "created_at",
            postgresql_where=text("dispatched_at IS NULL"),
        ),
        # The retention purge's scan (app/retention.py).
        Index(
            "ix_outbox_events_dispatched_created",
            "created_at",
            postgresql_where=text("dispatched_at IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    env: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = created_at_column()
    dispatched_at: Mapped[datetime | None]
