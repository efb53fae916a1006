from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column, uuid_pk


class OperationStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Operation(Base):
    """One accepted write (claim, award, ...): committed before the client hears "accepted".

    It carries the idempotency key, the request payload the worker executes and, once
    finished, the exact response (status and body) every replay returns.
    """

    __tablename__ = "operations"
    __table_args__ = (
        UniqueConstraint("tenant_id", "env", "idempotency_key"),
        CheckConstraint("status IN ('queued', 'processing', 'succeeded', 'failed')", name="status"),
        # The sweeper's scan: only unfinished operations, oldest publish first.
        Index(
            "ix_operations_unfinished",
            "enqueued_at",
            postgresql_where=text("status IN ('queued', 'processing')"),
        ),
        Index("ix_operations_finished_at", "finished_at"),
        # A worker drains the queued operations of one partition (e.g. a lane), oldest
        # first: this index answers that without touching anything else.
        Index(
            "ix_operations_queued_partition",
            "partition_key",
            "created_at",
            postgresql_where=text("status = 'queued'"),
        ),
        # The console's list of a tenant's bulk jobs, newest first: a handful of rows among
        # millions of single writes, so the index is partial (a single write never pays
        # for it) and the list never scans the table.
        Index(
            "ix_operations_bulk_jobs",
            "tenant_id",
            "env",
            "kind",
            "created_at",
            postgresql_where=text("kind IN ('points.award_bulk', 'actions.bulk')"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    env: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    # What the kind serializes on, qualified by kind, tenant and environment (None: the
    # operation runs on its own).
    partition_key: Mapped[str | None] = mapped_column(String(400))
    status: Mapped[str] = mapped_column(String(16), default=OperationStatus.QUEUED)
    http_status: Mapped[int | None]
    result: Mapped[dict[str, Any] | None]
    error: Mapped[dict[str, Any] | None]
    progress: Mapped[dict[str, Any] | None]
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = created_at_column()
    enqueued_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None]
    # The X-Request-ID of the request that made it: on the worker's log lines about it.
    request_id: Mapped[str | None] = mapped_column(String(128))
    # How the request that made it wanted its answer: true for `Prefer: respond-async`
    # (answered 202 at once), false for a request that waited for it (answered 202 only if
    # the wait ran out); null for writes no request waits on (bulk jobs, code generations,
    # writes a worker records). Set by the INSERT that records the write, it costs that
    # statement one more array; the console's 202 share reads it (app/console_overview.py).
    async_requested: Mapped[bool | None]
