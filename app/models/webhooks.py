from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column, uuid_pk

DELIVERY_STATUSES = ("pending", "succeeded", "failed")


class WebhookEndpoint(Base):
    """A tenant's receiver URL, the event types it subscribes to, and its signing secrets."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        Index("ix_webhook_endpoints_tenant_env", "tenant_id", "env", "created_at"),
        CheckConstraint(
            "disabled_reason IS NULL OR disabled_reason IN ('manual', 'gone', 'failing')",
            name="disabled_reason",
        ),
        CheckConstraint(
            "payload_format IN ('standard', 'blocks')",
            name="payload_format",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    env: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(500))
    events: Mapped[list[str]]
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(16))
    # The signing secrets must be readable to sign, so they are stored as issued; they are
    # never returned by list/get and never logged.
    # Sealed with SECRET_KEY when one is set (app/webhooks/secret_box.py).
    secret: Mapped[str] = mapped_column(Text)
    # After a rotation the old secret keeps signing alongside the new one until this time.
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
    # Start of the current run of failed attempts (null after any success): an endpoint
    # failing continuously for WEBHOOK_DISABLE_AFTER_FAILING_SECONDS is disabled.
    failing_since: Mapped[datetime | None]
    # How its request bodies are shaped (app.webhooks.payloads.PAYLOAD_FORMATS).
    # "blocks": the 23blocks envelope and data names, for endpoints registered through
    # that dialect, so a receiver written against its reference works unchanged.
    payload_format: Mapped[str] = mapped_column(
        String(16), default="standard", server_default="standard"
    )
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """One event for one endpoint: its state, attempt count and last outcome.

    A pending delivery is due when `next_attempt_at` has passed. A dispatcher claiming it
    moves `next_attempt_at` to the end of a lease and sets `leased_until` to the same time,
    so a dispatcher that dies mid-send leaves it due again when the lease runs out, and
    "in flight" (for the per-endpoint cap) is `leased_until` in the future.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # Fan-out is idempotent: an event reaches an endpoint through one delivery.
        UniqueConstraint("endpoint_id", "event_id"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_webhook_deliveries_endpoint_pending",
            "endpoint_id",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
        # The retention purge's scan (app/retention.py).
        Index(
            "ix_webhook_deliveries_finished_created",
            "created_at",
            postgresql_where=text("status <> 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("outbox_events.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    leased_until: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_response_status: Mapped[int | None]
    last_response_body: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = created_at_column()
    delivered_at: Mapped[datetime | None]
