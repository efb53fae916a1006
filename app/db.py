"""Engine, sessions and the declarative base shared by every model."""

from __future__ import annotations

import functools
import os
import time
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, create_engine, event, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import Uuid

from app.config import Settings
from app.errors import Conflict

# Stable constraint names so Alembic autogenerate and `alembic check` agree across machines.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        uuid.UUID: Uuid(as_uuid=True),
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB(),
        list[dict[str, Any]]: JSONB(),
        list[str]: JSONB(),
    }


def uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def created_at_column() -> Mapped[datetime]:
    return mapped_column(server_default=func.now())


# Unacknowledged data on a connection for this long closes it (libpq's tcp_user_timeout).
TCP_USER_TIMEOUT_MS = 30_000
# A pooled connection idle longer than this is pinged before use (see _ping_if_idle).
PING_IF_IDLE_SECONDS = 1.0


def make_engine(settings: Settings, *, pool_size: int | None = None) -> Engine:
    engine = create_engine(
        settings.require_database_url(),
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=pool_size or settings.db_pool_size,
        # Most recently used first: at low load a few warm connections serve everything.
        pool_use_lifo=True,
        pool_timeout=settings.db_connect_timeout_seconds,
        connect_args={
            "connect_timeout": settings.db_connect_timeout_seconds,
            # A peer that vanished (a partition, a host gone: packets unanswered, not
            # refused) is given up after this instead of the kernel's ~15 minutes of
            # retransmissions; keepalives find it on an idle pooled connection. A server
            # that is only frozen still acknowledges packets: REQUEST_TIMEOUT_SECONDS and
            # the tasks' time limits bound that. TCP only: ignored on a Unix socket.
            "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "options": f"-c statement_timeout={settings.db_statement_timeout_ms}",
            # Which process holds a connection, in pg_stat_activity (engines are built per
            # process: after the fork in workers and gunicorn).
            "application_name": f"rewards-engine pid={os.getpid()}",
        },
    )
    event.listen(engine, "checkin", _stamp_checkin)
    event.listen(engine, "checkout", functools.partial(_ping_if_idle, engine.dialect))
    return engine


def _stamp_checkin(dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dialect: Dialect, dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """pool_pre_ping, but only for a connection that sat idle: a ping per checkout was a
    round trip per request, and a connection used a moment ago is known to be alive. A
    dead one is replaced here (the pool retries on DisconnectionError); one that dies
    within the idle window fails its statement once, and SQLAlchemy then recycles every
    connection of the pool opened before that failure."""
    if time.monotonic() - record.info.get("checked_in_at", 0.0) <= PING_IF_IDLE_SECONDS:
        return
    try:
        dialect.do_ping(dbapi_connection)
    except dialect.loaded_dbapi.Error as exc:
        if dialect.is_disconnect(exc, dbapi_connection, None):  # type: ignore[arg-type]
            raise DisconnectionError() from exc
        raise


def make_session_factory(engine: Engine) -> sessionmaker:
    # expire_on_commit=False: results are shaped into plain dicts after commit.
    return sessionmaker(bind=engine, expire_on_commit=False)


def flush_or_conflict(session: Session, conflicts: dict[str, tuple[str, str]]) -> None:
    """Flush, turning a unique constraint's refusal into its 409 (`conflicts`: constraint
    name -> (code, detail)); the constraint has the last word over any check made before.
    In a savepoint, so the caller's transaction stays usable."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
        if constraint in conflicts:
            raise Conflict(*conflicts[constraint]) from None
        raise
