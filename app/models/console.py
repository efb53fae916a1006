from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column, uuid_pk


class ConsoleSession(Base):
    """A signed-in admin console session (api/console): the browser holds only the token,
    signed, in a cookie; its SHA-256 is what is stored, so a copy of this table signs
    nobody in. Every request re-checks the row and the key it was opened with."""

    __tablename__ = "console_sessions"
    __table_args__ = (
        CheckConstraint("env IN ('live', 'test')", name="env"),
        Index("ix_console_sessions_expires_at", "expires_at"),  # the retention purge's scan
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    env: Mapped[str] = mapped_column(String(8))
    key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
